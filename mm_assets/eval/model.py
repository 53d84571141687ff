"""A `checkpoint` asset's Megatron checkpoint as a model to evaluate: verified, loaded, run greedily.

The checkpoint is Megatron's legacy "torch" layout the CPU trainer writes (`iter_NNNNNNN/mp_rank_00/
model_optim_rng.pt`, ArtifactLayout.CHECKPOINT_MODEL, TP = PP = 1, mm_assets.train.cpu.checkpoint); the model
is rebuilt from the arguments saved in it with the trainer's own builder (megatron-core's GPTModel, local layer spec). Every file is checked
against the sha256 the checkpoint asset recorded before anything is unpickled. CUDA is used when present (or
when eval.device says so); on the CPU the trainer's two shims apply.

Generation is greedy over a window of the model's sequence length: a longer prompt keeps its last tokens (the
number cut off is reported). It stops at EOD, at any id outside the text range (the answer is text; codes,
special and padding ids end it) or after max_new_tokens.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.paths import sha256_file
from mm_assets.train.cpu.data import causal_mask
from mm_assets.train.cpu.model import build_model, install_cpu_shims


class EvalModelError(RuntimeError):
    """The checkpoint cannot be evaluated; the message names the file and what to do."""


def verify_checkpoint(folder: Path, sha256: dict[str, str]) -> None:
    """Every recorded file exists with its recorded sha256 (and the model file is among them)."""
    if str(ArtifactLayout.CHECKPOINT_MODEL) not in sha256:
        raise EvalModelError(f"{folder}: no sha256 recorded for {ArtifactLayout.CHECKPOINT_MODEL}; rematerialize checkpoint")
    bad = [f"{name} ({'missing' if not (folder / name).is_file() else 'sha256 differs'})"
           for name, digest in sorted(sha256.items())
           if not (folder / name).is_file() or sha256_file(folder / name) != digest]
    if bad:
        raise EvalModelError(f"checkpoint {folder} does not match its recorded sha256: {', '.join(bad)}; "
                             "it changed after training: rematerialize checkpoint")


def pick_device(choice: str):
    import torch

    if choice == "cuda" and not torch.cuda.is_available():
        raise EvalModelError("eval.device is cuda but torch sees no GPU: use auto or cpu")
    return torch.device("cuda" if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()) else "cpu")


@contextlib.contextmanager
def megatron_process(device, seed: int = 1234) -> Iterator[None]:
    """One-process model parallel state (TP = PP = 1), as the trainer sets it up; torn down on exit."""
    import torch
    import torch.distributed as dist

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Transformer Engine and Apex are not installed"
        from megatron.core import parallel_state, tensor_parallel

    if device.type == "cpu":
        install_cpu_shims()
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory(prefix="mm-eval-rdzv-") as rdzv:
        dist.init_process_group("gloo", init_method=f"file://{rdzv}/store", rank=0, world_size=1)
        try:
            parallel_state.initialize_model_parallel(1, 1)
            if device.type == "cuda":
                tensor_parallel.model_parallel_cuda_manual_seed(seed)  # attention enters the CUDA RNG tracker
            yield
        finally:
            parallel_state.destroy_model_parallel()
            dist.destroy_process_group()


@dataclass
class LoadedModel:
    model: object
    device: object
    seq_length: int
    padded_vocab_size: int
    iteration: int
    parameters: int


def load_model(folder: Path, device) -> LoadedModel:
    """The GPT of one checkpoint iteration folder, in eval mode on `device` (inside megatron_process)."""
    import torch

    path = folder / ArtifactLayout.CHECKPOINT_MODEL
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved = state.get("args")
    if not isinstance(saved, dict) or "padded_vocab_size" not in saved:
        raise EvalModelError(f"{path}: no model arguments saved in it (not written by mm_assets.train.cpu)")
    args = argparse.Namespace(**saved)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(args, int(args.padded_vocab_size))
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return LoadedModel(model, device, int(args.seq_length), int(args.padded_vocab_size), int(state["iteration"]),
                       sum(p.numel() for p in model.parameters()))


def forward_logits(lm: LoadedModel, ids: np.ndarray):
    """Logits (1, T, padded vocab) for a 1-D id array of at most seq_length ids."""
    import torch

    tokens = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=lm.device)[None]
    positions = torch.arange(tokens.shape[1], device=lm.device)[None]
    return lm.model(tokens, positions, causal_mask(tokens.shape[1]).to(lm.device))


@dataclass(frozen=True)
class Generation:
    ids: list[int]  # the new ids, without the stop id
    stopped_by: str  # eod, non_text or length
    prompt_truncated: int  # prompt ids the model could not see at the first step


def greedy_generate(lm: LoadedModel, prompt: np.ndarray, *, max_new_tokens: int, text_size: int,
                    eod_id: int) -> Generation:
    import torch

    ids = [int(i) for i in prompt]
    new: list[int] = []
    stopped = "length"
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            window = ids[-lm.seq_length:]
            next_id = int(forward_logits(lm, np.asarray(window))[0, -1].argmax())
            if next_id == eod_id:
                stopped = "eod"
                break
            if not 0 <= next_id < text_size:
                stopped = "non_text"
                break
            ids.append(next_id)
            new.append(next_id)
    return Generation(new, stopped, max(0, len(prompt) - lm.seq_length))


def score_text(lm: LoadedModel, ids: np.ndarray, meters: list) -> None:
    """Feed every next-token prediction of `ids` (in windows of seq_length) to torchmetrics Perplexity meters."""
    import torch

    ids = np.asarray(ids, dtype=np.int64)
    with torch.inference_mode():
        for start in range(0, len(ids) - 1, lm.seq_length):
            chunk = ids[start:start + lm.seq_length + 1]
            logits = forward_logits(lm, chunk[:-1]).float().cpu()
            targets = torch.as_tensor(chunk[1:])[None]
            for meter in meters:
                meter.update(logits, targets)

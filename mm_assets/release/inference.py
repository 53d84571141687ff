#!/usr/bin/env python3
"""Sample inference for an mm-pretrain release bundle: greedy generation from the released checkpoint.

    python inference.py --prompt "Clip 1, first line." [--max-new-tokens 16] [--device auto|cpu|cuda] [--bundle DIR]

It needs only the bundle it sits in and torch, megatron-core, tokenizers and numpy (the versions the bundle was
made with are in manifest.json, lineage.library_versions); it imports nothing of mm-pretrain. Every file it reads
is first checked against manifest.json. The GPT is rebuilt from the arguments saved in the checkpoint (Megatron's
legacy torch format, TP = PP = 1; megatron-core's GPTModel with the local layer spec, as the project's CPU
trainer builds it), the prompt is encoded with the bundle's text tokenizer, and tokens are generated greedily
until <eod> or --max-new-tokens. It prints one JSON object: the prompt ids, the generated ids, and how each
reads (text decoded; any other id named by the vocabulary layout, e.g. <audio:q2:517> or <eod>).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import tempfile
import warnings
from pathlib import Path

MANIFEST = "manifest.json"


class BundleError(RuntimeError):
    """The bundle cannot be used as it is; the message names the file."""


def verified(bundle: Path, manifest: dict, name: str) -> Path:
    """`bundle/name`, after checking its sha256 and size against the manifest."""
    if not isinstance(name, str) or Path(name).is_absolute() or ".." in Path(name).parts:
        raise BundleError(f"{MANIFEST} names {name!r}, which is not a path inside the bundle")
    recorded = manifest["files"].get(name)
    path = bundle / name
    if recorded is None:
        raise BundleError(f"{name} is not listed in {bundle / MANIFEST}")
    if not path.is_file():
        raise BundleError(f"{path} is missing (listed in {MANIFEST})")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    if digest.hexdigest() != recorded["sha256"] or path.stat().st_size != recorded["bytes"]:
        raise BundleError(f"{path}: sha256 {digest.hexdigest()} differs from {MANIFEST}'s {recorded['sha256']}; "
                          "the bundle was changed: download it again")
    return path


def checkpoint_files(manifest: dict) -> list[str]:
    folder = manifest["contents"]["checkpoint"].rstrip("/") + "/"
    return sorted(name for name in manifest["files"] if name.startswith(folder))


def token_names(vocab: dict) -> dict[int, str]:
    """id -> a readable name for every special token; modality codes are named in `describe`."""
    return {int(i): name for name, i in vocab["special_tokens"].items()}


def describe(token_id: int, vocab: dict, specials: dict[int, str]) -> str | None:
    """How a non-text id reads: a special token's name or <modality:q<level>:<code>> (None for a text id)."""
    if token_id in specials:
        return specials[token_id]
    for m in vocab["modalities"]:
        if m["start"] <= token_id < m["stop"]:
            level, code = divmod(token_id - m["start"], m["codebook_size"])
            return f"<{m['name']}:q{level}:{code}>"
    if token_id < vocab["text"]["stop"]:
        return None
    return f"<unused:{token_id}>"


def install_cpu_shims() -> None:
    """megatron-core 0.16.1 on the CPU: RoPE asks torch.cuda for a device, dropout forks the CUDA RNG."""
    import torch
    from megatron.core.tensor_parallel.random import get_cuda_rng_tracker

    torch.cuda.current_device = lambda: torch.device("cpu")
    get_cuda_rng_tracker().fork = lambda *_, **__: contextlib.nullcontext()


@contextlib.contextmanager
def megatron_process(device):
    """One process, tensor and pipeline parallel size 1."""
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state, tensor_parallel

    if device.type == "cpu":
        install_cpu_shims()
    torch.manual_seed(1234)
    with tempfile.TemporaryDirectory(prefix="mm-inference-") as rdzv:
        dist.init_process_group("gloo", init_method=f"file://{rdzv}/store", rank=0, world_size=1)
        try:
            parallel_state.initialize_model_parallel(1, 1)
            if device.type == "cuda":
                tensor_parallel.model_parallel_cuda_manual_seed(1234)
            yield
        finally:
            parallel_state.destroy_model_parallel()
            dist.destroy_process_group()


def build_gpt(args: dict):
    """The GPT the checkpoint's saved arguments describe (megatron-core GPTModel, local layer spec)."""
    import torch
    import torch.nn.functional as F
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.transformer.transformer_config import TransformerConfig

    config = TransformerConfig(
        num_layers=args["num_layers"],
        hidden_size=args["hidden_size"],
        ffn_hidden_size=args["ffn_hidden_size"] or 4 * args["hidden_size"],
        num_attention_heads=args["num_attention_heads"],
        num_query_groups=args["num_query_groups"] if args["group_query_attention"] else None,
        normalization=args["normalization"],
        gated_linear_unit=args["swiglu"],
        activation_func=F.silu if args["swiglu"] else F.gelu,
        add_bias_linear=not args["disable_bias_linear"],
        hidden_dropout=0.0,
        attention_dropout=0.0,
        init_method_std=args["init_method_std"],
        use_cpu_initialization=True,
        params_dtype=torch.float32,
        pipeline_dtype=torch.float32,
    )
    return GPTModel(
        config=config,
        transformer_layer_spec=get_gpt_layer_local_spec(normalization=args["normalization"]),
        vocab_size=int(args["padded_vocab_size"]),
        max_sequence_length=args["max_position_embeddings"] or args["seq_length"],
        pre_process=True,
        post_process=True,
        share_embeddings_and_output_weights=not args["untie_embeddings_and_output_weights"],
        position_embedding_type=args["position_embedding_type"],
        rotary_base=args["rotary_base"],
    )


def greedy(model, prompt: list[int], *, seq_length: int, max_new_tokens: int, eod_id: int,
           device) -> tuple[list[int], str]:
    """Generated ids (the <eod> that stops it included) and why it stopped (eod or length)."""
    import torch

    ids, new = list(prompt), []
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            window = ids[-seq_length:]
            tokens = torch.tensor([window], dtype=torch.long, device=device)
            positions = torch.arange(len(window), device=device)[None]
            mask = torch.triu(torch.ones(len(window), len(window), dtype=torch.bool, device=device), diagonal=1)
            next_id = int(model(tokens, positions, mask[None, None])[0, -1].argmax())
            ids.append(next_id)
            new.append(next_id)
            if next_id == eod_id:
                return new, "eod"
    return new, "length"


def pick_device(choice: str):
    import torch

    if choice == "cuda" and not torch.cuda.is_available():
        raise BundleError("--device cuda: torch sees no GPU (use auto or cpu)")
    return torch.device("cuda" if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()) else "cpu")


def run(bundle: Path, prompt: str, max_new_tokens: int, device_choice: str) -> dict:
    import torch
    from tokenizers import Tokenizer

    manifest_path = bundle / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{manifest_path} is missing: not a release bundle (or an incomplete one)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    contents = manifest["contents"]
    vocab = json.loads(verified(bundle, manifest, contents["vocab"]).read_text(encoding="utf-8"))
    tokenizer = Tokenizer.from_file(str(verified(bundle, manifest, contents["text_tokenizer"])))
    models = [n for n in checkpoint_files(manifest) if n.endswith(".pt")]
    if len(models) != 1:
        raise BundleError(f"expected one model file under {contents['checkpoint']} in {MANIFEST}, found {models}")
    model_file = verified(bundle, manifest, models[0])
    state = torch.load(model_file, map_location="cpu", weights_only=True)
    args = state.get("args")
    if not isinstance(args, dict) or "padded_vocab_size" not in args:
        raise BundleError(f"{model_file}: no model arguments saved in it")
    eod_id = int(vocab["special_tokens"]["<eod>"])
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False).ids
    if not prompt_ids:
        raise BundleError(f"the prompt {prompt!r} encodes to no tokens")
    device = pick_device(device_choice)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Apex is not installed", Transformer Engine notices
        with megatron_process(device):
            model = build_gpt(args)
            model.load_state_dict(state["model"], strict=True)
            model.to(device).eval()
            generated, stopped = greedy(model, prompt_ids, seq_length=int(args["seq_length"]),
                                        max_new_tokens=max_new_tokens, eod_id=eod_id, device=device)
    specials = token_names(vocab)
    readings = [describe(i, vocab, specials) for i in generated]
    text_ids = [i for i, r in zip(generated, readings) if r is None]
    return {
        "model": manifest["release"].get("model_name"),
        "release": manifest["release"].get("version"),
        "checkpoint": contents["checkpoint"],
        "iteration": int(state.get("iteration", -1)),
        "device": str(device),
        "prompt": prompt,
        "prompt_ids": prompt_ids,
        "generated_ids": generated,
        "stopped_by": stopped,
        "generated_text": tokenizer.decode(text_ids),
        "tokens": [r if r is not None else tokenizer.id_to_token(i) for i, r in zip(generated, readings)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=Path(__file__).resolve().parent,
                        help="the release bundle folder (default: this script's folder)")
    parser.add_argument("--prompt", required=True, help="text to continue")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = parser.parse_args(argv)
    if args.max_new_tokens < 1:
        parser.error("--max-new-tokens must be at least 1")
    try:
        result = run(args.bundle.resolve(), args.prompt, args.max_new_tokens, args.device)
    except (BundleError, KeyError, json.JSONDecodeError) as err:
        print(f"inference.py: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

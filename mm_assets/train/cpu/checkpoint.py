"""Checkpoints in Megatron's legacy "torch" layout, published atomically, and the RNG state they carry.

One trainer writes a --save folder at a time (`writer_lock`). Each iteration is staged in
`.iter_NNNNNNN.staging/` (a stable name, so a killed save leaves one folder, which `sweep_staging` removes at
the next start, with what a killed publish left) and published with one rename before the tracker moves.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.paths import LockBusyError, atomic_write_text, exclusive, fsync_path, publish_dir, sha256_file
from mm_assets.train.cpu import TrainerError

CHECKPOINT_VERSION = 3.0
# What killed saves leave: our staging folders, publish_dir's replaced folders (.<name>.old-<pid>), and the
# random-named staging folders of earlier versions (.<name>.<random>).
STALE = re.compile(r"^\.iter_\d{7}\..+$")

MODEL_SHAPE_ARGS = (
    "num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads", "group_query_attention",
    "num_query_groups", "normalization", "swiglu", "position_embedding_type", "untie_embeddings_and_output_weights",
    "disable_bias_linear", "max_position_embeddings", "padded_vocab_size",
)


def checkpoint_dir(root: str | Path, iteration: int) -> Path:
    return Path(root) / ArtifactLayout.checkpoint_iteration(iteration)


def read_tracker(root: str | Path) -> int | None:
    """The iteration in `latest_checkpointed_iteration.txt`, or None when there is no checkpoint yet."""
    path = Path(root) / ArtifactLayout.CHECKPOINT_TRACKER
    if not path.is_file():
        return None
    text = path.read_text().strip()
    if not text.isdigit():
        raise TrainerError(f"{path} holds {text!r}, not an iteration (release checkpoints are not supported)")
    return int(text)


@contextmanager
def writer_lock(root: str | Path) -> Iterator[None]:
    """Hold `<root>/.trainer.lock` while training: two trainers saving into one folder would mix checkpoints."""
    lock = Path(root) / ArtifactLayout.CHECKPOINT_WRITER_LOCK
    try:
        with exclusive(lock, what=f"checkpoint folder {root}", unlink=True):
            yield
    except LockBusyError as err:
        raise TrainerError(str(err)) from None


def sweep_staging(root: str | Path) -> list[Path]:
    """Remove what killed saves left in `root` (call it holding the writer lock); returns what was removed."""
    root = Path(root)
    stale = [p for p in root.iterdir() if STALE.match(p.name)] if root.is_dir() else []
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def save_checkpoint(root: str | Path, iteration: int, state: dict[str, Any]) -> Path:
    """Write `iter_NNNNNNN/mp_rank_00/model_optim_rng.pt` aside, publish the folder with one rename, then
    update the tracker (also by rename): a crash leaves the previous checkpoint the latest."""
    import torch

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = checkpoint_dir(root, iteration)
    staged = root / f".{final.name}{ArtifactLayout.CHECKPOINT_STAGING_SUFFIX}"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir()
    try:
        target = staged / ArtifactLayout.CHECKPOINT_MODEL
        target.parent.mkdir(parents=True)
        with open(target, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        fsync_path(target.parent)
        publish_dir(staged, final)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    atomic_write_text(root / ArtifactLayout.CHECKPOINT_TRACKER, str(iteration))
    return final


def load_checkpoint(root: str | Path, iteration: int) -> dict[str, Any]:
    import torch

    path = checkpoint_dir(root, iteration) / ArtifactLayout.CHECKPOINT_MODEL
    if not path.is_file():
        raise TrainerError(f"{Path(root) / ArtifactLayout.CHECKPOINT_TRACKER} names iteration {iteration} but {path} does not exist")
    return torch.load(path, map_location="cpu", weights_only=True)


def checkpoint_sha256(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def rng_state() -> dict[str, Any]:
    import torch

    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "random_rng_state": random.getstate(),
        # A tensor, not an ndarray: torch.load(weights_only=True) refuses numpy objects.
        "np_rng_state": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
        "torch_rng_state": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["random_rng_state"])
    name, keys, pos, has_gauss, gauss = state["np_rng_state"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch_rng_state"])

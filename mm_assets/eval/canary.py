"""The data-leakage canary (reference §B.6): a few samples of each eval set, injected verbatim into training.

Per set, `samples_per_set` samples (at most half the set, so the standard split keeps samples) are drawn with a
recorded seed. Each becomes one training document with the same ids the evaluator feeds the model: the prompt,
the first reference answer and a newline, then the set's canary marker (a unique string, so the canary can be
found in any dataset later), then EOD. The documents form their own Megatron shard under the shards' vocabulary
layout; a blend entry `{canary_set: <task>, weight: w}` injects it. Evaluated on its own split, a memorised
canary scores far above the standard split: that is the leak `check_leakage` looks for.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mm_assets.paths import atomic_write_text, publish_dir
from mm_assets.shards.indexed import write_shard
from mm_assets.shards.vocab import VocabLayout

CANARY_FILE = "canary.json"
SHARD_PREFIX = "tokens"
VOCAB_FILE = "vocab.json"
MARKER_PREFIX = "MM-CANARY-"


def canary_count(set_size: int, samples_per_set: int) -> int:
    return min(samples_per_set, set_size // 2)


def select_canaries(ids: list[str], samples_per_set: int, seed: int, task: str) -> list[str]:
    """The canary ids of one set, in set order: a seeded draw (the seed and the task name fix it)."""
    salt = int(hashlib.sha256(task.encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng([seed, salt])
    chosen = rng.choice(len(ids), size=canary_count(len(ids), samples_per_set), replace=False)
    return [ids[i] for i in sorted(chosen)]


def canary_marker(task: str, seed: int, dataset_sha256: str) -> str:
    """A string no real text contains, the same on every rematerialization of the same set and seed."""
    digest = hashlib.sha256(f"{task}\0{seed}\0{dataset_sha256}".encode()).hexdigest()[:12]  # 48 bits
    return f"{MARKER_PREFIX}{digest}"


def canary_document(prompt_ids: np.ndarray, answer: str, marker: str, encode: Callable[[str], np.ndarray],
                    eod_id: int) -> np.ndarray:
    """prompt + answer + newline + marker + EOD (for a perplexity set the answer is empty)."""
    tail = encode(f"{answer}\n{marker}")
    return np.concatenate([np.asarray(prompt_ids, dtype=np.int64), tail, [eod_id]]).astype(np.int32)


def write_canary_shard(folder: Path, documents: list[np.ndarray], layout: VocabLayout,
                       manifest: dict[str, Any]) -> dict[str, Any]:
    """Publish tokens.bin/.idx + vocab.json + canary.json as one folder (staged, then one rename)."""
    staging = folder.with_name(f".staging-{folder.name}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        files = write_shard(staging / SHARD_PREFIX, documents, eod_id=layout.eod_id)
        layout.write(staging / VOCAB_FILE)
        manifest = {**manifest, "documents": files.documents, "tokens": files.tokens,
                    "bin_sha256": files.bin_sha256, "idx_sha256": files.idx_sha256, "vocab_sha256": layout.sha256}
        atomic_write_text(staging / CANARY_FILE, json.dumps(manifest, indent=2, sort_keys=True))
        publish_dir(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def read_canary(folder: Path) -> dict[str, Any]:
    path = folder / CANARY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no canary set at {folder}: materialize canary_set first")
    return json.loads(path.read_text())

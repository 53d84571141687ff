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
from collections.abc import Callable
from typing import Any

import numpy as np

from mm_assets.shards.assets import shard_manifest
from mm_assets.shards.indexed import write_shard
from mm_assets.shards.vocab import VocabLayout
from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.store import Storage

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


def write_canary_shard(storage: Storage, task: str, documents: list[np.ndarray], layout: VocabLayout,
                       record: dict[str, Any]) -> dict[str, Any]:
    """Publish the set's canary folder whole: tokens.bin/.idx, vocab.json, canary.json, then manifest.json (the
    shard manifest token_shards writes too, so the blend verifies a canary shard like any other). A set too
    small for a canary gets canary.json alone (no ids), which also replaces a stale shard of a larger set."""
    with storage.store.publish(storage.layout.canary_set(task), last=ArtifactLayout.SHARD_MANIFEST,
                               what=f"canary set {task}") as staged:
        staged.mkdir(parents=True)
        if documents:
            files = write_shard(staged / ArtifactLayout.SHARD_PREFIX, documents, eod_id=layout.eod_id)
            layout.write(staged / ArtifactLayout.SHARD_VOCAB)
            record = {**record, "documents": files.documents, "tokens": files.tokens, "vocab_sha256": layout.sha256}
        (staged / ArtifactLayout.CANARY_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True))
        if documents:
            names = (ArtifactLayout.SHARD_VOCAB, ArtifactLayout.CANARY_RECORD)
            shard_manifest(staged, files, names=names).write(staged)  # last: it commits the shard
    return record


def read_canary(storage: Storage, task: str) -> dict[str, Any] | None:
    """The set's canary.json (ids, seed, marker); None before canary_set ran."""
    key = storage.layout.canary_record(task)
    return json.loads(storage.store.read_text(key)) if storage.store.exists(key) else None

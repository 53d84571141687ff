"""The small JSON documents of a run folder, as the training assets wrote them: blend.json (training_blend),
run.json (checkpoint) and training_log.jsonl (training_log). Checks and the experiment records read them here."""

from __future__ import annotations

import json
from typing import Any

import dagster as dg

from mm_assets.storage.store import Storage


def read_blend(storage: Storage, experiment: str) -> dict[str, Any]:
    """The run's blend.json, as training_blend wrote it."""
    key = storage.layout.run_blend(experiment)
    if not storage.store.exists(key):
        raise dg.Failure(f"experiment {experiment} has no {storage.store.url(key)}: materialize training_blend first")
    return json.loads(storage.store.read_text(key))


def read_run(storage: Storage, experiment: str) -> dict[str, Any]:
    """The run's run.json, as the checkpoint asset wrote it."""
    key = storage.layout.run_record(experiment)
    if not storage.store.exists(key):
        raise dg.Failure(f"experiment {experiment} has no {storage.store.url(key)}: materialize checkpoint first")
    return json.loads(storage.store.read_text(key))


def read_training_log(storage: Storage, experiment: str) -> list[dict[str, Any]]:
    """The run's training_log.jsonl records."""
    text = storage.store.read_text(storage.layout.training_log(experiment))
    return [json.loads(line) for line in text.splitlines() if line.strip()]

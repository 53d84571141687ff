"""The small JSON documents of a run folder, as the training assets wrote them: blend.json (training_blend),
attempts.json and run.json (checkpoint), training_log.jsonl (training_log), and the run's job logs read as one.
Checks and the experiment records read them here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg

from mm_assets.storage.paths import UnsafePathError
from mm_assets.storage.store import Storage
from mm_assets.train.megatron_log.stream import ParsedLog, merge_attempts, parse_log


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


def read_attempts(storage: Storage, experiment: str) -> list[dict[str, Any]]:
    """Every job the checkpoint asset started for the experiment, oldest first (attempts.json)."""
    key = storage.layout.run_attempts(experiment)
    return json.loads(storage.store.read_text(key)) if storage.store.exists(key) else []


def record_attempt(storage: Storage, experiment: str, attempt: dict[str, Any]) -> list[dict[str, Any]]:
    """Add one job ({started_at, log, resumed_from_iteration, outcome, ...}) to attempts.json; returns the list.

    A fresh start (resumed from no checkpoint) begins the run's history again: the attempts before it are
    dropped, since none of their iterations is in the checkpoint any more."""
    attempts = [*read_attempts(storage, experiment), attempt]
    fresh = [i for i, a in enumerate(attempts) if a.get("resumed_from_iteration") is None]
    attempts = attempts[fresh[-1]:] if fresh else attempts
    storage.store.write_text(storage.layout.run_attempts(experiment), json.dumps(attempts, indent=2, sort_keys=True))
    return attempts


def log_ref(storage: Storage, path: str) -> str:
    """How attempts.json names a job's log: its key when it lies under the storage root (the run's logs/, so a
    copied or synced run folder still finds it), else the path itself (a Slurm --output put elsewhere)."""
    try:
        return storage.store.key_of(path)
    except UnsafePathError:
        return path


def local_log(storage: Storage, ref: str) -> Path:
    """A job's log as a local file, from its log_ref."""
    return Path(ref) if Path(ref).is_absolute() else storage.store.local_path(ref)


def run_training(storage: Storage, run: dict[str, Any], *, seq_length: int | None) -> tuple[ParsedLog, list[str]]:
    """The whole run's log, from every attempt's job log in order (megatron_log.merge_attempts), and the logs
    that are missing (a failed job may have written none). A run.json from before attempts were recorded
    names only its last log."""
    attempts = run.get("attempts") or [{"log": log_ref(storage, run["log"]), "resumed_from_iteration": None}]
    parsed, missing = [], []
    for attempt in attempts:
        log = local_log(storage, attempt["log"])
        if not log.is_file():
            if attempt.get("outcome") != "failed":
                missing.append(attempt["log"])
            continue
        with open(log, encoding="utf-8", errors="replace") as f:
            parsed.append((parse_log(f, seq_length=seq_length), attempt.get("resumed_from_iteration") or 0))
    return merge_attempts(parsed), missing

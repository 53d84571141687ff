"""The experiment table (reference §B.7): its columns, one row per experiment from the run's files, Markdown."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from mm_assets.config.base import PROJECT_ROOT
from mm_assets.records.outcome import OK, Outcome
from mm_assets.storage.store import Storage
from mm_assets.train.launch.experiment import ExperimentConfig
from mm_assets.train.run_files import read_training_log

RECORDS_SCHEMA = pa.schema([
    ("experiment_id", pa.string()), ("date", pa.string()), ("git_commit", pa.string()),
    ("config_path", pa.string()), ("key_changes", pa.list_(pa.string())), ("result_summary", pa.string()),
    ("notes", pa.string()), ("status", pa.string()), ("failed_at", pa.string()), ("final_loss", pa.float64()),
    ("iterations", pa.int64()), ("consumed_tokens", pa.int64()), ("checkpoint", pa.string()),
    ("dagster_run_id", pa.string()),
])
COLUMNS = ["Experiment ID", "Date", "Git Commit", "Config Path", "Key Changes", "Result Summary", "Notes"]
def _relative(path: str | None) -> str:
    if not path:
        return ""
    p = Path(path)
    return str(p.relative_to(PROJECT_ROOT)) if p.is_relative_to(PROJECT_ROOT) else str(p)


def result_summary(records: list[dict[str, Any]], run: dict[str, Any]) -> str:
    losses = [r["loss"] for r in records if r["loss"] is not None]
    if not losses:
        return f"no loss logged; checkpoint at iteration {run.get('iteration')}"
    tokens = records[-1].get("consumed_tokens")
    return (f"loss {losses[0]:.3f} -> {losses[-1]:.3f} over {records[-1]['iteration']} iterations"
            + (f" ({tokens:,} tokens)" if tokens else "") + f"; checkpoint iter {run.get('iteration')}")


def experiment_row(storage: Storage, exp: ExperimentConfig, outcome: Outcome, evaluation: str = "") -> dict[str, Any]:
    """One table row: the result from run.json and the JSONL log when the attempt is `ok` (with `evaluation`,
    the eval report's headline metrics, PPL and canary verdict, when there is one), else its status."""
    row = {
        "experiment_id": exp.id,
        "date": datetime.fromtimestamp(outcome.started_at, timezone.utc).date().isoformat() if outcome.started_at else "",
        "git_commit": "unknown",
        "config_path": _relative(str(exp.path)),
        "key_changes": list(exp.key_changes),
        "result_summary": f"{outcome.status}: {outcome.failed}" if outcome.failed else outcome.status,
        "notes": exp.notes,
        "status": outcome.status,
        "failed_at": outcome.failed,
        "final_loss": None, "iterations": None, "consumed_tokens": None, "checkpoint": None,
        "dagster_run_id": outcome.run_id,
    }
    run_key, log_key = storage.layout.run_record(exp.id), storage.layout.training_log(exp.id)
    if outcome.status != OK or not storage.store.exists(run_key) or not storage.store.exists(log_key):
        return row
    run, records = json.loads(storage.store.read_text(run_key)), read_training_log(storage, exp.id)
    losses = [r["loss"] for r in records if r["loss"] is not None]
    row.update(
        date=(run.get("finished_at") or run.get("started_at") or row["date"])[:10],
        git_commit=run.get("git_commit", "unknown"),
        result_summary=result_summary(records, run) + (f"; {evaluation}" if evaluation else ""),
        final_loss=losses[-1] if losses else None,
        iterations=records[-1]["iteration"] if records else None,
        consumed_tokens=records[-1].get("consumed_tokens") if records else None,
        checkpoint=run.get("checkpoint"),
    )
    return row


def to_markdown(rows: list[dict[str, Any]]) -> str:
    def cell(value: str) -> str:
        return value.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        changes = ", ".join(f"`{c}`" for c in r["key_changes"]) or "(base config)"
        values = [f"`{r['experiment_id']}`", r["date"], f"`{r['git_commit']}`", f"`{r['config_path']}`",
                  changes, r["result_summary"], r["notes"]]
        lines.append("| " + " | ".join(cell(v) for v in values) + " |")
    return "\n".join(lines) + "\n"

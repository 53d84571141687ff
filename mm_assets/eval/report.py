"""The eval report: one row per task x split x metric, and the reference's leakage rule over it.

`metrics.parquet` has exactly the catalog view's columns (experiment_id, task_name, split, metric, value,
n_samples); predictions go to `predictions.parquet`, and `report.json` holds the whole report (the rows,
sacrebleu's signatures, the checkpoint, the device), written last (ArtifactLayout's eval/<experiment>/).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mm_assets.eval.config import LeakageConfig
from mm_assets.storage.store import Storage

STANDARD, CANARY = "standard", "canary"

REPORT_SCHEMA = pa.schema([
    ("experiment_id", pa.string()), ("task_name", pa.string()), ("split", pa.string()), ("metric", pa.string()),
    ("value", pa.float64()), ("n_samples", pa.int64()),
])
PREDICTIONS_SCHEMA = pa.schema([
    ("experiment_id", pa.string()), ("task_name", pa.string()), ("split", pa.string()), ("sample_id", pa.string()),
    ("prompt", pa.string()), ("generated", pa.string()), ("prediction", pa.string()),
    ("expected", pa.list_(pa.string())), ("correct", pa.bool_()), ("perplexity", pa.float64()),
    ("prompt_tokens", pa.int64()), ("prompt_truncated", pa.int64()), ("generated_tokens", pa.int64()),
    ("stopped_by", pa.string()),
])


def write_table(path: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def read_report(storage: Storage, experiment: str) -> list[dict[str, Any]]:
    """The metric rows of the experiment's eval report."""
    key = storage.layout.eval_metrics(experiment)
    if not storage.store.exists(key):
        raise FileNotFoundError(f"no eval report at {storage.store.url(key)}: materialize eval_report for "
                                f"{experiment} (mm eval run {experiment})")
    return pq.read_table(storage.store.local_path(key)).to_pylist()


def read_details(storage: Storage, experiment: str) -> dict[str, Any]:
    """report.json of the experiment's eval report."""
    return json.loads(storage.store.read_text(storage.layout.eval_report(experiment)))


@dataclass(frozen=True)
class LeakageVerdict:
    task_name: str
    canary_accuracy: float
    standard_accuracy: float
    margin: float  # canary - standard
    leaked: bool


def is_leaked(canary_accuracy: float, standard_accuracy: float, rule: LeakageConfig) -> bool:
    """The reference's check_leakage: near-perfect on the canary while normal on the standard set."""
    return canary_accuracy > rule.canary_accuracy_min and canary_accuracy > standard_accuracy + rule.margin_min


def leakage_verdicts(rows: list[dict[str, Any]], rule: LeakageConfig) -> list[LeakageVerdict]:
    """Per task with an Accuracy on both splits (tasks without canaries, or perplexity tasks, have none)."""
    acc = {(r["task_name"], r["split"]): r["value"] for r in rows if r["metric"] == "Accuracy"}
    verdicts = []
    for task in sorted({t for t, _ in acc}):
        if (task, CANARY) in acc and (task, STANDARD) in acc:
            canary, standard = acc[(task, CANARY)], acc[(task, STANDARD)]
            verdicts.append(LeakageVerdict(task, canary, standard, canary - standard,
                                           is_leaked(canary, standard, rule)))
    return verdicts


def verdicts_markdown(verdicts: list[LeakageVerdict]) -> str:
    lines = ["| task | canary accuracy | standard accuracy | margin | leaked |", "|---|---|---|---|---|"]
    lines += [f"| {v.task_name} | {v.canary_accuracy:.3f} | {v.standard_accuracy:.3f} | {v.margin:+.3f} | "
              f"{'**yes**' if v.leaked else 'no'} |" for v in verdicts]
    return "\n".join(lines)


def report_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| task | split | metric | value | n |", "|---|---|---|---|---|"]
    lines += [f"| {r['task_name']} | {r['split']} | {r['metric']} | {r['value']:.4g} | {r['n_samples']} |" for r in rows]
    return "\n".join(lines)


def headline(rows: list[dict[str, Any]]) -> str:
    """The experiment record's eval summary: each task's first metric (its first configured one) on the
    standard split, perplexity written as PPL."""
    parts, seen = [], set()
    for r in rows:
        if r["split"] == STANDARD and r["task_name"] not in seen:
            seen.add(r["task_name"])
            name = "PPL" if r["metric"] == "Perplexity" else r["metric"]
            parts.append(f"{r['task_name']} {name} {r['value']:.4g}")
    return ", ".join(parts)


def eval_summary(storage: Storage, experiment: str, rule: LeakageConfig) -> str:
    """What the experiment record says about its eval report ("" when there is none yet)."""
    if not storage.store.exists(storage.layout.eval_metrics(experiment)):
        return ""
    rows = read_report(storage, experiment)
    leaked = [v.task_name for v in leakage_verdicts(rows, rule) if v.leaked]
    verdict = f"canary LEAKED: {', '.join(leaked)}" if leaked else "canary check passed"
    return f"eval: {headline(rows)}; {verdict}"

"""`experiment_records`: the reference's experiment table (§B.7), one row per trained experiment, as Parquet
(queryable with `mm query`) and Markdown.

A result is listed only from an attempt whose training assets materialized with every blocking check passed
(outcome.py reads that from the Dagster instance). A failed attempt is listed as `failed` with the check or
step that failed, and no result columns: the files of a failed run are never reported as its result.
"""

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from mm_assets.partitions import experiments
from mm_assets.config.base import ConfigError, PROJECT_ROOT
from mm_assets.storage.store import Storage
from mm_assets.train.assets import TRAIN_CHECKS, checkpoint, load_jsonl, training_log
from mm_assets.train.blend_assets import blend_complete
from mm_assets.train.outcome import FAILED, OK, Outcome, experiment_outcome
from mm_assets.train.launch.experiment import ExperimentConfig, load_experiment
from resources.config import PipelineConfigResource
from resources.storage import StorageResource

RECORDS_SCHEMA = pa.schema([
    ("experiment_id", pa.string()), ("date", pa.string()), ("git_commit", pa.string()),
    ("config_path", pa.string()), ("key_changes", pa.list_(pa.string())), ("result_summary", pa.string()),
    ("notes", pa.string()), ("status", pa.string()), ("failed_at", pa.string()), ("final_loss", pa.float64()),
    ("iterations", pa.int64()), ("consumed_tokens", pa.int64()), ("checkpoint", pa.string()),
    ("dagster_run_id", pa.string()),
])
COLUMNS = ["Experiment ID", "Date", "Git Commit", "Config Path", "Key Changes", "Result Summary", "Notes"]
# The blocking checks that decide whether an attempt's result may be listed.
BLOCKING_CHECKS = [spec.key for c in (blend_complete, *TRAIN_CHECKS) for spec in c.check_specs if spec.blocking]


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


def experiment_row(storage: Storage, exp: ExperimentConfig, outcome: Outcome) -> dict[str, Any]:
    """One table row: the result from run.json and the JSONL log when the attempt is `ok`, else its status."""
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
    run, records = json.loads(storage.store.read_text(run_key)), load_jsonl(storage, exp.id)
    losses = [r["loss"] for r in records if r["loss"] is not None]
    row.update(
        date=(run.get("finished_at") or run.get("started_at") or row["date"])[:10],
        git_commit=run.get("git_commit", "unknown"),
        result_summary=result_summary(records, run),
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


@dg.asset(group_name="records", kinds={"parquet"},
          deps=[dg.AssetDep(a, partition_mapping=dg.AllPartitionMapping()) for a in (checkpoint, training_log)],
          description="The experiment table: id, date, git commit, config path, key changes, result summary, notes.")
def experiment_records(context: dg.AssetExecutionContext, pipeline: PipelineConfigResource,
                       storage: StorageResource) -> dg.MaterializeResult:
    cfg = pipeline.load()
    rows = []
    for exp_id in sorted(context.instance.get_dynamic_partitions(experiments.name)):
        try:
            exp = load_experiment(cfg, exp_id)
        except ConfigError as err:
            context.log.warning(f"experiment {exp_id} skipped: {err}")
            continue
        outcome = experiment_outcome(context.instance, exp_id, final_asset=training_log.key,
                                     blocking_checks=BLOCKING_CHECKS)
        if outcome is not None:
            rows.append(experiment_row(storage, exp, outcome))
    table = storage.layout.records_table()
    with storage.store.publish(table, wait=True) as staged:
        pq.write_table(pa.Table.from_pylist(rows, schema=RECORDS_SCHEMA), staged)
    storage.store.write_text(storage.layout.records_markdown(), to_markdown(rows))
    return dg.MaterializeResult(metadata={
        "experiments": len(rows),
        "failed": sum(r["status"] == FAILED for r in rows),
        "path": dg.MetadataValue.path(storage.store.url(table)),
        "table": dg.MetadataValue.md(to_markdown(rows)),
    })


@dg.asset_check(asset=experiment_records, description="One row per experiment id, no id twice.")
def one_row_per_experiment(storage: StorageResource) -> dg.AssetCheckResult:
    table = storage.store.local_path(storage.layout.records_table())
    ids = pq.read_table(table, columns=["experiment_id"]).column(0).to_pylist()
    return dg.AssetCheckResult(passed=len(ids) == len(set(ids)), metadata={"rows": len(ids)})

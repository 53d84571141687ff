"""`experiment_records`: the reference's experiment table (§B.7), one row per trained experiment, as Parquet
(queryable with `mm query`) and Markdown."""

import json
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from mm_assets.eval.assets import eval_report
from mm_assets.eval.report import eval_summary
from mm_assets.partitions import experiments
from mm_assets.paths import atomic_path, atomic_write_text
from mm_assets.project import ConfigError, PROJECT_ROOT
from mm_assets.train.assets import LOG_JSONL, RUN_FILE, checkpoint, load_jsonl, training_log
from mm_assets.train.experiments import load_experiment_file
from resources.config import PipelineConfigResource
from resources.storage import StorageResource

RECORDS_SCHEMA = pa.schema([
    ("experiment_id", pa.string()), ("date", pa.string()), ("git_commit", pa.string()),
    ("config_path", pa.string()), ("key_changes", pa.list_(pa.string())), ("result_summary", pa.string()),
    ("notes", pa.string()), ("final_loss", pa.float64()), ("iterations", pa.int64()),
    ("consumed_tokens", pa.int64()), ("checkpoint", pa.string()),
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


def experiment_row(exp, notes: str, evaluation: str = "") -> dict[str, Any] | None:
    """One table row from the experiment's run.json and JSONL log (and its eval summary, when evaluated);
    None when it has not been trained."""
    run_path, log_path = exp.run_dir / RUN_FILE, exp.run_dir / LOG_JSONL
    if not run_path.is_file() or not log_path.is_file():
        return None
    run, records = json.loads(run_path.read_text()), load_jsonl(log_path)
    losses = [r["loss"] for r in records if r["loss"] is not None]
    return {
        "experiment_id": exp.id,
        "date": (run.get("finished_at") or run.get("started_at") or "")[:10],
        "git_commit": run.get("git_commit", "unknown"),
        "config_path": _relative(str(exp.path)),
        "key_changes": list(exp.key_changes),
        "result_summary": result_summary(records, run) + (f"; {evaluation}" if evaluation else ""),
        "notes": notes,
        "final_loss": losses[-1] if losses else None,
        "iterations": records[-1]["iteration"] if records else None,
        "consumed_tokens": records[-1].get("consumed_tokens") if records else None,
        "checkpoint": run.get("checkpoint"),
    }


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
          deps=[dg.AssetDep(a, partition_mapping=dg.AllPartitionMapping())
                for a in (checkpoint, training_log, eval_report)],
          description="The experiment table: id, date, git commit, config path, key changes, result summary, notes.")
def experiment_records(context: dg.AssetExecutionContext, pipeline: PipelineConfigResource,
                       storage: StorageResource) -> dg.MaterializeResult:
    cfg = pipeline.load()
    rows = []
    for exp_id in sorted(context.instance.get_dynamic_partitions(experiments.name)):
        try:
            exp, notes = load_experiment_file(cfg, pipeline.path, exp_id)
        except ConfigError as err:
            context.log.warning(f"experiment {exp_id} skipped: {err}")
            continue
        evaluation = eval_summary(storage.eval_report_dir(exp_id), cfg.eval.leakage)
        if (row := experiment_row(exp, notes, evaluation)) is not None:
            rows.append(row)
    folder = storage.path("records")
    parquet = folder / "experiment_records.parquet"
    with atomic_path(parquet) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=RECORDS_SCHEMA), tmp)
    atomic_write_text(folder / "experiment_records.md", to_markdown(rows))
    return dg.MaterializeResult(metadata={
        "experiments": len(rows),
        "path": dg.MetadataValue.path(str(parquet)),
        "table": dg.MetadataValue.md(to_markdown(rows)),
    })


@dg.asset_check(asset=experiment_records, description="One row per experiment id, no id twice.")
def one_row_per_experiment(storage: StorageResource) -> dg.AssetCheckResult:
    ids = pq.read_table(storage.path("records", "experiment_records.parquet"), columns=["experiment_id"]).column(0).to_pylist()
    return dg.AssetCheckResult(passed=len(ids) == len(set(ids)), metadata={"rows": len(ids)})

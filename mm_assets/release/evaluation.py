"""What the release checklist knows about the experiment's evaluation: the eval report `eval_report` wrote
(metrics rows and report.json, which names the checkpoint it evaluated), the tasks configured in `eval.tasks`,
and how `check_leakage` last evaluated that report (from the Dagster instance)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mm_assets.config.base import ConfigError
from mm_assets.config.pipeline import PipelineConfig
from mm_assets.eval.config import load_tasks
from mm_assets.eval.report import STANDARD, read_details, read_report
from mm_assets.records.outcome import CheckEvaluation
from mm_assets.storage.store import Storage


@dataclass(frozen=True)
class EvalEvidence:
    rows: list[dict[str, Any]] = field(default_factory=list)  # the report's metric rows ([] without a report)
    details: dict[str, Any] = field(default_factory=dict)  # report.json
    error: str | None = None  # why there is no report
    tasks: list[str] = field(default_factory=list)  # the task names eval.tasks configures
    tasks_error: str | None = None
    leakage: CheckEvaluation | None = None  # check_leakage on the experiment's latest eval_report

    def standard(self, task: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["task_name"] == task and r["split"] == STANDARD]


def read_evaluation(cfg: PipelineConfig, storage: Storage, experiment: str,
                    leakage: CheckEvaluation | None = None) -> EvalEvidence:
    try:
        tasks, tasks_error = [t.task_name for t in load_tasks(cfg.resolve(cfg.eval.tasks_dir), cfg.eval.tasks)], None
    except ConfigError as err:
        tasks, tasks_error = [], str(err)
    try:
        rows, details = read_report(storage, experiment), read_details(storage, experiment)
    except FileNotFoundError as err:
        return EvalEvidence(error=str(err), tasks=tasks, tasks_error=tasks_error, leakage=leakage)
    return EvalEvidence(rows, details, None, tasks, tasks_error, leakage)


def eval_files(storage: Storage, experiment: str) -> dict[str, Path]:
    """The report's files by name (metrics, predictions, report.json), as local paths; {} without a report."""
    layout, store = storage.layout, storage.store
    keys = (layout.eval_metrics(experiment), layout.eval_predictions(experiment), layout.eval_report(experiment))
    if not all(store.exists(k) for k in keys):
        return {}
    return {k.rsplit("/", 1)[1]: store.local_path(k) for k in keys}

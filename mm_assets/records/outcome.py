"""How an experiment's latest training attempt ended, from the Dagster instance rather than from files.

The files in a run folder (run.json, training_log.jsonl) hold whatever was written last, which may come from
a run whose blocking checks then failed. The instance knows: the latest run that planned the final training
asset for the partition, whether that run materialized it, and how every blocking check on the training
assets evaluated last. Only an attempt that materialized the final asset with every blocking check passed
is `ok`; its files are then the result to report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

# Not exported from `dagster`: the status of an asset check execution (event log storage API).
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

OK, FAILED, RUNNING = "ok", "failed", "running"
_UNFINISHED = {dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
               dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING}


@dataclass(frozen=True)
class Outcome:
    status: str  # ok | failed | running
    failed: str | None  # what failed: "check loss_finite", "step checkpoint", "run CANCELED"
    run_id: str
    started_at: float | None  # the run's start, seconds since the epoch


HISTORY = 1000  # check executions scanned per check (all partitions, newest first)


def _evaluations(instance: dg.DagsterInstance, key: dg.AssetCheckKey):
    """(status, target materialization storage id, run id, metadata) of the check's recent executions, newest
    first (metadata as plain values; empty for a planned execution)."""
    for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=HISTORY):
        data = record.event.dagster_event.event_specific_data if record.event and record.event.dagster_event else None
        target = getattr(data, "target_materialization_data", None)
        metadata = {k: getattr(v, "value", v) for k, v in (getattr(data, "metadata", None) or {}).items()}
        yield record.status, target.storage_id if target else None, record.run_id, metadata


@dataclass(frozen=True)
class CheckEvaluation:
    """How a check last evaluated its asset's latest materialization of one partition."""

    status: AssetCheckExecutionRecordStatus | None  # None: that materialization was never evaluated
    metadata: dict[str, Any]
    run_id: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == AssetCheckExecutionRecordStatus.SUCCEEDED


def latest_evaluation(instance: dg.DagsterInstance, key: dg.AssetCheckKey, partition: str) -> CheckEvaluation:
    """Asset checks on partitioned assets carry no partition of their own: they are matched through the
    materialization they evaluated, here the asset's latest of `partition`."""
    found = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key.asset_key, asset_partitions=[partition]), limit=1).records
    if found:
        for status, target, run_id, metadata in _evaluations(instance, key):
            if target == found[0].storage_id and status != AssetCheckExecutionRecordStatus.PLANNED:
                return CheckEvaluation(status, metadata, run_id)
    return CheckEvaluation(None, {})


def _failed_checks(instance: dg.DagsterInstance, checks: Sequence[dg.AssetCheckKey], partition: str) -> list[str]:
    """Blocking checks whose latest evaluation of their asset's latest materialization of `partition` did not
    pass."""
    failed = []
    for key in checks:
        status = latest_evaluation(instance, key, partition).status
        if status != AssetCheckExecutionRecordStatus.SUCCEEDED:
            failed.append(f"check {key.name}" + ("" if status == AssetCheckExecutionRecordStatus.FAILED
                                                 else " (not evaluated)"))
    return failed


def _failed_in_run(instance: dg.DagsterInstance, checks: Sequence[dg.AssetCheckKey], run_id: str) -> list[str]:
    failed = AssetCheckExecutionRecordStatus.FAILED
    return [f"check {key.name}" for key in checks
            if any(r == run_id and s == failed for s, _, r, _ in _evaluations(instance, key))]


def _failed_steps(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    events = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    return list(dict.fromkeys(f"step {e.step_key}" for e in events if e.step_key))


def experiment_outcome(instance: dg.DagsterInstance, partition: str, *, final_asset: dg.AssetKey,
                       blocking_checks: Sequence[dg.AssetCheckKey]) -> Outcome | None:
    """The latest attempt at `final_asset` for `partition`; None when it was never attempted."""
    planned = instance.get_latest_planned_materialization_info(final_asset, partition)
    if planned is None:
        return None
    record = instance.get_run_record_by_id(planned.run_id)
    started = record.start_time if record else None
    if record is not None and record.dagster_run.status in _UNFINISHED:
        return Outcome(RUNNING, None, planned.run_id, started)
    found = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=final_asset, asset_partitions=[partition]), limit=1).records
    if found and found[0].run_id == planned.run_id:
        failed = _failed_checks(instance, blocking_checks, partition)
        return Outcome(FAILED if failed else OK, ", ".join(failed) or None, planned.run_id, started)
    failed = _failed_in_run(instance, blocking_checks, planned.run_id) or _failed_steps(instance, planned.run_id)
    if not failed:
        status = record.dagster_run.status.value if record else "unknown"
        failed = [f"run {status}"]
    return Outcome(FAILED, ", ".join(failed), planned.run_id, started)

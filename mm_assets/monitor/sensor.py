"""The alert sensor: every failed asset check (any asset of this code location) and every failed run, delivered
once to the configured webhooks / Slack (`monitoring.alerts`). Dagster's open-source edition has no alert
policies (a Dagster+ feature); this is the sensor users build themselves.

Exactly once per evaluation: the cursor holds a low-water mark over the instance's asset-check execution ids
(a record gets its id when the check is *planned*, so a later id can complete first) plus the ids above it
already handled, and Dagster's own cursor over run-failure events. A new sensor starts from "now": history is
not replayed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from mm_assets.monitor.alerts import Alert, DeliveryError, destinations, meets, plain, slack_payload
from resources.config import PipelineConfigResource

HISTORY_LIMIT = 200  # check executions read per check key and tick


@dataclass
class AlertCursor:
    low: int = 0  # every check execution with id <= low is handled
    done: set[int] = field(default_factory=set)  # handled ids above `low`
    runs: str | None = None  # fetch_run_status_changes cursor

    @classmethod
    def parse(cls, text: str | None) -> AlertCursor | None:
        if not text:
            return None
        data = json.loads(text)
        return cls(data["low"], set(data["done"]), data.get("runs"))

    def dump(self) -> str:
        return json.dumps({"low": self.low, "done": sorted(self.done), "runs": self.runs})

    def advance(self, handled: set[int], pending: set[int], seen_max: int) -> None:
        self.done |= handled
        self.low = (min(pending) - 1) if pending else max(self.low, seen_max)
        self.done = {i for i in self.done if i > self.low}


def _run_url(ui_url: str, run_id: str) -> str:
    return f"{ui_url.rstrip('/')}/runs/{run_id}"


def _check_records(context: dg.SensorEvaluationContext, after: int):
    """Check executions with id > after, oldest first, across every check key of the code location."""
    records = []
    for key in context.repository_def.asset_graph.asset_check_keys:
        for record in context.instance.event_log_storage.get_asset_check_execution_history(key, limit=HISTORY_LIMIT):
            if record.id <= after:
                break
            records.append(record)
    return sorted(records, key=lambda r: r.id)


def _partition(instance: dg.DagsterInstance, run_id: str) -> str | None:
    run = instance.get_run_by_id(run_id)
    return run.tags.get("dagster/partition") if run else None


def _check_alert(instance: dg.DagsterInstance, record, ui_url: str) -> Alert | None:
    evaluation = record.event.dagster_event.event_specific_data if record.event and record.event.dagster_event \
        else None
    if evaluation is None or evaluation.passed:
        return None
    asset = evaluation.asset_key.to_user_string()
    return Alert(kind="check", severity=evaluation.severity.value,
                 title=f"Check {evaluation.check_name} failed on {asset}", run_id=record.run_id,
                 run_url=_run_url(ui_url, record.run_id), asset=asset, check=evaluation.check_name,
                 partition=record.partition or evaluation.partition or _partition(instance, record.run_id),
                 description=evaluation.description,
                 metadata={k: plain(v) for k, v in evaluation.metadata.items()})


def _run_alert(instance: dg.DagsterInstance, entry, ui_url: str) -> Alert:
    run = instance.get_run_by_id(entry.run_id)
    data = entry.dagster_event.event_specific_data if entry.dagster_event else None
    step = getattr(data, "first_step_failure_event", None)
    message = " ".join(filter(None, [entry.message, _error_chain(getattr(data, "error", None)),
                                     _error_chain(step.event_specific_data.error if step else None)]))
    return Alert(kind="run", severity="ERROR", title=f"Run of {run.job_name if run else '?'} failed",
                 run_id=entry.run_id, run_url=_run_url(ui_url, entry.run_id), job=run.job_name if run else None,
                 partition=run.tags.get("dagster/partition") if run else None, description=message[:1000])


def _error_chain(error) -> str:
    """An error and its causes, one message each ("A: … <- caused by B: …")."""
    messages = []
    while error is not None:
        messages.append(error.message.strip())
        error = error.cause
    return " <- caused by ".join(messages)


def _is_pending(instance: dg.DagsterInstance, record) -> bool:
    if record.status != AssetCheckExecutionRecordStatus.PLANNED:
        return False
    run = instance.get_run_by_id(record.run_id)
    return run is not None and not run.is_finished  # a planned check of a finished run will never complete


def _start(context: dg.SensorEvaluationContext) -> AlertCursor:
    """A new sensor: everything before now counts as handled."""
    ids = [r.id for r in _check_records(context, 0)]
    latest = context.instance.fetch_run_status_changes(dg.DagsterEventType.RUN_FAILURE, limit=1, ascending=False)
    return AlertCursor(low=max(ids, default=0), runs=latest.cursor if latest.records else None)


def _deliver(context: dg.SensorEvaluationContext, alerts: list[Alert], targets: list, timeout_s: float) -> list[str]:
    failures = []
    for alert in alerts:
        payload = slack_payload(alert)
        for target in targets:
            try:
                target.send(payload, timeout_s)
            except DeliveryError as err:
                failures.append(f"{alert.title}: {err}")
    for failure in failures:
        context.log.error(f"alert not delivered: {failure}")
    return failures


def evaluate(context: dg.SensorEvaluationContext, pipeline: PipelineConfigResource) -> dg.SkipReason:
    cfg = pipeline.load().monitoring.alerts
    cursor = AlertCursor.parse(context.cursor)
    if cursor is None:
        context.update_cursor(_start(context).dump())
        return dg.SkipReason("started: failed checks and runs from now on are delivered")
    instance = context.instance
    alerts, handled, pending, seen_max = [], set(), set(), cursor.low
    for record in _check_records(context, cursor.low):
        seen_max = max(seen_max, record.id)
        if record.id in cursor.done:
            continue
        if _is_pending(instance, record):
            pending.add(record.id)
            continue
        handled.add(record.id)
        alert = _check_alert(instance, record, cfg.ui_url) if record.status == AssetCheckExecutionRecordStatus.FAILED else None
        if alert is not None and meets(alert.severity, cfg.min_severity):
            alerts.append(alert)
    runs = instance.fetch_run_status_changes(dg.DagsterEventType.RUN_FAILURE, limit=100, cursor=cursor.runs,
                                             ascending=True)
    alerts += [_run_alert(instance, r.event_log_entry, cfg.ui_url) for r in runs.records]
    targets, problems = destinations(cfg)
    for problem in problems:
        context.log.warning(f"alert destination skipped: {problem}")
    failures = _deliver(context, alerts, targets, cfg.timeout_s) if targets else []
    cursor.advance(handled, pending, seen_max)
    cursor.runs = runs.cursor if runs.records else cursor.runs
    context.update_cursor(cursor.dump())
    if not alerts:
        return dg.SkipReason("no failed check or run since the last tick")
    if not targets:
        return dg.SkipReason(f"{len(alerts)} alert(s) but no destination configured (monitoring.alerts)")
    return dg.SkipReason(f"delivered {len(alerts)} alert(s) to {len(targets)} destination(s)"
                         + (f"; {len(failures)} deliveries failed" if failures else ""))


def alert_sensor(interval_s: int) -> dg.SensorDefinition:
    @dg.sensor(name="alert_sensor", minimum_interval_seconds=interval_s, default_status=dg.DefaultSensorStatus.RUNNING,
               description="Delivers failed asset checks and failed runs to monitoring.alerts (webhooks, Slack).")
    def _sensor(context: dg.SensorEvaluationContext, pipeline: PipelineConfigResource):
        return evaluate(context, pipeline)

    return _sensor

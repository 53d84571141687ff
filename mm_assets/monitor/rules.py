"""Prometheus alerting and recording rules, generated from the `monitoring:` config (reference §B.5, corrected).

What differs from the reference's three rules, and why:
- Every training rule holds only while the experiment's Pushgateway group is fresh (`time() -
  push_time_seconds < metrics_stale.after`). The Pushgateway never lets a value go stale: without this, a dead
  trainer's last loss is "flat" forever and its last grad norm "high" forever. The publisher deletes the group
  when a run ends, so nothing fires between runs either.
- Loss stagnation compares two windows only when each holds `min_samples` fresh pushes (`changes()` of the
  last-update timestamp counts pushes, not scrapes of the same old value).
- GPU utilisation reads a recording rule restricted to the job's nodes (dcgm-exporter scraped through the
  file_sd targets the publisher writes from the Slurm node list), and holds only while the job's group is fresh:
  idle nodes and the gap between runs never fire.
- Added what the reference forgot: metrics stopped arriving while the run's group exists, the Pushgateway
  itself down, throughput drop, MFU below a floor, non-finite loss, skipped iterations.
"""

from __future__ import annotations

from dataclasses import dataclass

from mm_assets.monitor import metrics as mt
from mm_assets.monitor.config import MonitoringConfig, duration_seconds

PUSHGATEWAY_SCRAPE_JOB = "pushgateway"  # Prometheus's scrape job for the Pushgateway (honor_labels: true)
DCGM_SCRAPE_JOB = "llm_pretrain_dcgm"  # Prometheus's scrape job for dcgm-exporter on the file_sd targets
RECORDING_GROUP, ALERT_GROUP = "llm_pretrain_recording", "llm_pretrain_alerts"


@dataclass(frozen=True)
class AlertRule:
    alert: str
    expr: str
    for_: str
    severity: str
    summary: str  # may use {{ $labels.<name> }} only (the promtool tests expand it)
    description: str

    def to_yaml(self) -> dict:
        return {"alert": self.alert, "expr": self.expr, "for": self.for_, "labels": {"severity": self.severity},
                "annotations": {"summary": self.summary, "description": self.description}}


def _seconds(duration: str) -> int:
    return int(duration_seconds(duration))


class _Terms:
    """The selectors every training rule shares, for one config."""

    def __init__(self, cfg: MonitoringConfig):
        job = cfg.pushgateway.training_job
        self.stale_s = _seconds(cfg.signals.metrics_stale.after)
        self.push_time = f'push_time_seconds{{job="{job}"}}'
        self.fresh = f"(time() - {self.push_time} < {self.stale_s})"
        self.job = job

    def sel(self, component: str, metric: str) -> str:
        return f'{mt.name(component, metric)}{{job="{self.job}"}}'

    def pushes(self, window: str, offset: str | None = None) -> str:
        """Pushes seen in a window: changes of the last-update timestamp."""
        shift = f" offset {offset}" if offset else ""
        return f"changes({self.sel('training', 'last_update_timestamp_seconds')}[{window}]{shift})"

    def guarded(self, condition: str) -> str:
        return f"(\n  {condition}\n)\nand on (experiment) {self.fresh}"


def grad_norm_explosion(cfg: MonitoringConfig, t: _Terms) -> AlertRule:
    s = cfg.signals.grad_norm_explosion
    return AlertRule(
        "GradNormExplosion", t.guarded(f"{t.sel('training', 'grad_norm')} > {s.threshold:g}"), s.alert.for_,
        s.alert.severity, "Gradient norm explosion in {{ $labels.experiment }}",
        f"The gradient norm of {{{{ $labels.experiment }}}} (model {{{{ $labels.model }}}}) has stayed above "
        f"{s.threshold:g} for {s.alert.for_}: training may be about to diverge.")


def loss_stagnation(cfg: MonitoringConfig, t: _Terms) -> AlertRule:
    s = cfg.signals.loss_stagnation
    w, n, loss = s.alert.window, s.alert.min_samples, t.sel("training", "loss")
    condition = (f"abs(avg_over_time({loss}[{w}]) - avg_over_time({loss}[{w}] offset {w})) < {s.min_delta:g}\n"
                 f"  and on (experiment) {t.pushes(w)} >= {n}\n"
                 f"  and on (experiment) {t.pushes(w, w)} >= {n}")
    return AlertRule(
        "TrainingLossStagnation", t.guarded(condition), s.alert.for_, s.alert.severity,
        "Training loss of {{ $labels.experiment }} is flat",
        f"The mean loss of {{{{ $labels.experiment }}}} changed by less than {s.min_delta:g} between the last two "
        f"{w} windows (each with at least {n} pushes), for {s.alert.for_}: the run may have stopped converging.")


def gpu_utilization_low(cfg: MonitoringConfig, t: _Terms) -> AlertRule:
    s = cfg.signals.gpu_utilization_low
    util = mt.name("hardware", "gpu_utilization")
    return AlertRule(
        "GpuUtilizationTooLow", t.guarded(f"avg by (experiment, node_id) ({util}) < {s.threshold_percent:g}"),
        s.alert.for_, s.alert.severity, "GPU utilisation too low on {{ $labels.node_id }}",
        f"The GPUs of node {{{{ $labels.node_id }}}} running {{{{ $labels.experiment }}}} averaged below "
        f"{s.threshold_percent:g}% for {s.alert.for_}: an input (IO) bottleneck or a hung rank.")


def metrics_stale(cfg: MonitoringConfig, t: _Terms) -> AlertRule:
    s = cfg.signals.metrics_stale
    return AlertRule(
        "TrainingMetricsStale", f"time() - {t.push_time} > {t.stale_s}", s.alert.for_, s.alert.severity,
        "No training metrics from {{ $labels.experiment }}",
        f"Nothing was pushed for {{{{ $labels.experiment }}}} for over {s.after} although its run has not ended "
        "(its Pushgateway group still exists): the job or its log stream has stalled, or the Dagster process died.")


def pushgateway_down(cfg: MonitoringConfig, t: _Terms) -> AlertRule:
    s = cfg.signals.pushgateway_down
    up = f'up{{job="{PUSHGATEWAY_SCRAPE_JOB}"}}'
    return AlertRule(
        "PushgatewayDown", f"{up} == 0 or absent({up})", s.alert.for_, s.alert.severity,
        "The Pushgateway cannot be scraped",
        f"Prometheus has not scraped the Pushgateway for {s.alert.for_}: no training or data-pipeline metric "
        "arrives, and no training alert can fire.")


def throughput_drop(cfg: MonitoringConfig, t: _Terms) -> AlertRule:
    s = cfg.signals.throughput
    a, tps = s.alert, t.sel("training", "throughput_tokens_per_second")
    condition = (f"avg_over_time({tps}[{a.window}]) < {1 - s.max_drop:g} * avg_over_time({tps}[{a.baseline}] "
                 f"offset {a.window})\n"
                 f"  and on (experiment) {t.pushes(a.window)} >= {a.min_samples}\n"
                 f"  and on (experiment) {t.pushes(a.baseline, a.window)} >= {a.min_samples}")
    return AlertRule(
        "TrainingThroughputDrop", t.guarded(condition), a.for_, a.severity,
        "Throughput of {{ $labels.experiment }} dropped",
        f"Tokens per second of {{{{ $labels.experiment }}}} over the last {a.window} fell more than "
        f"{s.max_drop:.0%} below the {a.baseline} before, for {a.for_}: a slow node, IO or the network.")


def mfu_low(cfg: MonitoringConfig, t: _Terms) -> AlertRule | None:
    s = cfg.signals.throughput
    if s.mfu_floor is None:
        return None
    a, mfu = s.alert, t.sel("training", "mfu_ratio")
    condition = (f"avg_over_time({mfu}[{a.window}]) < {s.mfu_floor:g}\n"
                 f"  and on (experiment) {t.pushes(a.window)} >= {a.min_samples}")
    return AlertRule(
        "TrainingMfuLow", t.guarded(condition), a.for_, a.severity, "MFU of {{ $labels.experiment }} is low",
        f"Model FLOPs utilisation of {{{{ $labels.experiment }}}} averaged below {s.mfu_floor:.0%} over {a.window} "
        f"for {a.for_}.")


def non_finite_loss(cfg: MonitoringConfig, t: _Terms) -> AlertRule:
    s = cfg.signals.non_finite_loss
    loss, nan = t.sel("training", "loss"), t.sel("training", "nan_iterations_total")
    condition = f"({loss} != {loss})\n  or\n  (increase({nan}[{s.alert.window}]) > 0)"
    return AlertRule(
        "TrainingLossNotFinite", t.guarded(condition), s.alert.for_, s.alert.severity,
        "Non-finite loss in {{ $labels.experiment }}",
        f"{{{{ $labels.experiment }}}} logged a NaN loss or NaN iterations in the last {s.alert.window}.")


def skipped_iterations(cfg: MonitoringConfig, t: _Terms) -> AlertRule:
    s = cfg.signals.skipped_iterations
    skipped = t.sel("training", "skipped_iterations_total")
    return AlertRule(
        "TrainingIterationsSkipped", t.guarded(f"increase({skipped}[{s.alert.window}]) > {s.max_skipped}"),
        s.alert.for_, s.alert.severity, "Iterations skipped in {{ $labels.experiment }}",
        f"{{{{ $labels.experiment }}}} skipped more than {s.max_skipped} iterations (loss-scale overflow or "
        f"non-finite gradients) in {s.alert.window}.")


RULES = (grad_norm_explosion, loss_stagnation, gpu_utilization_low, metrics_stale, pushgateway_down,
         throughput_drop, mfu_low, non_finite_loss, skipped_iterations)


def alert_rules(cfg: MonitoringConfig) -> list[AlertRule]:
    t = _Terms(cfg)
    return [rule for make in RULES if (rule := make(cfg, t)) is not None]


def gpu_recording_expr() -> str:
    """dcgm-exporter's per-GPU utilisation (label `gpu`) as ours (`gpu_id`), only from the job's file_sd targets,
    which carry `experiment` and `node_id`."""
    return (f'max by (experiment, node_id, gpu_id) (\n  label_replace(DCGM_FI_DEV_GPU_UTIL{{job="{DCGM_SCRAPE_JOB}"}}, '
            f'"gpu_id", "$1", "gpu", "(.+)")\n)')


def rules_document(cfg: MonitoringConfig) -> dict:
    """The alert rules file."""
    return {"groups": [{"name": ALERT_GROUP, "rules": [r.to_yaml() for r in alert_rules(cfg)]}]}


def recording_document() -> dict:
    return {"groups": [{"name": RECORDING_GROUP, "rules": [
        {"record": mt.name("hardware", "gpu_utilization"), "expr": gpu_recording_expr()}]}]}

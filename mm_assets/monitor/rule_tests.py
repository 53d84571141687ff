"""promtool unit tests for the generated rules: for every rule a case that fires and near-misses that must not.

The cases are built from the same config as the rules (thresholds, windows, `for`), so they test the rules that
are shipped, not a copy. Series are sampled every `step` seconds (small enough for every window to hold its
minimum number of pushes); each push advances the last-update timestamp and push_time_seconds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from pydantic import BaseModel

from mm_assets.monitor import metrics as mt
from mm_assets.monitor.config import MonitoringConfig, duration_seconds
from mm_assets.monitor.rules import DCGM_SCRAPE_JOB, PUSHGATEWAY_SCRAPE_JOB, AlertRule, alert_rules

EXPERIMENT, MODEL, NODE = "exp-a", "10b", "dgx-01"


@dataclass
class Case:
    """One promtool test group: series, then the alerts expected at `eval_s` (none for a near-miss)."""

    title: str
    alert: str
    eval_s: int
    series: dict[str, str]  # series selector -> promtool values
    fires: list[dict[str, str]] = field(default_factory=list)  # labels of each expected alert (without severity)


def _num(x: float) -> str:
    return "NaN" if math.isnan(x) else f"{x:.10g}"


def _steps(seconds: float, step: int) -> int:
    return max(0, math.ceil(seconds / step))


class _Series:
    """promtool value strings for a run sampled every `step` seconds."""

    def __init__(self, cfg: MonitoringConfig, step: int):
        self.cfg, self.step = cfg, step
        self.job = cfg.pushgateway.training_job
        self.run = f'experiment="{EXPERIMENT}", job="{self.job}"'

    def training(self, metric: str) -> str:
        return f'{mt.name("training", metric)}{{{self.run}, model="{MODEL}"}}'

    @property
    def push_time(self) -> str:
        return f"push_time_seconds{{{self.run}}}"

    def pushes(self, n: int, stop_after: int | None = None) -> str:
        """A clock pushed every step for n+1 samples (or frozen after `stop_after` steps)."""
        if stop_after is None or stop_after >= n:
            return f"0+{self.step}x{n}"
        return f"0+{self.step}x{stop_after} {stop_after * self.step}+0x{n - stop_after - 1}"

    def run_clock(self, n: int, stop_after: int | None = None) -> dict[str, str]:
        values = self.pushes(n, stop_after)
        return {self.push_time: values, self.training("last_update_timestamp_seconds"): values}

    @staticmethod
    def const(value: float, n: int) -> str:
        return f"{_num(value)}+0x{n}"

    @staticmethod
    def then(first: float, n_first: int, second: float, n_second: int) -> str:
        """`first` for n_first+1 samples, then `second` for n_second samples."""
        return f"{_num(first)}+0x{n_first} {_num(second)}+0x{n_second - 1}" if n_second else f"{_num(first)}+0x{n_first}"


def _run_labels(**extra: str) -> dict[str, str]:
    return {"experiment": EXPERIMENT, "job": "", "model": MODEL, **extra}


def grad_norm_cases(cfg: MonitoringConfig, s: _Series, step: int) -> list[Case]:
    sig = cfg.signals.grad_norm_explosion
    hold = _steps(duration_seconds(sig.alert.for_), step)
    n = hold + 5
    t = n * step
    labels = _run_labels(job=s.job)
    cases = [
        Case("grad norm above the threshold while the run pushes", "GradNormExplosion", t,
             {s.training("grad_norm"): s.const(sig.threshold * 2, n), **s.run_clock(n)}, [labels]),
        Case("near miss: just below the threshold", "GradNormExplosion", t,
             {s.training("grad_norm"): s.const(sig.threshold * 0.99, n), **s.run_clock(n)}),
        Case("near miss: a dead trainer's last grad norm (group no longer pushed)", "GradNormExplosion",
             t + _stale_steps(cfg, step) * step,
             {s.training("grad_norm"): s.const(sig.threshold * 2, n + _stale_steps(cfg, step)),
              **s.run_clock(n + _stale_steps(cfg, step), stop_after=1)}),
    ]
    if hold >= 2:
        cases.append(Case(f"near miss: above the threshold for less than {sig.alert.for_}", "GradNormExplosion", t,
                          {s.training("grad_norm"): s.then(1.0, n - hold + 1, sig.threshold * 2, hold - 1),
                           **s.run_clock(n)}))
    return cases


def _stale_steps(cfg: MonitoringConfig, step: int) -> int:
    return _steps(duration_seconds(cfg.signals.metrics_stale.after), step) + 2


def stagnation_cases(cfg: MonitoringConfig, s: _Series, step: int) -> list[Case]:
    sig = cfg.signals.loss_stagnation
    w = _steps(duration_seconds(sig.alert.window), step)
    hold = _steps(duration_seconds(sig.alert.for_), step)
    n = 2 * w + hold + 3
    t = n * step
    slope = -1.5 * sig.min_delta / w  # the mean moves 1.5 × min_delta from one window to the next
    resumed = n - w - 1  # no push before this sample: the earlier window holds one push at most
    cases = [
        Case("flat loss with enough pushes in both windows", "TrainingLossStagnation", t,
             {s.training("loss"): s.const(2.0, n), **s.run_clock(n)}, [_run_labels(job=s.job)]),
        Case("near miss: the loss falls a little more than min_delta", "TrainingLossStagnation", t,
             {s.training("loss"): f"2{_fixed(slope)}x{n}", **s.run_clock(n)}),
        Case("near miss: flat, but the trainer is dead (no pushes)", "TrainingLossStagnation", t,
             {s.training("loss"): s.const(2.0, n), **s.run_clock(n, stop_after=n - 2 * w - hold)}),
    ]
    if sig.alert.min_samples >= 2:
        cases.append(Case("near miss: flat, but the earlier window has too few pushes (a resumed run)",
                          "TrainingLossStagnation", t,
                          {s.training("loss"): s.const(2.0, n), s.push_time: s.pushes(n),
                           s.training("last_update_timestamp_seconds"):
                               f"0+0x{resumed} {step}+{step}x{n - resumed - 1}"}))
    return cases


def _fixed(x: float) -> str:
    """A signed decimal without exponent (promtool's series notation cannot read 1e-05)."""
    return f"{x:+.15f}".rstrip("0").rstrip(".")


def gpu_cases(cfg: MonitoringConfig, s: _Series, step: int) -> list[Case]:
    sig = cfg.signals.gpu_utilization_low
    n = _steps(duration_seconds(sig.alert.for_), step) + 5
    t = n * step
    ours = f'DCGM_FI_DEV_GPU_UTIL{{job="{DCGM_SCRAPE_JOB}", experiment="{EXPERIMENT}", node_id="{NODE}", gpu="0"}}'
    idle = 'DCGM_FI_DEV_GPU_UTIL{job="cluster_dcgm", Hostname="idle-01", gpu="0"}'
    low = sig.threshold_percent / 5
    return [
        Case("low utilisation on a node of the running job", "GpuUtilizationTooLow", t,
             {ours: s.const(low, n), s.push_time: s.pushes(n)}, [{"experiment": EXPERIMENT, "node_id": NODE}]),
        Case("near miss: utilisation at the threshold", "GpuUtilizationTooLow", t,
             {ours: s.const(sig.threshold_percent, n), s.push_time: s.pushes(n)}),
        Case("near miss: between runs (no run group)", "GpuUtilizationTooLow", t, {ours: s.const(low, n)}),
        Case("near miss: an idle node that runs no job of ours", "GpuUtilizationTooLow", t,
             {idle: s.const(0, n), s.push_time: s.pushes(n)}),
    ]


def stale_cases(cfg: MonitoringConfig, s: _Series, step: int) -> list[Case]:
    stale = _steps(duration_seconds(cfg.signals.metrics_stale.after), step)
    hold = _steps(duration_seconds(cfg.signals.metrics_stale.alert.for_), step)
    n = stale + hold + 4
    labels = {"experiment": EXPERIMENT, "job": s.job}
    return [
        Case("the run's group exists but nothing was pushed for too long", "TrainingMetricsStale", n * step,
             {s.push_time: s.pushes(n, stop_after=1)}, [labels]),
        Case("near miss: the last push is just within the limit", "TrainingMetricsStale", (stale + 1) * step,
             {s.push_time: s.pushes(n, stop_after=1)}),
        Case("near miss: the run ended and its group was deleted", "TrainingMetricsStale", n * step,
             {s.push_time: f"0+{step}x2 stale"}),
    ]


def pushgateway_cases(cfg: MonitoringConfig, s: _Series, step: int) -> list[Case]:
    hold = _steps(duration_seconds(cfg.signals.pushgateway_down.alert.for_), step)
    up = f'up{{job="{PUSHGATEWAY_SCRAPE_JOB}", instance="127.0.0.1:9091"}}'
    cases = [Case("the Pushgateway is down", "PushgatewayDown", (hold + 3) * step,
                  {up: s.then(1, 1, 0, hold + 2)}, [{"job": PUSHGATEWAY_SCRAPE_JOB, "instance": "127.0.0.1:9091"}])]
    if hold >= 1:
        cases.append(Case(f"near miss: down for less than {cfg.signals.pushgateway_down.alert.for_} (a restart)",
                          "PushgatewayDown", (hold + 1) * step, {up: s.then(1, 1, 0, hold + 2)}))
    return cases


def throughput_cases(cfg: MonitoringConfig, s: _Series, step: int) -> list[Case]:
    sig = cfg.signals.throughput
    a = sig.alert
    w, b = _steps(duration_seconds(a.window), step), _steps(duration_seconds(a.baseline), step)
    hold = _steps(duration_seconds(a.for_), step)
    n = b + w + hold + 2
    t, low = n * step, w + hold + 1  # the baseline window stays (almost) all high
    tps = s.training("throughput_tokens_per_second")
    cases = [
        Case("tokens/s fell well below the baseline", "TrainingThroughputDrop", t,
             {tps: s.then(1000, n - low, 1000 * (1 - sig.max_drop) * 0.5, low), **s.run_clock(n)},
             [_run_labels(job=s.job)]),
        Case("near miss: a drop smaller than max_drop", "TrainingThroughputDrop", t,
             {tps: s.then(1000, n - low, 1000 * (1 - sig.max_drop) * 1.1, low), **s.run_clock(n)}),
    ]
    if sig.mfu_floor is not None:
        mfu = s.training("mfu_ratio")
        m = w + hold + 3
        cases += [
            Case("MFU below the floor", "TrainingMfuLow", m * step,
                 {mfu: s.const(sig.mfu_floor * 0.5, m), **s.run_clock(m)}, [_run_labels(job=s.job)]),
            Case("near miss: MFU just above the floor", "TrainingMfuLow", m * step,
                 {mfu: s.const(sig.mfu_floor * 1.05, m), **s.run_clock(m)}),
        ]
    return cases


def non_finite_cases(cfg: MonitoringConfig, s: _Series, step: int) -> list[Case]:
    a = cfg.signals.non_finite_loss.alert
    n = _steps(duration_seconds(a.for_), step) + 4
    nan = s.training("nan_iterations_total")
    return [
        Case("the last interval's loss is NaN", "TrainingLossNotFinite", n * step,
             {s.training("loss"): s.then(2.0, 1, math.nan, n - 1), nan: s.then(0, 1, 3, n - 1), **s.run_clock(n)},
             [_run_labels(job=s.job)]),
        Case("near miss: a finite loss, no NaN iterations", "TrainingLossNotFinite", n * step,
             {s.training("loss"): s.const(2.0, n), nan: s.const(0, n), **s.run_clock(n)}),
    ]


def skipped_cases(cfg: MonitoringConfig, s: _Series, step: int) -> list[Case]:
    sig = cfg.signals.skipped_iterations
    w = _steps(duration_seconds(sig.alert.window), step)
    n = w + _steps(duration_seconds(sig.alert.for_), step) + 2
    skipped = s.training("skipped_iterations_total")

    def counter(total: int) -> str:  # 0 until the window's first sample, then `total` more by the end
        return f"0+0x{n - w} {total}+0x{w - 1}"

    return [
        Case(f"more than {sig.max_skipped} iterations skipped in the window", "TrainingIterationsSkipped", n * step,
             {skipped: counter(sig.max_skipped + 1), **s.run_clock(n)}, [_run_labels(job=s.job)]),
        Case(f"near miss: exactly {sig.max_skipped} skipped", "TrainingIterationsSkipped", n * step,
             {skipped: counter(sig.max_skipped), **s.run_clock(n)}),
    ]


CASES = (grad_norm_cases, stagnation_cases, gpu_cases, stale_cases, pushgateway_cases, throughput_cases,
         non_finite_cases, skipped_cases)


def _durations(cfg: MonitoringConfig) -> list[int]:
    """Every duration the rules use, in whole seconds."""
    found = []

    def walk(node) -> None:
        for name, value in node:
            if isinstance(value, BaseModel):
                walk(value)
            elif name in ("for_", "window", "baseline", "after"):
                found.append(int(duration_seconds(value)))

    walk(cfg.signals)
    return [d for d in found if d > 0]


def test_step(cfg: MonitoringConfig) -> int:
    """Seconds between samples: it divides every duration (so windows hold whole samples and `increase` needs no
    extrapolation), and each window holds at least 2·min_samples + 2 samples. At most 60."""
    sig = cfg.signals
    windows = [(sig.loss_stagnation.alert.window, sig.loss_stagnation.alert.min_samples),
               (sig.throughput.alert.window, sig.throughput.alert.min_samples),
               (sig.throughput.alert.baseline, sig.throughput.alert.min_samples)]
    limit = min([60] + [int(duration_seconds(w) // (2 * n + 2)) for w, n in windows])
    common = math.gcd(*_durations(cfg)) or 60
    return max([d for d in range(1, max(1, limit) + 1) if common % d == 0] or [1])


def cases(cfg: MonitoringConfig) -> list[Case]:
    step = test_step(cfg)
    series = _Series(cfg, step)
    return [case for make in CASES for case in make(cfg, series, step)]


_LABEL_REF = re.compile(r"\{\{ \$labels\.(\w+) \}\}")


def _expand(template: str, labels: dict[str, str]) -> str:
    return _LABEL_REF.sub(lambda m: labels.get(m.group(1), "<no value>"), template)


def _expected(rule: AlertRule, labels: dict[str, str]) -> dict:
    labels = {k: v for k, v in labels.items() if v}
    return {"exp_labels": {**labels, "severity": rule.severity},
            "exp_annotations": {"summary": _expand(rule.summary, labels),
                                "description": _expand(rule.description, labels)}}


def tests_document(cfg: MonitoringConfig, rule_files: list[str]) -> dict:
    """The promtool test file; every rule has a firing case and at least one near-miss."""
    rules = {r.alert: r for r in alert_rules(cfg)}
    step = test_step(cfg)
    groups = []
    for case in cases(cfg):
        rule = rules[case.alert]
        groups.append({
            "name": f"{case.alert}: {case.title}",
            "interval": f"{step}s",
            "input_series": [{"series": sel, "values": values} for sel, values in case.series.items()],
            "alert_rule_test": [{"eval_time": f"{case.eval_s}s", "alertname": case.alert,
                                 "exp_alerts": [_expected(rule, labels) for labels in case.fires]}],
        })
    groups.append(_recording_case(step))
    return {"rule_files": rule_files, "evaluation_interval": f"{step}s", "tests": groups}


def _recording_case(step: int) -> dict:
    ours = f'DCGM_FI_DEV_GPU_UTIL{{job="{DCGM_SCRAPE_JOB}", experiment="{EXPERIMENT}", node_id="{NODE}", gpu="3", UUID="GPU-x"}}'
    idle = 'DCGM_FI_DEV_GPU_UTIL{job="cluster_dcgm", Hostname="idle-01", gpu="0"}'
    return {
        "name": "recording: dcgm-exporter's utilisation of the job's nodes only, as node_id/gpu_id",
        "interval": f"{step}s",
        "input_series": [{"series": ours, "values": "87+0x5"}, {"series": idle, "values": "0+0x5"}],
        "promql_expr_test": [{
            "expr": mt.name("hardware", "gpu_utilization"), "eval_time": f"{3 * step}s",
            "exp_samples": [{"labels": f'{mt.name("hardware", "gpu_utilization")}{{experiment="{EXPERIMENT}", '
                                       f'gpu_id="3", node_id="{NODE}"}}', "value": 87}]}],
    }

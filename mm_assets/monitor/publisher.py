"""Training metrics while the job runs: Megatron's log lines, as the compute client streams them, become the
experiment's group in the Pushgateway (reference §B.5; DESIGN.md §6).

It only reads the log, so it works with an unmodified Megatron-LM. Pushes run on a background thread that keeps
only the latest snapshot: a slow or dead Pushgateway never holds up the log streaming (let alone the job), each
push is bounded by a timeout, and the first failure is reported once through `warn`. When the run ends the
group is deleted, so a finished run is neither stale nor idle to the rules, and the job's file_sd targets are
removed.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from mm_assets.monitor import metrics as mt
from mm_assets.monitor.pushgateway import Pushgateway, Sample
from mm_assets.monitor.run_spec import RunSpec
from mm_assets.monitor.targets import remove_targets, target_groups, write_targets
from mm_assets.train.log_records import TrainingRecord
from mm_assets.train.log_stream import MegatronLogParser


def metric_values(record: TrainingRecord, spec: RunSpec, totals: dict[str, float]) -> dict[str, float]:
    """One log record -> {metric name: value}; `totals` carries the counters across records (updated here)."""
    n = mt.name
    totals[n("training", "skipped_iterations_total")] += record.skipped_iterations
    totals[n("training", "nan_iterations_total")] += record.nan_iterations
    values = dict(totals)
    values[n("training", "iteration")] = record.iteration
    if record.loss is not None:
        values[n("training", "loss")] = record.loss
    elif record.nan_iterations:
        values[n("training", "loss")] = math.nan  # Megatron left a NaN loss out of the line
    for metric_name, value in (("grad_norm", record.grad_norm), ("learning_rate", record.lr),
                               ("loss_scale", record.loss_scale), ("consumed_tokens_total", record.consumed_tokens),
                               ("throughput_tokens_per_second", record.throughput_tps)):
        if value is not None:
            values[n("training", metric_name)] = value
    if record.gpu_mem_used_gb is not None:
        values[n("training", "gpu_memory_used_bytes")] = record.gpu_mem_used_gb * 2**30
    utilisation = spec.mfu(record.throughput_tps) if record.throughput_tps is not None else None
    if utilisation is not None:
        values[n("training", "mfu_ratio")] = utilisation
    values[n("training", "last_update_timestamp_seconds")] = _timestamp(record.timestamp)
    return values


def _timestamp(iso: str | None) -> float:
    if iso:
        try:
            return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return time.time()


class _PushWorker:
    """Pushes the latest submitted snapshot, at most once per `min_interval_s`; never blocks the caller."""

    def __init__(self, push: Callable[[dict[str, float]], None], min_interval_s: float):
        self._push, self._min_interval_s = push, min_interval_s
        self._cond = threading.Condition()
        self._pending: dict[str, float] | None = None
        self._stopping = False
        self._last_push = -math.inf
        self.errors: list[str] = []
        self.pushes = 0
        self._thread = threading.Thread(target=self._run, name="pushgateway", daemon=True)
        self._thread.start()

    def submit(self, values: dict[str, float]) -> None:
        with self._cond:
            self._pending = values
            self._cond.notify()

    def stop(self, timeout_s: float) -> None:
        """Push what is pending (bounded by `timeout_s`), then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stopping:
                    self._cond.wait()
                if self._pending is None:
                    return
                wait = self._last_push + self._min_interval_s - time.monotonic()
                if wait > 0 and not self._stopping:
                    self._cond.wait(wait)  # coalesce: newer snapshots replace this one meanwhile
                    continue
                values, self._pending = self._pending, None
            self._last_push = time.monotonic()
            try:
                self._push(values)
                self.pushes += 1
            except Exception as err:  # noqa: BLE001 (any failure of the monitoring side is only reported)
                self.errors.append(f"{type(err).__name__}: {err}")


class TrainingMetricsPublisher:
    """A compute-client observer (resources.compute.JobObserver) publishing one experiment's metrics.

    Args:
        spec: the run's labels and what MFU needs.
        gateway: the Pushgateway, or None to only parse (nothing is pushed).
        job: the `job` label of the group; the grouping key is {job, experiment}.
        warn: where problems go (the Dagster log); each kind is reported once.
        targets_path: the run's file_sd target file (written when the job starts, removed at the end).
        exporter_port: dcgm-exporter's port on the nodes.
    """

    def __init__(self, spec: RunSpec, gateway: Pushgateway | None, *, job: str, warn: Callable[[str], None],
                 min_push_interval_s: float = 5.0, targets_path: Path | None = None, exporter_port: int = 9400):
        self.spec, self.gateway, self.job, self.warn = spec, gateway, job, warn
        self.targets_path, self.exporter_port = targets_path, exporter_port
        self.parser = MegatronLogParser(seq_length=spec.seq_length)
        self.records = 0
        self._totals = {mt.name("training", "skipped_iterations_total"): 0.0,
                        mt.name("training", "nan_iterations_total"): 0.0}
        self._values: dict[str, float] = {}
        self._reported = 0
        self._worker = _PushWorker(self._push, min_push_interval_s) if gateway else None

    @classmethod
    def from_config(cls, monitoring, spec: RunSpec, *, targets_path: Path | None,
                    warn: Callable[[str], None]) -> "TrainingMetricsPublisher":
        """From the `monitoring:` config section; with no Pushgateway URL it only writes the targets."""
        pg = monitoring.pushgateway
        gateway = Pushgateway(pg.url, pg.timeout_s) if pg.url else None
        return cls(spec, gateway, job=pg.training_job, warn=warn, min_push_interval_s=pg.min_push_interval_s,
                   targets_path=targets_path, exporter_port=monitoring.dcgm_exporter_port)

    @property
    def grouping_key(self) -> dict[str, str]:
        return {"experiment": self.spec.experiment}

    # -- JobObserver -------------------------------------------------------------------------------------

    def job_started(self, job_id: str | None, nodes: list[str]) -> None:
        """The job runs on `nodes`: list them for Prometheus and open the group (the staleness clock starts)."""
        if self.targets_path is not None and nodes:
            try:
                groups = target_groups(self.spec.experiment, nodes, self.exporter_port, job_id)
                write_targets(self.targets_path, groups)
            except (OSError, ValueError) as err:
                self.warn(f"monitoring: could not write the Prometheus targets {self.targets_path}: {err}")
        self._values[mt.name("training", "last_update_timestamp_seconds")] = time.time()
        self._submit()

    def job_lines(self, lines: list[str]) -> None:
        for event in self.parser.feed("".join(f"{line}\n" for line in lines)):
            if isinstance(event, TrainingRecord):
                self.records += 1
                self._values.update(metric_values(event, self.spec, self._totals))
        self._submit()

    def finish(self) -> None:
        """The run ended (any way): delete the group and the targets; never raises."""
        if self._worker is not None:
            self._worker.stop(timeout_s=2 * self.gateway.timeout_s)
            self._report_errors()
            try:
                self.gateway.delete(self.job, self.grouping_key)
            except Exception as err:  # noqa: BLE001
                self.warn(f"monitoring: could not delete the Pushgateway group {self.job}/{self.spec.experiment} "
                          f"({type(err).__name__}: {err}); its staleness alert will fire until it is deleted: "
                          f"curl -X DELETE {self.gateway.url}/metrics/job/{self.job}/experiment/{self.spec.experiment}")
        if self.targets_path is not None:
            try:
                remove_targets(self.targets_path)
            except OSError as err:
                self.warn(f"monitoring: could not remove the Prometheus targets {self.targets_path}: {err}")

    # -- pushing -----------------------------------------------------------------------------------------

    def samples(self, values: dict[str, float]) -> list[Sample]:
        labels = {"model": self.spec.model, "experiment": self.spec.experiment}
        return [Sample(mt.metric(name), value, labels) for name, value in sorted(values.items())]

    def _push(self, values: dict[str, float]) -> None:
        self.gateway.push(self.job, self.grouping_key, self.samples(values))

    def _submit(self) -> None:
        if self._worker is not None and self._values:
            self._worker.submit(dict(self._values))
            self._report_errors()

    def _report_errors(self) -> None:
        errors = self._worker.errors
        if len(errors) > self._reported and self._reported == 0:
            self.warn(f"monitoring: pushing to the Pushgateway {self.gateway.url} failed ({errors[0]}); training "
                      "goes on, metrics are retried with each new log record and this is reported once")
        self._reported = len(errors)

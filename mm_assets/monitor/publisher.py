"""Training metrics while the job runs: Megatron's log lines, as the compute resource streams them (JobSpec's
`on_line`), become the experiment's group in the Pushgateway (reference §B.5; DESIGN.md §6).

It only reads the log, so it works with an unmodified Megatron-LM. Pushes run on a background thread that keeps
only the latest snapshot: a slow or dead Pushgateway never holds up the log streaming (let alone the job), each
push is bounded by a timeout, and the first failure is reported once through `warn`. `job_started` (JobSpec's
`on_start`) lists the job's nodes for Prometheus; `finish`, called when the run ends, deletes the group, so a
finished run is neither stale nor idle to the rules, and empties the job's file_sd targets.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import datetime

from mm_assets.monitor import metrics as mt
from mm_assets.monitor.pushgateway import Pushgateway, Sample
from mm_assets.monitor.run_spec import RunSpec
from mm_assets.monitor.targets import target_groups, write_targets
from mm_assets.storage.store import Storage
from mm_assets.train.megatron_log.events import TrainingRecord
from mm_assets.train.megatron_log.stream import MegatronLogParser


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
    """One experiment's metrics from its job's log; `job_started` and `on_line` are JobSpec's callbacks.

    Args:
        spec: the run's labels and what MFU needs.
        gateway: the Pushgateway, or None to only parse (nothing is pushed).
        job: the `job` label of the group; the grouping key is {job, experiment}.
        warn: where problems go (the Dagster log); each kind is reported once.
        storage: where the run's file_sd targets go (written when the job starts, emptied at the end); None: none.
        exporter_port: dcgm-exporter's port on the nodes.
    """

    def __init__(self, spec: RunSpec, gateway: Pushgateway | None, *, job: str, warn: Callable[[str], None],
                 min_push_interval_s: float = 5.0, storage: Storage | None = None, exporter_port: int = 9400):
        self.spec, self.gateway, self.job, self.warn = spec, gateway, job, warn
        self.storage, self.exporter_port = storage, exporter_port
        self._targets_written = False
        self.parser = MegatronLogParser(seq_length=spec.seq_length)
        self.records = 0
        self._totals = {mt.name("training", "skipped_iterations_total"): 0.0,
                        mt.name("training", "nan_iterations_total"): 0.0}
        self._values: dict[str, float] = {}
        self._reported = 0
        self._worker = _PushWorker(self._push, min_push_interval_s) if gateway else None

    @classmethod
    def from_config(cls, monitoring, spec: RunSpec, *, storage: Storage | None,
                    warn: Callable[[str], None]) -> "TrainingMetricsPublisher":
        """From the `monitoring:` config section; with no Pushgateway URL it only writes the targets."""
        pg = monitoring.pushgateway
        gateway = Pushgateway(pg.url, pg.timeout_s) if pg.url else None
        return cls(spec, gateway, job=pg.training_job, warn=warn, min_push_interval_s=pg.min_push_interval_s,
                   storage=storage, exporter_port=monitoring.dcgm_exporter_port)

    @property
    def grouping_key(self) -> dict[str, str]:
        return {"experiment": self.spec.experiment}

    # -- JobSpec's callbacks -----------------------------------------------------------------------------

    def job_started(self, job_id: str | None, nodes: list[str]) -> None:
        """The job runs on `nodes`: list them for Prometheus and open the group (the staleness clock starts)."""
        if nodes:
            self._write_targets(job_id, nodes)
        self._values[mt.name("training", "last_update_timestamp_seconds")] = time.time()
        self._submit()

    def on_line(self, line: str) -> None:
        """One line of the job's log; a training record updates the snapshot that is pushed."""
        for event in self.parser.feed(f"{line}\n"):
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
        if self._targets_written:
            self._write_targets(None, [])  # no targets: Prometheus marks their series stale

    def _write_targets(self, job_id: str | None, nodes: list[str]) -> None:
        if self.storage is None:
            return
        try:
            write_targets(self.storage, self.spec.experiment,
                          target_groups(self.spec.experiment, nodes, self.exporter_port, job_id))
            self._targets_written = True
        except (OSError, ValueError) as err:
            self.warn(f"monitoring: could not write the Prometheus targets of {self.spec.experiment}: {err}")

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

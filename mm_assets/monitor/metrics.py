"""Every metric the project exposes, in one table: its Prometheus name, type, unit, labels and source.

The reference (§B.5) names metrics `project.component.metric_name{labels}`, e.g. `llm_pretrain.training.loss`.
Dots are not valid in Prometheus 2.x metric names (`[a-zA-Z_:][a-zA-Z0-9_:]*`; Prometheus 2.42, which Debian
ships, rejects them), so each reference name maps to an underscore name here, with the unit as a suffix as
Prometheus conventions ask (`_seconds`, `_bytes`, `_ratio`, `_total` for counters). The reference's
`rank="global"` label is dropped: the log is rank 0's view of the global batch, so it never varies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "llm_pretrain"
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

# Who produces a metric: the publisher (Megatron's log, pushed per experiment), the crawl/token assets (pushed
# per batch), or Prometheus itself (the recording rule over dcgm-exporter's DCGM_FI_DEV_GPU_UTIL).
TRAINING_LOG, DATA_PIPELINE, DCGM_RECORDING = "training log", "data pipeline", "recording rule (dcgm-exporter)"


@dataclass(frozen=True)
class Metric:
    name: str  # the Prometheus name
    reference: str  # the reference's dotted name (convention `project.component.metric_name`)
    type: str  # gauge | counter
    unit: str  # Grafana unit id
    labels: tuple[str, ...]
    help: str
    source: str


def _m(component: str, metric: str, type_: str, unit: str, labels: tuple[str, ...], help_: str, source: str) -> Metric:
    return Metric(f"{PREFIX}_{component}_{metric}", f"{PREFIX}.{component}.{metric}", type_, unit, labels, help_,
                  source)


RUN = ("model", "experiment")
DATA = ("stage", "modality", "batch")

METRICS: tuple[Metric, ...] = (
    _m("training", "loss", "gauge", "none", RUN, "lm loss averaged over the last log interval (NaN when Megatron "
       "reported NaN iterations)", TRAINING_LOG),
    _m("training", "grad_norm", "gauge", "none", RUN, "global gradient norm before clipping", TRAINING_LOG),
    _m("training", "learning_rate", "gauge", "none", RUN, "learning rate of the last iteration", TRAINING_LOG),
    _m("training", "loss_scale", "gauge", "none", RUN, "mixed-precision loss scale", TRAINING_LOG),
    _m("training", "throughput_tokens_per_second", "gauge", "short", RUN,
       "tokens per second over the last log interval (global batch × seq length / iteration time)", TRAINING_LOG),
    _m("training", "mfu_ratio", "gauge", "percentunit", RUN,
       "model FLOPs utilisation: tokens/s × FLOPs per token / (devices × peak FLOP/s per device)", TRAINING_LOG),
    _m("training", "iteration", "gauge", "none", RUN, "the last logged iteration", TRAINING_LOG),
    _m("training", "consumed_tokens_total", "counter", "short", RUN, "tokens consumed since the run started",
       TRAINING_LOG),
    _m("training", "skipped_iterations_total", "counter", "short", RUN,
       "iterations whose update was skipped (loss-scale overflow, non-finite gradients)", TRAINING_LOG),
    _m("training", "nan_iterations_total", "counter", "short", RUN, "iterations with a NaN loss or gradient",
       TRAINING_LOG),
    _m("training", "gpu_memory_used_bytes", "gauge", "bytes", RUN, "GPU memory in use (Megatron's last memory "
       "report)", TRAINING_LOG),
    _m("training", "last_update_timestamp_seconds", "gauge", "dateTimeAsIso", RUN,
       "when the last log record was written (Unix time)", TRAINING_LOG),
    _m("hardware", "gpu_utilization", "gauge", "percent", ("experiment", "node_id", "gpu_id"),
       "GPU utilisation in percent (0-100, as DCGM_FI_DEV_GPU_UTIL and the reference's threshold), only on the "
       "nodes of a running job", DCGM_RECORDING),
    _m("data_pipeline", "processed_bytes_total", "counter", "bytes", DATA, "bytes of media or tokens produced",
       DATA_PIPELINE),
    _m("data_pipeline", "processed_items_total", "counter", "short", DATA, "items processed successfully",
       DATA_PIPELINE),
    _m("data_pipeline", "failed_items_total", "counter", "short", DATA, "items that failed", DATA_PIPELINE),
    _m("data_pipeline", "tokens_total", "counter", "short", ("modality", "batch"), "discrete tokens produced",
       DATA_PIPELINE),
)
BY_NAME = {m.name: m for m in METRICS}


def metric(name: str) -> Metric:
    """The table's entry for a full name (`llm_pretrain_training_loss`); KeyError names the unknown one."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name!r} is not in the metric table (mm_assets/monitor/metrics.py)") from None


def name(component: str, metric_name: str) -> str:
    """`name("training", "loss")` -> "llm_pretrain_training_loss", checked against the table."""
    return metric(f"{PREFIX}_{component}_{metric_name}").name


def family(metric_: Metric) -> str:
    """The name without a counter's `_total`: what prometheus_client's metric families take."""
    return metric_.name.removesuffix("_total") if metric_.type == "counter" else metric_.name

"""What a Megatron log says, as records: training and validation lines, memory reports, checkpoint saves,
and lines that start like a record but do not parse. `to_json_dict` gives the reference's JSONL record (§B.4)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Union

# The reference's record (§B.4), field for field and in its order: the JSONL carries exactly these keys.
JSONL_FIELDS = (
    "timestamp",
    "iteration",
    "loss",
    "grad_norm",
    "lr",
    "consumed_tokens",
    "throughput_tps",
    "gpu_mem_used_gb",
    "loss_scale",
)
LM_LOSS = "lm loss"


@dataclass(frozen=True)
class TrainingRecord:
    """One `training_log` line. `loss` is the interval's average "lm loss"; None when Megatron left it out."""

    timestamp: str | None  # ISO 8601 UTC ("...Z")
    iteration: int
    train_iters: int
    consumed_samples: int
    loss: float | None
    grad_norm: float | None
    lr: float | None
    consumed_tokens: int | None
    throughput_tps: float | None
    gpu_mem_used_gb: float | None
    loss_scale: float | None
    global_batch_size: int | None
    elapsed_ms: float | None
    tflops_per_gpu: float | None
    skipped_iterations: int
    nan_iterations: int
    losses: dict[str, float] = field(default_factory=dict)  # every loss on the line (MoE aux losses, ...)

    def to_json_dict(self) -> dict[str, Any]:
        """The reference's record: exactly JSONL_FIELDS; NaN and infinities become null (JSON has neither)."""
        return {name: _finite(getattr(self, name)) for name in JSONL_FIELDS}


@dataclass(frozen=True)
class ValidationRecord:
    """One `evaluate_and_print_results` line; kept apart from the training records (it is not a step)."""

    iteration: int
    split: str  # "validation" or "test"
    final: bool  # the end-of-training evaluation ("... on validation set"), not a periodic one
    name: str | None  # the suffix of "validation-<name>" with multiple validation sets
    losses: dict[str, float]
    ppl: dict[str, float]

    @property
    def loss(self) -> float | None:
        return self.losses.get(LM_LOSS)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "split": self.split,
            "final": self.final,
            "name": self.name,
            "loss": _finite(self.loss),
            "ppl": _finite(self.ppl.get(LM_LOSS)),
        }


@dataclass(frozen=True)
class MemoryReport:
    """A `report_memory` line (MB, as printed). `used_gb` is what `gpu_mem_used_gb` takes from it."""

    rank: int
    label: str
    iteration: int | None
    values_mb: dict[str, float]

    @property
    def used_gb(self) -> float | None:
        # Device-wide use when Megatron printed it, else what the caching allocator holds (≈ nvidia-smi).
        for key in ("total device memory used", "reserved", "max reserved", "max allocated", "allocated"):
            if key in self.values_mb:
                return self.values_mb[key] / 1024.0
        return None


@dataclass(frozen=True)
class CheckpointSaved:
    """A `saving checkpoint at iteration N to DIR` line."""

    iteration: int
    path: str
    timestamp: str | None


@dataclass(frozen=True)
class MalformedLine:
    """A line that starts like a Megatron record but does not parse (cut off, interleaved, corrupted)."""

    text: str
    reason: str


LogEvent = Union[TrainingRecord, ValidationRecord, MemoryReport, CheckpointSaved, MalformedLine]


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

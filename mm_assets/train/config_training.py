"""The whole `training:` config: its model, parsing with key-path errors, the base file, and shard vocab."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mm_assets.project import ConfigError, type_hint
from mm_assets.train.config_cluster import ClusterConfig
from mm_assets.train.config_sections import (
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    ParallelismConfig,
    PrecisionConfig,
    ResumeConfig,
    ScheduleConfig,
    _Section,
)


class LaunchConfigError(ConfigError):
    """A training config that cannot be launched; the message lists every problem with its key path."""

    def __init__(self, problems: list[str] | str, *, source: str = "training config"):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s) before launch\n{lines}")


class TrainingConfig(_Section):
    """The `training:` section of configs/pipeline.yaml: one run, one object (the launch derives from it)."""

    model: ModelConfig
    parallelism: ParallelismConfig = ParallelismConfig()
    optimizer: OptimizerConfig
    schedule: ScheduleConfig
    precision: PrecisionConfig = PrecisionConfig()
    data: DataConfig
    cluster: ClusterConfig = ClusterConfig()
    resume: ResumeConfig = ResumeConfig()


@dataclass(frozen=True)
class ShardVocab:
    """What the launch needs from the shards' vocab layout manifest: size, end-of-document and pad ids."""

    vocab_size: int
    eod_id: int
    pad_id: int

    @classmethod
    def from_layout(cls, layout: Any) -> ShardVocab:
        """From a `mm_assets.shards.VocabLayout` (or anything with vocab_size, eod_id, pad_id)."""
        if layout.pad_id is None:
            raise ValueError("the vocab layout has no <pad> token: Megatron's GPTDataset needs one distinct from <eod>")
        return cls(int(layout.vocab_size), int(layout.eod_id), int(layout.pad_id))


def _format_errors(err: ValidationError) -> list[str]:
    lines: list[str] = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        # Pydantic names union members in the location (e.g. `int` / `literal['from_shards']`); drop them.
        loc = [p for p in loc if not (p.startswith(("literal[", "constrained-")) or p in {"int", "float", "str"})]
        where = ".".join(loc) or "<top level>"
        got = "" if e["type"] == "missing" else f" (got {e.get('input')!r})"
        msg = e["msg"].removeprefix("Value error, ")
        hint = type_hint(e)
        line = f"{where}: {msg}{got}" + (f"; {hint}" if hint else "")
        if line not in lines:
            lines.append(line)
    return lines


def parse_training(data: Any, *, source: str = "<training>") -> TrainingConfig:
    """Validate a `training:` mapping; the error lists every bad key path."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: training: must be a mapping, got {type(data).__name__}")
    try:
        return TrainingConfig(**data)
    except ValidationError as err:
        lines = "\n".join(f"  training.{line}" for line in _format_errors(err))
        raise ConfigError(f"{source}: invalid training configuration\n{lines}") from None


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None


def read_training_base(path: str | Path) -> dict[str, Any]:
    """The raw `training:` mapping of a pipeline config file (the base that experiments override)."""
    path = Path(path)
    data = _read_yaml(path) or {}
    if not isinstance(data, Mapping) or "training" not in data:
        raise ConfigError(f"{path}: no `training:` section (add the block from tests/train/golden/base_training.yaml)")
    if not isinstance(data["training"], Mapping):
        raise ConfigError(f"{path}: training: must be a mapping, got {type(data['training']).__name__}")
    return copy.deepcopy(dict(data["training"]))


def tokens_to_samples(tokens: int, seq_length: int) -> int:
    """Nearest whole number of sequences (samples) for a token count, in integers (halves round up)."""
    return (2 * tokens + seq_length) // (2 * seq_length)

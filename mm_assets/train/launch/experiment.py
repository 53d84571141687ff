"""Experiments: configs/experiments/<id>.yaml, overrides of the loaded pipeline config's `training:` section
(plus `notes:`), deep-merged onto it; their effective diff is the experiment record's "key changes"."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mm_assets.config.base import PROJECT_ROOT, ConfigError, read_yaml
from mm_assets.train.launch.config import TrainingConfig, parse_training

if TYPE_CHECKING:  # the pipeline config holds the training config: no import at run time
    from mm_assets.config.pipeline import PipelineConfig

EXPERIMENT_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`overrides` merged onto `base`: mappings merge key by key, anything else (lists too) replaces;
    a `null` override removes the key, so the field takes its default (e.g. `schedule: {iterations: null}`
    to switch a run to a token budget)."""
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def key_changes(base: TrainingConfig, merged: TrainingConfig) -> list[str]:
    """The effective differences as flat `key.path=value` strings (lists compared whole; `=null` when unset).

    Compares validated configs, so an override equal to the base is no change and a changed default shows.
    """
    old = _flatten(base.model_dump(mode="json"))
    new = _flatten(merged.model_dump(mode="json"))
    had_below = lambda k: any(o.startswith(k + ".") for o in old)  # noqa: E731
    changes = []
    for k, v in new.items():
        if k in old:
            if old[k] != v:
                changes.append(f"{k}={_show(v)}")
        elif v not in (None, {}, []) or had_below(k):  # a new, still unset field is no change
            changes.append(f"{k}={_show(v)}")
    for k in old:
        if k not in new and not any(p in new for p in _prefixes(k)) and not any(n.startswith(k + ".") for n in new):
            changes.append(f"{k}=null")
    return changes


def _prefixes(key: str) -> list[str]:
    parts = key.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@dataclass(frozen=True)
class ExperimentConfig:
    """An experiment: its id, the overrides it states, the merged training config and their diff, its notes."""

    id: str
    training: TrainingConfig
    overrides: Mapping[str, Any]
    key_changes: tuple[str, ...]
    path: Path | None = None
    base_dir: Path = PROJECT_ROOT  # relative paths in the config resolve against it
    notes: str = ""

    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else self.base_dir / p

    @property
    def job_name(self) -> str:
        return self.training.cluster.job_name or self.id


def check_experiment_id(experiment_id: str) -> str:
    if not isinstance(experiment_id, str) or not EXPERIMENT_ID.match(experiment_id):
        raise ConfigError(
            f"experiment id {experiment_id!r} must match {EXPERIMENT_ID.pattern} "
            "(it names a partition, a run folder and a Slurm job)"
        )
    return experiment_id


def experiment_from_overrides(
    experiment_id: str,
    base: TrainingConfig,
    overrides: Mapping[str, Any] | None,
    *,
    source: str = "<experiment>",
    path: Path | None = None,
    base_dir: Path = PROJECT_ROOT,
    notes: str = "",
) -> ExperimentConfig:
    """`overrides` merged onto the (validated) base training config, and validated."""
    check_experiment_id(experiment_id)
    overrides = {} if overrides is None else overrides
    if not isinstance(overrides, Mapping):
        raise ConfigError(
            f"{source}: an experiment file holds a mapping of training overrides, got {type(overrides).__name__}"
        )
    unknown = sorted(str(k) for k in overrides if k not in TrainingConfig.model_fields)
    if unknown:
        known = ", ".join(TrainingConfig.model_fields)
        raise ConfigError(f"{source}: unknown section(s) {unknown}: an experiment overrides only {known}")
    merged = parse_training(deep_merge(base.model_dump(), overrides), source=f"{source} (merged onto the base)")
    return ExperimentConfig(experiment_id, merged, copy.deepcopy(dict(overrides)),
                            tuple(key_changes(base, merged)), path, base_dir, notes)


def experiment_file(cfg: PipelineConfig, experiment_id: str) -> Path:
    """configs/experiments/<id>.yaml (the pipeline config's experiments_dir)."""
    return cfg.resolve(cfg.experiments_dir) / f"{check_experiment_id(experiment_id)}.yaml"


def load_experiment(cfg: PipelineConfig, experiment_id: str) -> ExperimentConfig:
    """The experiment `experiment_id`: its file's overrides merged onto `cfg.training`, validated; relative paths
    in it resolve against cfg's project. ConfigError naming the file and key otherwise."""
    if cfg.training is None:
        raise ConfigError(f"{cfg.path or 'the pipeline config'}: no `training:` section to base experiments on "
                          "(add the block from tests/train/golden/base_training.yaml)")
    path = experiment_file(cfg, experiment_id)
    if not path.is_file():
        raise ConfigError(f"experiment {experiment_id!r}: {path} does not exist (one overrides file per experiment id)")
    overrides = read_yaml(path)
    notes = overrides.pop("notes", "") if isinstance(overrides, dict) else ""
    if not isinstance(notes, str | None):
        raise ConfigError(f"{path}: notes must be text")
    return experiment_from_overrides(experiment_id, cfg.training, overrides, source=str(path), path=path,
                                     base_dir=cfg.base_dir, notes=(notes or "").strip())

"""Experiments: configs/experiments/<id>.yaml (overrides of the base `training:` section, plus `notes:`),
loaded for one `experiment` partition."""

from pathlib import Path

import yaml

from mm_assets.config import PipelineConfig
from mm_assets.project import ConfigError
from mm_assets.train.config import ExperimentConfig, check_experiment_id, experiment_from_overrides, read_training_base


def experiment_path(cfg: PipelineConfig, experiment_id: str) -> Path:
    return cfg.resolve(cfg.experiments_dir) / f"{check_experiment_id(experiment_id)}.yaml"


def load_experiment_file(cfg: PipelineConfig, config_path: str | Path, experiment_id: str) -> tuple[ExperimentConfig, str]:
    """(the merged, validated experiment, its notes). `config_path` is the pipeline config holding the base."""
    path = experiment_path(cfg, experiment_id)
    if not path.is_file():
        raise ConfigError(f"experiment {experiment_id!r}: {path} does not exist (one overrides file per experiment id)")
    try:
        overrides = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(overrides, dict):
        raise ConfigError(f"{path}: an experiment file holds a mapping of overrides")
    notes = overrides.pop("notes", "") or ""
    if not isinstance(notes, str):
        raise ConfigError(f"{path}: notes must be text")
    base = read_training_base(config_path)
    exp = experiment_from_overrides(experiment_id, base, overrides, source=str(path), path=path, base_dir=cfg.base_dir)
    return exp, notes.strip()


def list_experiments(cfg: PipelineConfig) -> list[str]:
    folder = cfg.resolve(cfg.experiments_dir)
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []

"""Typed models of configs/pipeline.yaml, the single source of truth (DESIGN.md §4).

Every model forbids unknown keys, so a typo fails with its key path instead of silently taking a default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mm_assets.monitor.config import MonitoringConfig
from mm_assets.project import DEFAULT_CONFIG, PROJECT_ROOT, ConfigError, type_hint  # noqa: F401 (re-exported)
from mm_assets.tokens.config import TokenizersConfig
from mm_assets.train.config import TrainingConfig

SOURCE_NAME = re.compile(r"^[a-z][a-z0-9]{0,31}$")


class _Section(BaseModel):
    # strict: no coercion, a quoted "2" or YAML's string "1e-3" is an error (ints still pass as floats)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SourcesConfig(_Section):
    manifest_dir: str = "sources"
    names: list[str] = Field(default_factory=lambda: ["youtube"], min_length=1)

    @field_validator("names")
    @classmethod
    def _names_are_ids(cls, names: list[str]) -> list[str]:
        for name in names:
            if not SOURCE_NAME.match(name):
                raise ValueError(f"source name {name!r} must match {SOURCE_NAME.pattern} (it prefixes unique_id)")
        if len(set(names)) != len(names):
            raise ValueError(f"source names repeat: {names}")
        return names


class StorageConfig(_Section):
    root: str = "data"

    @field_validator("root")
    @classmethod
    def _local_or_s3(cls, root: str) -> str:
        if "://" in root and not root.startswith("s3://"):
            raise ValueError(f"storage root {root!r}: use a local folder or s3://bucket/prefix")
        return root


class CrawlConfig(_Section):
    workers: Annotated[int, Field(ge=1, le=64)] = 2
    subtitle_languages: list[str] = Field(default_factory=lambda: ["en"])
    official_subtitles: bool = True
    automatic_subtitles: bool = True
    audio_format: str = "wav"
    thumbnails: bool = True  # --write-thumbnail: the page's poster/thumbnail becomes the item's image
    audio_sample_rate_hz: Annotated[int, Field(ge=8000, le=192000)] = 24000
    audio_channels: Annotated[int, Field(ge=1, le=2)] = 1
    max_video_height: Annotated[int, Field(ge=144, le=4320)] = 720
    item_timeout_s: Annotated[float, Field(gt=0)] = 600.0
    socket_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    retries: Annotated[int, Field(ge=0, le=20)] = 2

    @field_validator("audio_format")
    @classmethod
    def _lossless(cls, fmt: str) -> str:
        if fmt not in {"wav", "flac"}:
            raise ValueError(f"audio_format {fmt!r}: use 'wav' or 'flac' (lossless, read back by soundfile)")
        return fmt

    @property
    def format_selector(self) -> str:
        """yt-dlp format: the reference's 720p cap, with `<=?` so an unknown height is not an error."""
        h = self.max_video_height
        return f"bestvideo[height<=?{h}]+bestaudio/best[height<=?{h}]/best"


class MetadataConfig(_Section):
    pii_detection_method: str = "none"
    quarantine_max_fraction: Annotated[float, Field(ge=0, le=1)] = 0.2


class ShardsConfig(_Section):
    """How items become Megatron documents, and the bounds the shard checks enforce (reference §B.9)."""

    order: list[str] = Field(default_factory=lambda: ["text", "audio", "image", "video"])
    flatten: str = "frame_major"  # RVQ levels interleaved per frame: t0q0 t0q1 ... t1q0 ...
    special_token_ratio_max: Annotated[float, Field(ge=0, le=1)] = 0.2
    min_document_tokens: Annotated[int, Field(ge=2)] = 3  # at least one token, or a marker pair, plus EOD
    max_document_tokens: Annotated[int, Field(ge=2)] = 10_000_000

    @model_validator(mode="after")
    def _consistent(self) -> "ShardsConfig":
        known = {"text", "audio", "image", "video"}
        if set(self.order) - known or len(set(self.order)) != len(self.order):
            raise ValueError(f"order {self.order}: list each of {sorted(known)} at most once")
        if self.flatten not in ("frame_major", "level_major"):
            raise ValueError(f"flatten {self.flatten!r}: use frame_major or level_major")
        if self.min_document_tokens > self.max_document_tokens:
            raise ValueError(f"min_document_tokens {self.min_document_tokens} > max_document_tokens {self.max_document_tokens}")
        return self


class ComputeConfig(_Section):
    """Where training jobs run: a local subprocess (the embedded default) or a Slurm cluster."""

    backend: str = "local"
    slurm_conf: str | None = None  # SLURM_CONF for the Slurm commands (e.g. the local dev cluster's)
    poll_interval_s: Annotated[float, Field(gt=0)] = 5.0
    log_tail_lines: Annotated[int, Field(ge=1, le=10000)] = 50

    @field_validator("backend")
    @classmethod
    def _backend(cls, backend: str) -> str:
        if backend not in ("local", "slurm"):
            raise ValueError(f"backend {backend!r}: use local (a subprocess) or slurm (sbatch)")
        return backend


class PipelineConfig(_Section):
    schema_version: int = 1
    sources: SourcesConfig = SourcesConfig()
    storage: StorageConfig = StorageConfig()
    crawl: CrawlConfig = CrawlConfig()
    metadata: MetadataConfig = MetadataConfig()
    tokenizers: TokenizersConfig = TokenizersConfig()
    shards: ShardsConfig = ShardsConfig()
    compute: ComputeConfig = ComputeConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    training: TrainingConfig | None = None  # the base every configs/experiments/<id>.yaml overrides
    experiments_dir: str = "configs/experiments"
    # Where the file was read from: relative paths in it are relative to its project root.
    base_dir: Path = Field(default=PROJECT_ROOT, exclude=True)

    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def manifest_dir(self) -> Path:
        return self.resolve(self.sources.manifest_dir)

    @property
    def storage_root(self) -> Path:
        if self.storage.root.startswith("s3://"):
            raise ConfigError(f"storage.root {self.storage.root!r}: S3 storage is not wired into the crawl yet")
        return self.resolve(self.storage.root)


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "<top level>"
        got = "" if e["type"] == "missing" else f" (got {e.get('input')!r})"
        hint = type_hint(e)
        lines.append(f"  {where}: {e['msg']}{got}" + (f"; {hint}" if hint else ""))
    return "\n".join(lines)


def parse_config(data: dict[str, Any], *, source: str = "<dict>", base_dir: Path | None = None) -> PipelineConfig:
    """Validate a config mapping; errors name every bad key path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    if "base_dir" in data:
        raise ConfigError(f"{source}: base_dir: unknown key (it is set from the file's location)")
    try:
        return PipelineConfig(**data, base_dir=base_dir or PROJECT_ROOT)
    except ValidationError as err:
        raise ConfigError(f"{source}: invalid configuration\n{_format_errors(err)}") from None


def load_config(path: str | Path = DEFAULT_CONFIG) -> PipelineConfig:
    """Read and validate a pipeline config; relative paths in it resolve against its project root."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (copy configs/pipeline.yaml and edit it)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    base = path.parent.parent if path.parent.name == "configs" else path.parent
    return parse_config(data, source=str(path), base_dir=base)

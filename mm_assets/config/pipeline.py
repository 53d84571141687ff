"""Typed models of configs/pipeline.yaml, the single source of truth (DESIGN.md §4), loaded once per process.

Every model forbids unknown keys, so a typo fails with its key path instead of silently taking a default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from mm_assets.config.base import DEFAULT_CONFIG, ENV_NAME, PROJECT_ROOT, ConfigError, Section, format_errors, read_yaml
from mm_assets.eval.config import EvalConfig
from mm_assets.monitor.config import MonitoringConfig
from mm_assets.release.config import ReleasePolicy
from mm_assets.storage.s3_access import is_s3_url, split_s3_url
from mm_assets.tokens.config import TokenizersConfig
from mm_assets.train.launch.config import TrainingConfig

OBJECT_STORAGE_SCRATCH = ".scratch"  # storage.scratch of an s3:// root when none is set (gitignored)
SOURCE_NAME = re.compile(r"^[a-z][a-z0-9]{0,31}$")
# A name that says it holds a secret: such a variable reaches jobs only through compute.credentials_file.
CREDENTIAL_NAME = re.compile(r"SECRET|TOKEN|PASSW|CREDENTIAL|_KEY", re.IGNORECASE)


def credential_like(name: str) -> bool:
    return bool(CREDENTIAL_NAME.search(name))


def existing_credentials_file(path: str | Path | None) -> Path | None:
    """compute.credentials_file, when set; ConfigError naming the key when the file is missing."""
    if path is None:
        return None
    if not Path(path).is_file():
        raise ConfigError(f"compute.credentials_file: {path} does not exist (an AWS shared-credentials file)")
    return Path(path)


class SourcesConfig(Section):
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


class StorageConfig(Section):
    root: str = "data"
    # Local folder for staging, caches and downloads; None: <root>/.staging (a publish is then one rename), or
    # .scratch/ in the project for an s3:// root.
    scratch: str | None = None
    # S3 only. The endpoint of an S3-compatible server (None: AWS_ENDPOINT_URL, else AWS S3) and an AWS
    # shared-credentials file whose [default] profile holds the keys (None: AWS_ACCESS_KEY_ID /
    # AWS_SECRET_ACCESS_KEY from the environment). Never put keys in this file.
    endpoint_url: str | None = None
    credentials_file: str | None = None

    @field_validator("root")
    @classmethod
    def _local_or_s3(cls, root: str) -> str:
        if "://" in root and not is_s3_url(root):
            raise ValueError(f"storage root {root!r}: use a local folder or s3://bucket/prefix")
        if is_s3_url(root):
            split_s3_url(root)
        return root

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, url: str | None) -> str | None:
        if url is not None and not re.match(r"^https?://[^/@\s]+(/\S*)?$", url):
            # Not echoed: a URL with user:secret@ would put the secret in the message.
            raise PydanticCustomError("endpoint_url", "not http(s)://host[:port] (keys never go in the URL: use "
                                      "storage.credentials_file or the environment)", {"hide_input": True})
        return url

    @property
    def on_object_storage(self) -> bool:
        return is_s3_url(self.root)


class CrawlConfig(Section):
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
    # Partial downloads of unfinished items are kept for the next run to resume, within these bounds.
    partial_max_age_hours: Annotated[float, Field(gt=0)] = 168.0
    partial_max_gb: Annotated[float, Field(ge=0)] = 50.0

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


SPDX_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]*$")  # MIT, CC-BY-4.0, GPL-2.0+, LicenseRef-internal
POLICY_HELP = "use require, unknown or {default: <SPDX id or URL>}"


class LicensePolicy(Section):
    """What the metadata ETL does with an item of a source when neither its page nor yt-dlp states a license.

    In YAML: `require` (the item goes to quarantine), `unknown` (kept with a null license; the release stage
    refuses unknown licenses) or `{default: <SPDX id or URL>}` (filled in; the row records `config_default`).
    """

    kind: Literal["require", "unknown", "default"]
    license: str | None = None  # the default license (kind == "default" only)

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, value: Any) -> Any:
        if isinstance(value, str) and value in ("require", "unknown"):
            return {"kind": value}
        if isinstance(value, dict) and set(value) == {"default"}:
            return {"kind": "default", "license": _license_id(value["default"])}
        if isinstance(value, cls) or (isinstance(value, dict) and "kind" in value):
            return value  # already parsed (a model, or its model_dump)
        if isinstance(value, dict):
            raise ValueError(f"unknown key {', '.join(sorted(map(str, value)))}: {POLICY_HELP}")
        raise ValueError(f"{value!r} is not a license policy: {POLICY_HELP}")

    @model_validator(mode="after")
    def _license_iff_default(self) -> "LicensePolicy":
        if (self.kind == "default") != (self.license is not None):
            raise ValueError(f"{POLICY_HELP} (kind {self.kind!r} with license {self.license!r})")
        return self

    def __str__(self) -> str:
        return f"default {self.license}" if self.kind == "default" else self.kind


def _license_id(value: Any) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if SPDX_ID.match(text) or re.match(r"^https?://\S+$", text):
        return text
    raise ValueError(f"default {value!r} is neither an SPDX license id (CC-BY-4.0, MIT) nor an http(s) URL")


UNKNOWN_LICENSE = LicensePolicy(kind="unknown")


class MetadataConfig(Section):
    pii_detection_method: str = "none"
    quarantine_max_fraction: Annotated[float, Field(ge=0, le=1)] = 0.2
    # source name -> LicensePolicy; a source not listed is `unknown` (kept, license null, never released)
    license_policy: dict[str, LicensePolicy] = Field(default_factory=dict)

    def license_policy_for(self, source: str) -> LicensePolicy:
        return self.license_policy.get(source, UNKNOWN_LICENSE)


class ShardsConfig(Section):
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


class ComputeConfig(Section):
    """Where training jobs run: a local subprocess (the embedded default) or a Slurm cluster."""

    backend: str = "local"
    slurm_conf: str | None = None  # SLURM_CONF for the Slurm commands (e.g. the local dev cluster's)
    poll_interval_s: Annotated[float, Field(gt=0)] = 5.0
    log_tail_lines: Annotated[int, Field(ge=1, le=10000)] = 50
    # The only variables a job takes from the Dagster process's environment (resources/job_env.py).
    job_env: list[str] = Field(default_factory=lambda: ["HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR"])
    # Credentials for jobs: an AWS shared-credentials file; jobs get its path (AWS_SHARED_CREDENTIALS_FILE).
    credentials_file: str | None = None

    @field_validator("backend")
    @classmethod
    def _backend(cls, backend: str) -> str:
        if backend not in ("local", "slurm"):
            raise ValueError(f"backend {backend!r}: use local (a subprocess) or slurm (sbatch)")
        return backend

    @field_validator("job_env")
    @classmethod
    def _job_env(cls, names: list[str]) -> list[str]:
        for name in names:
            if not ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not an environment variable name ({ENV_NAME.pattern})")
            if credential_like(name):
                raise ValueError(f"{name} looks like a credential: jobs never copy secrets from the Dagster "
                                 "process's environment; point compute.credentials_file at a credentials file")
        return names


class PipelineConfig(Section):
    schema_version: int = 2
    sources: SourcesConfig = SourcesConfig()
    storage: StorageConfig = StorageConfig()
    crawl: CrawlConfig = CrawlConfig()
    metadata: MetadataConfig = MetadataConfig()
    tokenizers: TokenizersConfig = TokenizersConfig()
    shards: ShardsConfig = ShardsConfig()
    compute: ComputeConfig = ComputeConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    training: TrainingConfig | None = None  # the base every configs/experiments/<id>.yaml overrides
    eval: EvalConfig = EvalConfig()
    experiments_dir: str = "configs/experiments"
    release: ReleasePolicy = ReleasePolicy()  # release bundles: configs/releases/<version>.yaml, license policy
    # Where the file was read from: relative paths in it are relative to its project root.
    base_dir: Path = Field(default=PROJECT_ROOT, exclude=True)
    path: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _policies_name_sources(self) -> "PipelineConfig":
        unknown = sorted(set(self.metadata.license_policy) - set(self.sources.names))
        if unknown:
            raise ValueError(f"metadata.license_policy.{unknown[0]}: {unknown[0]!r} is not in sources.names "
                             f"{self.sources.names}; add the source there or remove its policy")
        return self

    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def manifest_dir(self) -> Path:
        return self.resolve(self.sources.manifest_dir)

    @property
    def credentials_path(self) -> Path | None:
        """compute.credentials_file resolved (not checked: a job checks it when it is built)."""
        return None if self.compute.credentials_file is None else self.resolve(self.compute.credentials_file)

    @property
    def credentials_file(self) -> Path | None:
        """compute.credentials_file resolved; ConfigError naming the key when the file is missing."""
        return existing_credentials_file(self.credentials_path)

    @property
    def storage_root(self) -> str:
        """storage.root: an absolute local folder, or the s3:// URL as written."""
        root = self.storage.root
        return root if is_s3_url(root) else str(self.resolve(root))

    @property
    def storage_scratch(self) -> str | None:
        if self.storage.scratch is None:
            return str(self.resolve(OBJECT_STORAGE_SCRATCH)) if self.storage.on_object_storage else None
        return str(self.resolve(self.storage.scratch))

    @property
    def storage_credentials_file(self) -> str | None:
        """storage.credentials_file resolved (checked when the store first connects)."""
        path = self.storage.credentials_file
        return None if path is None else str(self.resolve(path))


def parse_config(data: dict[str, Any], *, source: str = "<dict>", base_dir: Path | None = None,
                 path: Path | None = None) -> PipelineConfig:
    """Validate a config mapping; errors name every bad key path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    for key in ("base_dir", "path"):
        if key in data:
            raise ConfigError(f"{source}: {key}: unknown key (it is set from the file's location)")
    try:
        return PipelineConfig(**data, base_dir=base_dir or PROJECT_ROOT, path=path)
    except ValidationError as err:
        lines = "\n".join(f"  {line}" for line in format_errors(err))
        raise ConfigError(f"{source}: invalid configuration\n{lines}") from None


_LOADED: dict[Path, tuple[tuple[int, int], PipelineConfig]] = {}


def load_config(path: str | Path = DEFAULT_CONFIG) -> PipelineConfig:
    """Read and validate a pipeline config; relative paths in it resolve against its project root.

    Loaded once per process: the resources, the CLI and the experiments share one object (read again only
    when the file changes)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (copy configs/pipeline.yaml and edit it)")
    stat = path.stat()
    version = (stat.st_mtime_ns, stat.st_size)
    if path in _LOADED and _LOADED[path][0] == version:
        return _LOADED[path][1]
    base = path.parent.parent if path.parent.name == "configs" else path.parent
    cfg = parse_config(read_yaml(path) or {}, source=str(path), base_dir=base, path=path)
    _LOADED[path] = (version, cfg)
    return cfg

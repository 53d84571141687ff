"""Release configs: the pipeline's release policy (`release:` in configs/pipeline.yaml) and one file per
release, configs/releases/<version>.yaml, whose stem is the `release_bundle` partition key.

A release names the experiment and checkpoint iteration it ships, the model's name, its license (an SPDX id
and the file that becomes the bundle's LICENSE) and notes. `internal: true` allows tokenizers with random
weights (the cards then say so in their first line); anything else must be pretrained. Which licenses a model
may carry given its training data is the policy's `license_compatibility`, a table a person sets: data whose
license is missing or not listed blocks every release.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field, ValidationError, field_validator

from mm_assets.config.base import ConfigError, Section, format_errors, no_control, read_yaml

if TYPE_CHECKING:  # the pipeline config holds the release policy: no import at run time
    from mm_assets.config.pipeline import PipelineConfig

RELEASE_VERSION = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
LICENSE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]*$")  # SPDX ids and LicenseRef-<name>
ANY_LICENSE = "*"
# creativecommons.org deeds as pages state them -> their SPDX ids (https://spdx.org/licenses/ names them so).
_CC_URL = re.compile(r"^https?://(?:www\.)?creativecommons\.org/licenses/(?P<kind>[a-z-]+)/(?P<ver>\d\.\d)/?"
                     r"(?:legalcode(?:\.[a-z]+)?)?$")
_CC0_URL = re.compile(r"^https?://(?:www\.)?creativecommons\.org/publicdomain/zero/1\.0/?(?:legalcode)?$")


def license_id(stated: str | None) -> str | None:
    """The SPDX id of a license as an item states it: a Creative Commons URL becomes its id
    (https://creativecommons.org/licenses/by/4.0/ -> CC-BY-4.0); anything else is kept as written."""
    if stated is None:
        return None
    text = stated.strip()
    if m := _CC_URL.match(text):
        return f"CC-{m['kind'].upper()}-{m['ver']}"
    if _CC0_URL.match(text):
        return "CC0-1.0"
    return text


def _license_name(value: str, what: str = "") -> str:
    if value != ANY_LICENSE and not LICENSE_ID.match(value):
        raise ValueError(f"{what}{value!r} is not an SPDX license id (CC-BY-4.0, Apache-2.0, LicenseRef-<name>)")
    return value


class ReleasePolicy(Section):
    """`release:` of the pipeline config: where release files live and which licenses may be released."""

    releases_dir: str = "configs/releases"
    # Training-data license (SPDX id) -> the release licenses it permits ("*": any). Data licenses are read
    # with license_id(); one not listed here, or none, blocks the release.
    license_compatibility: dict[str, list[str]] = Field(default_factory=dict)
    inference_timeout_s: Annotated[float, Field(gt=0)] = 300.0  # the inference check's bound on the script

    @field_validator("license_compatibility")
    @classmethod
    def _spdx_ids(cls, table: dict[str, list[str]]) -> dict[str, list[str]]:
        for data, allowed in table.items():
            _license_name(data, "data license ")
            for name in allowed:
                _license_name(name, f"release license allowed for {data}: ")
        return table

    def allows(self, data_license: str, release_license: str) -> bool:
        allowed = self.license_compatibility.get(data_license, [])
        return ANY_LICENSE in allowed or release_license in allowed


class LicenseSection(Section):
    id: str  # the SPDX id the model is released under (LicenseRef-<name> for a license of your own)
    file: str  # its text, relative to the release file's folder: copied into the bundle as LICENSE

    @field_validator("id")
    @classmethod
    def _spdx(cls, value: str) -> str:
        if value == ANY_LICENSE:
            raise ValueError("'*' is a policy wildcard, not a license")
        return _license_name(value)


class InferenceSection(Section):
    """What the bundle's inference script is checked with: a prompt, and how many tokens to generate."""

    prompt: str = "Clip 1, first line."
    max_new_tokens: Annotated[int, Field(ge=1, le=4096)] = 8


class ReviewSection(Section):
    """What a person states about a release; the cards show each field, or mark it as left for review.
    A release that is not `internal` is blocked until every field is filled."""

    intended_use: str | None = None
    out_of_scope_use: str | None = None
    limitations: str | None = None  # beyond the limits the cards derive from the data
    ethical_considerations: str | None = None
    data_collection_notes: str | None = None  # consent, terms of the sources (data card)
    reviewed_by: str | None = None  # who reviewed the cards, and when

    MODEL_CARD: ClassVar[tuple[str, ...]] = ("intended_use", "out_of_scope_use", "limitations",
                                             "ethical_considerations", "reviewed_by")
    DATA_CARD: ClassVar[tuple[str, ...]] = ("data_collection_notes", "reviewed_by")

    def missing(self, fields: tuple[str, ...]) -> list[str]:
        """The key paths of `fields` still empty."""
        return [f"review.{name}" for name in fields if not (getattr(self, name) or "").strip()]


class ReleaseConfig(Section):
    """configs/releases/<version>.yaml."""

    model_name: Annotated[str, Field(min_length=1, max_length=128)]
    experiment: str
    checkpoint_iteration: Annotated[int, Field(ge=0)]
    license: LicenseSection
    internal: bool = False  # an internal release may ship random tokenizer weights, labelled as such
    # include: copy each tokenizer's weights file into the bundle; reference: record its sha256 only
    tokenizer_weights: Literal["include", "reference"] = "include"
    inference: InferenceSection = InferenceSection()
    review: ReviewSection = ReviewSection()
    notes: str = ""
    version: str = Field(default="", exclude=True)  # the file's stem, set by load_release
    path: Path | None = Field(default=None, exclude=True)

    @property
    def license_file(self) -> Path:
        """license.file, resolved against the release file's folder."""
        file = Path(self.license.file)
        return file if file.is_absolute() or self.path is None else self.path.parent / file

    @field_validator("model_name")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return no_control(value, "model_name")


def check_version(version: str) -> str:
    if not isinstance(version, str) or not RELEASE_VERSION.match(version):
        raise ConfigError(f"release version {version!r} must match {RELEASE_VERSION.pattern} "
                          "(it names a partition, a file configs/releases/<version>.yaml and a storage folder)")
    return version


def releases_dir(cfg: PipelineConfig) -> Path:
    return cfg.resolve(cfg.release.releases_dir)


def release_file(cfg: PipelineConfig, version: str) -> Path:
    return releases_dir(cfg) / f"{check_version(version)}.yaml"


def load_release(cfg: PipelineConfig, version: str) -> ReleaseConfig:
    """configs/releases/<version>.yaml, validated; ConfigError naming the file and every bad key path."""
    from mm_assets.train.launch.experiment import check_experiment_id

    path = release_file(cfg, version)
    if not path.is_file():
        raise ConfigError(f"release {version!r}: {path} does not exist (one file per release version in "
                          f"{cfg.release.releases_dir}/)")
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a release file holds a mapping, got {type(data).__name__}")
    for key in ("version", "path"):
        if key in data:
            raise ConfigError(f"{path}: {key}: unknown key (it is set from the file's name and location)")
    try:
        release = ReleaseConfig(**data, version=version, path=path)
        check_experiment_id(release.experiment)
    except ValidationError as err:
        lines = "\n".join(f"  {line}" for line in format_errors(err))
        raise ConfigError(f"{path}: invalid release\n{lines}") from None
    except ConfigError as err:
        raise ConfigError(f"{path}: experiment: {err}") from None
    if not release.license_file.is_file():
        raise ConfigError(f"{path}: license.file: {release.license_file} does not exist (the license text the "
                          "bundle ships as LICENSE, relative to the release file's folder)")
    return release


def release_versions(cfg: PipelineConfig) -> list[str]:
    """The versions configs/releases/ holds (file stems), each file validated: ConfigError on the first bad one."""
    folder = releases_dir(cfg)
    versions = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
    for version in versions:
        load_release(cfg, version)
    return versions

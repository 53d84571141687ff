"""Eval configuration: the `eval:` section of configs/pipeline.yaml and the eval task files (reference §B.6).

A task file has the reference's shape (`task_name`, `eval_class`, `dataset_config`, `metric_config`,
`prompt_template`). Like every config model (mm_assets.config.base.Section) these are strict and forbid
unknown keys; an unknown eval class or metric, a metric the class cannot compute, or a prompt template that
does not fit the class is refused with its key path.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from mm_assets.config.base import ConfigError, Section, format_errors, read_yaml

TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # names a folder, a shard and a report row
VIDEO_PLACEHOLDER = "video_placeholder"
# The video markers of the shard assembler (mm_assets.shards.documents.DEFAULT_MARKERS; a test keeps them equal),
# spelled here so that loading the config does not import numpy (`mm query` starts fast).
VIDEO_OPEN, VIDEO_CLOSE = "<vid>", "</vid>"
VIDEO_SLOT = f"{VIDEO_OPEN}{{{VIDEO_PLACEHOLDER}}}{VIDEO_CLOSE}"  # <vid>{video_placeholder}</vid>

MetricName = Literal["ExactMatch", "BLEU", "Accuracy", "Perplexity"]
EvalClassName = Literal["TextQuestionAnswering", "Captioning", "VideoQuestionAnswering", "TextPerplexity"]


@dataclass(frozen=True)
class EvalClass:
    """What an eval class reads from a sample and how it is scored."""

    prompt_field: str  # the sample field its template must use
    references: str | None  # the sample field holding the reference answers (None: perplexity of the text)
    video: Literal["no", "optional", "required"]
    metrics: frozenset[str]

    @property
    def generates(self) -> bool:
        return self.references is not None


GENERATION_METRICS = frozenset({"ExactMatch", "BLEU", "Accuracy"})
EVAL_CLASSES: dict[str, EvalClass] = {
    "TextQuestionAnswering": EvalClass("question", "answers", "no", GENERATION_METRICS),
    "Captioning": EvalClass("", "captions", "optional", GENERATION_METRICS),
    "VideoQuestionAnswering": EvalClass("question", "answers", "required", GENERATION_METRICS),
    "TextPerplexity": EvalClass("text", None, "no", frozenset({"Perplexity"})),
}


class DatasetConfig(Section):
    """Where the samples are: an absolute local path, a key relative to the storage root (read through the
    store: local or on object storage), or an s3:// URL under the storage root."""

    path: str
    video_root: str | None = None  # folder the samples' `video` paths are relative to (same rules as path)

    @field_validator("path", "video_root")
    @classmethod
    def _location(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value or value != value.strip() or any(ord(c) < 32 for c in value):
            raise ValueError(f"{value!r}: empty, surrounding whitespace or a control character")
        if "://" in value and not value.startswith("s3://"):
            raise ValueError(f"{value!r}: use a local path, a path under the storage root or s3://bucket/key")
        return value


class MetricSpec(Section):
    name: MetricName


class EvalTask(Section):
    """One eval task file (reference §B.6 `eval_task.yaml`)."""

    task_name: str
    eval_class: EvalClassName
    dataset_config: DatasetConfig
    metric_config: list[MetricSpec] = Field(min_length=1)
    prompt_template: str

    @field_validator("task_name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not TASK_NAME.match(name):
            raise ValueError(f"task_name {name!r} must match {TASK_NAME.pattern} (it names folders and report rows)")
        return name

    @field_validator("prompt_template")
    @classmethod
    def _fields_are_names(cls, template: str) -> str:
        for field in template_fields(template):
            if not field.isidentifier():
                raise ValueError(f"prompt_template field {{{field}}}: use plain names like {{question}}")
        return template

    @model_validator(mode="after")
    def _fits_class(self) -> EvalTask:
        kind = EVAL_CLASSES[self.eval_class]
        problems = [f"metric_config: {m.name} is not computed by {self.eval_class} (use {sorted(kind.metrics)})"
                    for m in self.metric_config if m.name not in kind.metrics]
        names = [m.name for m in self.metric_config]
        if len(set(names)) != len(names):
            problems.append(f"metric_config lists a metric twice: {names}")
        fields = template_fields(self.prompt_template)
        if kind.prompt_field and kind.prompt_field not in fields:
            problems.append(f"prompt_template: {self.eval_class} needs {{{kind.prompt_field}}} in it")
        problems += _video_problems(self, kind, fields)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def kind(self) -> EvalClass:
        return EVAL_CLASSES[self.eval_class]

    @property
    def uses_video(self) -> bool:
        return VIDEO_PLACEHOLDER in template_fields(self.prompt_template)

    @property
    def metrics(self) -> list[str]:
        return [m.name for m in self.metric_config]


def _video_problems(task: EvalTask, kind: EvalClass, fields: list[str]) -> list[str]:
    count = fields.count(VIDEO_PLACEHOLDER)
    if kind.video == "no" and count:
        return [f"prompt_template: {task.eval_class} has no video: remove {{{VIDEO_PLACEHOLDER}}}"]
    if kind.video == "required" and count != 1:
        return [f"prompt_template: {task.eval_class} needs {VIDEO_SLOT} exactly once"]
    if count > 1 or (count and task.prompt_template.count(VIDEO_SLOT) != 1):
        return [f"prompt_template: the video goes inside the vocabulary layout's markers, once: {VIDEO_SLOT}"]
    if count and task.dataset_config.video_root is None:
        return ["dataset_config.video_root: the template has a video placeholder, so samples name videos under it"]
    return []


def template_fields(template: str) -> list[str]:
    """The `{field}` names of a prompt template, in order; ValueError on unbalanced braces or format specs."""
    fields = []
    for _, field, spec, conversion in string.Formatter().parse(template):
        if field is None:
            continue
        if spec or conversion:
            raise ValueError(f"prompt_template field {{{field}}}: no format spec or conversion (got {spec or conversion!r})")
        fields.append(field)
    return fields


class CanaryConfig(Section):
    """The data-leakage canary (reference §B.6): N samples per eval set, drawn with a recorded seed."""

    samples_per_set: Annotated[int, Field(ge=1, le=100_000)] = 20
    seed: Annotated[int, Field(ge=0)] = 1234


class LeakageConfig(Section):
    """The reference's rule: leakage when canary accuracy > canary_accuracy_min and > standard + margin_min."""

    canary_accuracy_min: Annotated[float, Field(ge=0, le=1)] = 0.98
    margin_min: Annotated[float, Field(ge=0, le=1)] = 0.3


class DecontaminationConfig(Section):
    """n-gram overlap between eval sets and the training shards' text (what the reference leaves out)."""

    ngram: Annotated[int, Field(ge=1, le=64)] = 13
    max_overlap_share: Annotated[float, Field(ge=0, le=1)] = 0.05  # the check warns above this share of a set


class EvalConfig(Section):
    """configs/pipeline.yaml `eval:`: which task files to run, generation length, canary, leakage, decontamination."""

    tasks_dir: str = "configs/eval"
    tasks: list[str] = Field(default_factory=list)  # file stems under tasks_dir
    max_new_tokens: Annotated[int, Field(ge=1, le=4096)] = 16
    device: Literal["auto", "cpu", "cuda"] = "auto"
    canary: CanaryConfig = CanaryConfig()
    leakage: LeakageConfig = LeakageConfig()
    decontamination: DecontaminationConfig = DecontaminationConfig()

    @field_validator("tasks")
    @classmethod
    def _task_files(cls, tasks: list[str]) -> list[str]:
        for name in tasks:
            if not TASK_NAME.match(name):
                raise ValueError(f"task file {name!r} must be a file stem matching {TASK_NAME.pattern}")
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks repeat: {tasks}")
        return tasks


def parse_task(data: Any, *, source: str = "<eval task>") -> EvalTask:
    """Validate one task mapping; the error names the file and every bad key path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: an eval task is a mapping, got {type(data).__name__}")
    try:
        return EvalTask(**data)
    except ValidationError as err:
        lines = "\n".join(f"  {line}" for line in format_errors(err))
        raise ConfigError(f"{source}: invalid eval task\n{lines}") from None


def load_task(path: str | Path) -> EvalTask:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"eval task file {path} does not exist (one YAML per task under eval.tasks_dir)")
    return parse_task(read_yaml(path), source=str(path))


def load_tasks(tasks_dir: Path, names: list[str]) -> list[EvalTask]:
    """The configured tasks, in order; task names must be unique (they name report rows and folders)."""
    tasks = [load_task(Path(tasks_dir) / f"{name}.yaml") for name in names]
    seen: dict[str, str] = {}
    for name, task in zip(names, tasks):
        if task.task_name in seen:
            raise ConfigError(f"eval tasks {seen[task.task_name]} and {name} both have task_name {task.task_name!r}")
        seen[task.task_name] = name
    return tasks

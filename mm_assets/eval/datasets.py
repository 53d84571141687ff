"""Eval datasets: samples from a JSON Lines file (or one JSON list, as the reference's `qa_test.json`).

Every sample has an `id`; its other fields depend on the eval class: `question` + `answers` (question answering),
`captions` (captioning), `text` (perplexity), a `video` path relative to `dataset_config.video_root` when the
template has a video placeholder, and any further string fields the template names. One bad sample fails the
set with its line number: an eval set is small and curated, and silently skipping items would change the score.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mm_assets.eval.config import VIDEO_PLACEHOLDER, EvalTask, template_fields
from mm_assets.storage.paths import UnsafePathError
from mm_assets.storage.store import Storage


class EvalDataError(ValueError):
    """A dataset that cannot be read; the message names the file, the line and the field."""


@dataclass(frozen=True)
class Sample:
    id: str
    fields: dict[str, str]  # what the prompt template is filled with
    references: tuple[str, ...]  # reference answers or captions; () for perplexity
    video: Path | None = None


def resolve_location(location: str, storage: Storage, *, folder: bool = False) -> tuple[str, Path]:
    """(where it is, for people and records; a local path to read) of a dataset file or video folder: an
    absolute path is local, a relative one is a key in storage, an s3:// URL must lie under the storage root
    (both read through the store, which fetches a local copy when the root is on object storage)."""
    if Path(location).is_absolute():
        return location, Path(location)
    try:
        key = storage.store.key_of(location) if location.startswith("s3://") else location
        local = storage.store.local_dir(key) if folder else storage.store.local_path(key)
    except UnsafePathError as err:
        raise EvalDataError(f"dataset_config {location!r}: {err}; give an absolute local path, a path relative "
                            "to the storage root, or an s3:// URL under it") from None
    except FileNotFoundError:
        raise EvalDataError(f"eval dataset {storage.store.url(key)} does not exist (dataset_config)") from None
    return storage.store.url(key), local


def _records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, decoded record): JSON Lines, or a single JSON list (numbered by position)."""
    if not path.is_file():
        raise EvalDataError(f"eval dataset {path} does not exist (dataset_config.path)")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise EvalDataError(f"{path}: not valid JSON: {err}") from None
        if not isinstance(data, list):
            raise EvalDataError(f"{path}: a .json dataset is one list of samples")
        yield from enumerate(data, start=1)
        return
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as err:
                raise EvalDataError(f"{path} line {n}: not valid JSON: {err}") from None


def _strings(value: Any, where: str) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v.strip() for v in values):
        raise EvalDataError(f"{where}: give a non-empty string or a list of them, got {value!r}")
    return tuple(values)


def parse_sample(record: Any, task: EvalTask, where: str, video_root: Path | None) -> Sample:
    if not isinstance(record, dict):
        raise EvalDataError(f"{where}: a sample is a JSON object, got {type(record).__name__}")
    sample_id = record.get("id")
    if not isinstance(sample_id, str) or not sample_id.strip():
        raise EvalDataError(f"{where}: every sample needs a non-empty string `id`")
    kind = task.kind
    references = _strings(record.get(kind.references), f"{where} ({sample_id}): {kind.references}") \
        if kind.references else ()
    fields = {}
    for name in template_fields(task.prompt_template):
        if name == VIDEO_PLACEHOLDER:
            continue
        value = record.get(name)
        if not isinstance(value, str):
            raise EvalDataError(f"{where} ({sample_id}): prompt_template uses {{{name}}}: give it as a string")
        fields[name] = value
    video = None
    if task.uses_video:
        rel = record.get("video")
        if not isinstance(rel, str) or not rel or Path(rel).is_absolute():
            raise EvalDataError(f"{where} ({sample_id}): `video` must be a path relative to dataset_config.video_root")
        video = _under(video_root, rel, f"{where} ({sample_id}): video")
    return Sample(sample_id, fields, references, video)


def _under(root: Path | None, relative: str, where: str) -> Path:
    assert root is not None  # the task config requires video_root with a video placeholder
    path = (root / relative).resolve()
    if root.resolve() not in path.parents:
        raise EvalDataError(f"{where} {relative!r} leaves dataset_config.video_root {root}")
    return path


def read_samples(task: EvalTask, storage: Storage) -> tuple[str, Path, list[Sample]]:
    """(where the dataset is, its local file, its samples in file order); ids must be unique."""
    cfg = task.dataset_config
    where, path = resolve_location(cfg.path, storage)
    video_root = resolve_location(cfg.video_root, storage, folder=True)[1] if cfg.video_root else None
    samples, seen = [], {}
    for n, record in _records(path):
        sample = parse_sample(record, task, f"{where} line {n}", video_root)
        if sample.id in seen:
            raise EvalDataError(f"{where} line {n}: id {sample.id!r} repeats line {seen[sample.id]}")
        seen[sample.id] = n
        samples.append(sample)
    if not samples:
        raise EvalDataError(f"{where}: no samples")
    return where, path, samples

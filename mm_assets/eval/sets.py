"""An eval set rendered once into prompt ids: what the evaluator feeds the model and the canary injects.

`eval_sets/<task>/samples.parquet` holds one row per sample (id, prompt ids, the prompt as text, references,
the sample's own text, video path and how many video codes it contributed); `set.json` beside it records the
task, the dataset's sha256, the vocabulary layout's sha256 and the tokenizer identities, so an eval report can
prove it fed the model the same id space the checkpoint was trained on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mm_assets.eval.config import EvalTask
from mm_assets.eval.datasets import Sample
from mm_assets.eval.prompts import display_prompt, prompt_ids, render_segments
from mm_assets.shards.documents import DocumentAssembler
from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.store import Storage

SAMPLES_SCHEMA = pa.schema([
    ("sample_id", pa.string()), ("prompt_ids", pa.list_(pa.int32())), ("prompt", pa.string()),
    ("references", pa.list_(pa.string())), ("content", pa.string()), ("video", pa.string()),
    ("video_tokens", pa.int64()),
])


@dataclass(frozen=True)
class EvalSet:
    """A rendered set as the evaluator and the canary read it back."""

    manifest: dict[str, Any]
    rows: list[dict[str, Any]]

    @property
    def task(self) -> EvalTask:
        return EvalTask(**self.manifest["task"])

    @property
    def ids(self) -> list[str]:
        return [r["sample_id"] for r in self.rows]


def render_samples(task: EvalTask, samples: list[Sample], encode: Callable[[str], np.ndarray],
                   assembler: DocumentAssembler,
                   video_codes: Callable[[Path], np.ndarray] | None) -> list[dict[str, Any]]:
    """One row per sample: the filled template as unified ids (video codes inside their markers);
    `video_codes` (clip -> raw codes) is needed only when the task has a video placeholder."""
    rows = []
    for sample in samples:
        segments = render_segments(task.prompt_template, sample.fields)
        codes = video_codes(sample.video) if sample.video is not None and video_codes is not None else None
        ids = prompt_ids(segments, encode, assembler, codes)
        n_video = 0 if codes is None else int(np.asarray(codes).size)
        rows.append({"sample_id": sample.id, "prompt_ids": ids.astype(np.int32),
                     "prompt": display_prompt(segments, n_video), "references": list(sample.references),
                     "content": sample_content(sample), "video": None if sample.video is None else str(sample.video),
                     "video_tokens": n_video})
    return rows


def sample_content(sample: Sample) -> str:
    """The sample's own text (its template fields and references, not the template): what decontamination
    searches the training text for."""
    return "\n".join([*sample.fields.values(), *sample.references])


def write_eval_set(storage: Storage, task: str, rows: list[dict[str, Any]], manifest: dict[str, Any]) -> None:
    """Publish the set's folder whole: samples.parquet, then set.json (its commit on object storage)."""
    with storage.store.publish(storage.layout.eval_set(task), last=ArtifactLayout.EVAL_SET_RECORD,
                               what=f"eval set {task}") as staged:
        staged.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=SAMPLES_SCHEMA), staged / ArtifactLayout.EVAL_SET_SAMPLES)
        (staged / ArtifactLayout.EVAL_SET_RECORD).write_text(json.dumps(manifest, indent=2, sort_keys=True))


def read_eval_set(folder: Path) -> EvalSet:
    """A rendered set from a local folder (the evaluator job reads the copy its plan names)."""
    manifest_path = Path(folder) / ArtifactLayout.EVAL_SET_RECORD
    if not manifest_path.is_file():
        raise FileNotFoundError(f"no eval set at {folder}: materialize eval_sets first")
    rows = pq.read_table(Path(folder) / ArtifactLayout.EVAL_SET_SAMPLES).to_pylist()
    return EvalSet(json.loads(manifest_path.read_text()), rows)


def load_eval_set(storage: Storage, task: str) -> EvalSet:
    """A rendered set from storage; FileNotFoundError saying to materialize eval_sets when there is none."""
    if not storage.store.exists(storage.layout.eval_set_record(task)):
        raise FileNotFoundError(f"no eval set {task} at {storage.store.url(storage.layout.eval_set(task))}: "
                                "materialize eval_sets first (mm eval prepare)")
    return read_eval_set(storage.store.local_dir(storage.layout.eval_set(task)))

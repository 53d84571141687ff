"""A release bundle, built in a staging folder from the release's lineage: the checkpoint iteration as a Megatron
--load folder, the rendered launch and the configs that made it, the vocabulary layout, every tokenizer's
identity and weights (or their sha256 where weights are referenced), the eval report, the model and data cards,
LICENSE, the inference script, and manifest.json last (ArtifactLayout's releases/<version>/ names each part).

The store publishes the folder whole (resources/storage: one rename locally, the manifest uploaded last on
object storage), so a bundle is either complete or absent.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mm_assets.eval.report import read_report
from mm_assets.release.cards import ModelFacts, data_card, model_card
from mm_assets.release.evaluation import eval_files
from mm_assets.release.lineage import ReleaseLineage, TokenizerUse
from mm_assets.release.manifest import BundleManifest
from mm_assets.release.training_data import TrainingData, read_training_data
from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.store import Storage

INFERENCE_SCRIPT = Path(__file__).with_name("inference.py")  # shipped verbatim: it imports nothing of ours


@dataclass(frozen=True)
class BundleInputs:
    """What a bundle is made of beyond the lineage: the training data's facts, the model's, the eval files."""

    data: TrainingData
    facts: ModelFacts
    eval_files: Mapping[str, Path]  # file name -> local path of each eval report file
    code_version: str


def _copy(source: Path, staged: Path, name: str) -> str:
    target = staged / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return name


def _write(staged: Path, name: str, text: str) -> str:
    target = staged / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return name


def _checkpoint(staged: Path, storage: Storage, lineage: ReleaseLineage) -> dict[str, str]:
    """The released iteration as a --load folder: iter_NNNNNNN/ and a tracker naming it."""
    iteration = ArtifactLayout.checkpoint_iteration(lineage.iteration)
    folder = f"{ArtifactLayout.BUNDLE_CHECKPOINT}/{iteration}"
    shutil.copytree(storage.store.local_dir(lineage.checkpoint_key), staged / folder)
    tracker = f"{ArtifactLayout.BUNDLE_CHECKPOINT}/{ArtifactLayout.CHECKPOINT_TRACKER}"
    _write(staged, tracker, str(lineage.iteration))
    return {"checkpoint": folder, "checkpoint_tracker": tracker}


def _launch_and_configs(staged: Path, storage: Storage, lineage: ReleaseLineage) -> dict[str, str]:
    exp, layout = lineage.experiment, storage.layout
    parts = {}
    for kind, name in layout.launch_files(exp.id).items():
        source = storage.store.local_path(layout.launch_file(exp.id, kind))
        parts[f"launch_{kind}"] = _copy(source, staged, f"{ArtifactLayout.BUNDLE_LAUNCH}/{name}")
    sources = {"pipeline": lineage.cfg.path, "experiment": exp.path, "release": lineage.release.path}
    for kind, name in layout.bundle_configs(exp.id, lineage.version).items():
        parts[f"config_{kind}"] = _copy(Path(sources[kind]), staged, name)
    return parts


def _tokenizer(staged: Path, use: TokenizerUse, mode: str) -> dict[str, Any]:
    """The identity as JSON and, when included and present, the weights file ("reference": the sha256 only).
    The text tokenizer is always included: the inference script encodes prompts with it."""
    entry: dict[str, Any] = {"identity": _write(staged, ArtifactLayout.bundle_tokenizer(use.modality),
                                                json.dumps(use.identity, indent=2, sort_keys=True) + "\n"),
                             "weights": use.identity.get("weights"),
                             "weights_sha256": use.identity.get("weights_sha256"), "weights_file": None}
    source = use.weights_file
    if source is not None and source.is_file() and (mode == "include" or use.modality == "text"):
        entry["weights_file"] = _copy(source, staged, ArtifactLayout.bundle_tokenizer_weights(use.modality, source.name))
    return entry


def build_bundle(staged: Path, storage: Storage, lineage: ReleaseLineage, inputs: BundleInputs) -> BundleManifest:
    """Write every part into `staged` (a new folder), the manifest last; returns the manifest."""
    staged.mkdir(parents=True)
    contents: dict[str, Any] = {**_checkpoint(staged, storage, lineage),
                                **_launch_and_configs(staged, storage, lineage)}
    contents["vocab"] = _copy(storage.store.local_path(storage.store.key_of(lineage.blend["vocab_file"])),
                              staged, ArtifactLayout.BUNDLE_VOCAB)
    tokenizers = {m: _tokenizer(staged, use, lineage.release.tokenizer_weights)
                  for m, use in sorted(lineage.tokenizers.items())}
    contents["tokenizers"] = tokenizers
    contents["text_tokenizer"] = tokenizers.get("text", {}).get("weights_file")
    contents["eval"] = {name: _copy(path, staged, f"{ArtifactLayout.BUNDLE_EVAL}/{name}")
                        for name, path in sorted(inputs.eval_files.items())}
    contents["model_card"] = _write(staged, ArtifactLayout.BUNDLE_MODEL_CARD, model_card(lineage, inputs.facts))
    contents["data_card"] = _write(staged, ArtifactLayout.BUNDLE_DATA_CARD, data_card(lineage, inputs.data))
    contents["license"] = _copy(lineage.release.license_file, staged, ArtifactLayout.BUNDLE_LICENSE)
    contents["inference"] = _copy(INFERENCE_SCRIPT, staged, ArtifactLayout.BUNDLE_INFERENCE)
    release = lineage.release
    manifest = BundleManifest.of_folder(staged, contents=contents, lineage=lineage.to_manifest(inputs.code_version),
                                        release={"version": release.version, "model_name": release.model_name,
                                                 "internal": release.internal, "license": release.license.id,
                                                 "notes": release.notes})
    manifest.write(staged)
    return manifest


def model_parameters(model_file: Path) -> int | None:
    """Parameters in a Megatron checkpoint's model state (memory-mapped: only the shapes are read); None when
    the file is missing or unreadable (the checkpoint check says why)."""
    import pickle

    import torch

    if not model_file.is_file():
        return None
    try:
        state = torch.load(model_file, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, ValueError, OSError, EOFError, pickle.UnpicklingError):
        return None
    return sum(t.numel() for name, t in state.get("model", {}).items()
               if isinstance(t, torch.Tensor) and not name.endswith("_extra_state"))


def publish_bundle(storage: Storage, lineage: ReleaseLineage, code_version: str) -> BundleManifest:
    """Build the bundle of `lineage`'s release and publish it at releases/<version>/, whole (manifest last).
    CatalogError when the catalog cannot say what the release was trained on."""
    inputs = BundleInputs(read_training_data(storage, lineage.batches, lineage.other_sources),
                          model_facts(storage, lineage), eval_files(storage, lineage.experiment.id), code_version)
    key = storage.layout.release_dir(lineage.version)
    with storage.store.publish(key, last=ArtifactLayout.BUNDLE_MANIFEST, what=f"release {lineage.version}") as staged:
        return build_bundle(staged, storage, lineage, inputs)


def model_facts(storage: Storage, lineage: ReleaseLineage) -> ModelFacts:
    """What the model card states beyond the lineage, read from the run's checkpoint and the eval report."""
    folder = storage.store.local_dir(lineage.checkpoint_key)
    try:
        rows = read_report(storage, lineage.experiment.id)
    except FileNotFoundError:
        rows = []
    return ModelFacts(model_parameters(folder / ArtifactLayout.CHECKPOINT_MODEL), rows)

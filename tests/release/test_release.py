"""Release bundles end to end on a project trained through the real graph (conftest.py): a complete release
passes its checklist and verifies; each checklist item made false on its own blocks with a message naming it;
`mm release verify` names modified, missing and added files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from checks.release import LEAKAGE
from mm_assets.cli import run_release
from mm_assets.etl.catalog import build_catalog
from mm_assets.records.outcome import CheckEvaluation, latest_evaluation
from mm_assets.release.assets import release_bundle
from mm_assets.release.bundle import publish_bundle
from mm_assets.release.checklist import CHECKLIST, collect_evidence
from mm_assets.release.lineage import read_lineage
from mm_assets.release.manifest import BundleManifest
from mm_assets.release.report import checklist_markdown
from mm_assets.storage.layout import ArtifactLayout
from releaseproject import EXPERIMENT, ITERATIONS, VERSION

pytestmark = pytest.mark.slow


def _bundle(project, version: str) -> Path:
    return project.storage.store.local_dir(project.storage.layout.release_dir(version))


def _verdicts(project, version: str, *, inference: bool = False, leakage: CheckEvaluation | None = None) -> dict:
    """Every checklist rule on the version's published bundle (the inference script's only when asked), with
    check_leakage's latest evaluation from the instance (or `leakage`)."""
    lineage = read_lineage(project.cfg, project.storage, version)
    leakage = leakage or latest_evaluation(project.instance, LEAKAGE, lineage.experiment.id)
    evidence = collect_evidence(project.storage, lineage, leakage)
    return {item.check: item.rule(evidence) for item in CHECKLIST if inference or item.check != "inference_runs"}


def _publish(project, version: str) -> BundleManifest:
    return publish_bundle(project.storage, read_lineage(project.cfg, project.storage, version), "test")


def _remanifest(bundle: Path) -> None:
    """Rewrite manifest.json over the bundle's current files: a bundle made that way, not tampered with after."""
    old = BundleManifest.read(bundle)
    BundleManifest.of_folder(bundle, release=old.release, contents=old.contents, lineage=old.lineage).write(bundle)


def _failed(verdicts: dict) -> dict[str, str]:
    return {name: v.reason for name, v in verdicts.items() if not v.passed}


def _mm(project, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DAGSTER_HOME": str(project.instance.root_directory)}
    return subprocess.run([sys.executable, "-m", "mm_assets.cli", "--config", str(project.config), *args],
                          env=env, capture_output=True, text=True, timeout=300)


def test_a_complete_release_passes_its_checklist_and_verifies(release_project, tmp_path):
    project = release_project
    assert run_release(project.config, VERSION, project.instance)
    for item in CHECKLIST:
        evaluation = latest_evaluation(project.instance, dg.AssetCheckKey(release_bundle.key, item.check), VERSION)
        assert evaluation.passed, (item.check, evaluation.metadata)
    text, complete = checklist_markdown(project.instance, VERSION, "mm-tiny-rel")
    assert complete
    for number in range(1, 9):
        assert f"- [x] {number}. " in text.split("## Release")[0]
    assert "  - [x] demo_text_ppl: `PPL " in text and "check_leakage passed on the eval report" in text
    assert "## Release\n- [x] 1. Package all artifacts" in text
    assert "[x] Audio Encoder: `encodec_24khz @ weights random` (random weights: accepted for an internal " in text

    bundle = _bundle(project, VERSION)
    manifest = BundleManifest.read(bundle)
    files = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest.files) == files and all(len(d.sha256) == 64 and d.bytes > 0 for d in manifest.files.values())
    lineage = manifest.lineage
    assert lineage["experiment"] == EXPERIMENT and lineage["crawl_batches"] == ["demo-site"]
    assert lineage["checkpoint"]["iteration"] == ITERATIONS and lineage["code_version"]["trained_at"]
    assert {"torch", "megatron-core", "tokenizers", "python"} <= set(lineage["library_versions"])
    assert set(lineage["tokenizers"]) == {"text", "audio", "image", "video"}
    assert {"eval/metrics.parquet", "eval/report.json", "eval/predictions.parquet"} <= set(manifest.files)
    assert f"checkpoint/iter_{ITERATIONS:07d}/mp_rank_00/model_optim_rng.pt" in manifest.files
    assert (bundle / "checkpoint" / "latest_checkpointed_iteration.txt").read_text() == str(ITERATIONS)
    for card in ("model_card.md", "data_card.md"):
        first = (bundle / card).read_text().splitlines()[0]
        assert first.startswith("> **RANDOM WEIGHTS: the audio (encodec_24khz), image (vqgan_f16), video (tubelet_vq)")
    data_card = (bundle / "data_card.md").read_text()
    assert "| demo | CC-BY-4.0 | https://creativecommons.org/licenses/by/4.0/ | page_json_ld | 4 |" in data_card
    assert "| demo-site | 2 | 0 |" in data_card  # two duplicates removed, nothing quarantined
    assert "**[FOR REVIEW]**" in (bundle / "model_card.md").read_text()

    verify = _mm(project, "release", "verify", str(bundle))
    assert verify.returncode == 0 and f"{len(files)} files" in verify.stdout and "OK" in verify.stdout, verify.stdout

    # The script needs only the bundle: a copy elsewhere, run without the project on the path.
    copy = shutil.copytree(bundle, tmp_path / "downloaded")
    run = subprocess.run([sys.executable, str(copy / "inference.py"), "--prompt", "Clip 2", "--max-new-tokens", "3",
                          "--device", "cpu"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={"PATH": os.environ["PATH"], "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["iteration"] == ITERATIONS and 1 <= len(result["generated_ids"]) <= 3
    assert result["prompt_ids"] and len(result["tokens"]) == len(result["generated_ids"])

    # Rebuilding from the same inputs gives the same bytes.
    assert _publish(project, VERSION).sha256 == _publish(project, VERSION).sha256


def test_the_inference_script_builds_the_model_the_trainer_trained(release_project):
    """inference.py rebuilds the GPT without importing the trainer: the same weights must give the same logits."""
    import argparse

    import torch

    from mm_assets.release import inference
    from mm_assets.train.cpu.model import build_model

    bundle = _bundle(release_project, VERSION)
    state = torch.load(next(bundle.glob("checkpoint/iter_*/mp_rank_00/model_optim_rng.pt")), weights_only=True)
    tokens = torch.tensor([[5, 9, 2, 7, 3]])
    positions = torch.arange(5)[None]
    mask = torch.triu(torch.ones(5, 5, dtype=torch.bool), diagonal=1)[None, None]
    with inference.megatron_process(torch.device("cpu")):
        ours = inference.build_gpt(state["args"])
        trainers = build_model(argparse.Namespace(**state["args"]), state["args"]["padded_vocab_size"])
        for model in (ours, trainers):
            model.load_state_dict(state["model"], strict=True)
            model.eval()
        with torch.inference_mode():
            assert torch.equal(ours(tokens, positions, mask), trainers(tokens, positions, mask))


def test_verify_names_each_modified_missing_and_added_file(release_project, tmp_path):
    copy = shutil.copytree(_bundle(release_project, VERSION), tmp_path / "bundle")
    (copy / "data_card.md").write_text((copy / "data_card.md").read_text() + "\nedited\n")
    (copy / "LICENSE").unlink()
    (copy / "notes.txt").write_text("added later")
    out = _mm(release_project, "release", "verify", str(copy))
    assert out.returncode == 1
    assert "data_card.md: sha256 mismatch, manifest.json records" in out.stdout
    assert "LICENSE: missing (manifest.json records sha256" in out.stdout
    assert "notes.txt: not listed in manifest.json" in out.stdout
    (copy / "manifest.json").unlink()
    out = _mm(release_project, "release", "verify", str(copy))
    assert out.returncode == 1 and "manifest.json is missing" in out.stdout
    out = _mm(release_project, "release", "verify", str(tmp_path / "nowhere"))
    assert out.returncode == 2 and "no such folder" in out.stderr


def test_a_flipped_checkpoint_byte_blocks_the_release(release_project):
    """Through Dagster: the blocking check fails the run, and the checklist's first box says which file."""
    project, version = release_project, "tiny-rel-flipped"
    project.write_release(version)
    model = next((project.root / "data" / "runs" / EXPERIMENT / "checkpoints").glob(
        f"iter_{ITERATIONS:07d}/mp_rank_00/model_optim_rng.pt"))
    original = model.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    model.write_bytes(bytes(flipped))
    try:
        assert not run_release(project.config, version, project.instance)
    finally:
        model.write_bytes(original)
    key = dg.AssetCheckKey(release_bundle.key, "checkpoint_verified")
    evaluation = latest_evaluation(project.instance, key, version)
    assert not evaluation.passed
    assert "mp_rank_00/model_optim_rng.pt: sha256 mismatch" in evaluation.metadata["reason"]
    others = [item.check for item in CHECKLIST if item.check != "checkpoint_verified" and not latest_evaluation(
        project.instance, dg.AssetCheckKey(release_bundle.key, item.check), version).passed]
    assert others == []
    out = _mm(project, "release", "checklist", version)
    assert out.returncode == 1
    assert "- [ ] 1. **Checkpoint Finalized**" in out.stdout and "model_optim_rng.pt: sha256 mismatch" in out.stdout


def test_unknown_and_incompatible_licenses_block_naming_sources_and_counts(release_project):
    project = release_project
    storage = project.storage
    metadata = storage.store.local_path(storage.layout.metadata_file("demo-site"))
    original = metadata.read_bytes()
    table = pq.read_table(metadata)
    rows = table.to_pylist()
    for row in rows[:2]:
        row["metadata"]["license"], row["metadata"]["license_source"] = None, "none"
    try:
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), metadata)
        build_catalog(storage)
        project.write_release("tiny-rel-unknown")
        _publish(project, "tiny-rel-unknown")
        failed = _failed(_verdicts(project, "tiny-rel-unknown"))
    finally:
        metadata.write_bytes(original)
        build_catalog(storage)
    assert list(failed) == ["license_compatible"], failed
    assert "source demo: 2 item(s) with no license (license_source none" in failed["license_compatible"]

    (project.root / "releases" / "LICENSE.apache.txt").write_text("Apache License 2.0 (the text)\n")
    project.write_release("tiny-rel-apache", license={"id": "Apache-2.0", "file": "LICENSE.apache.txt"})
    _publish(project, "tiny-rel-apache")
    failed = _failed(_verdicts(project, "tiny-rel-apache"))
    assert list(failed) == ["license_compatible"], failed
    assert ("source demo: 4 item(s) under CC-BY-4.0, which release.license_compatibility does not allow to be "
            "released as Apache-2.0") in failed["license_compatible"]


def test_random_tokenizer_weights_block_a_release_that_is_not_internal(release_project):
    project = release_project
    project.write_release("tiny-rel-public", internal=False,
                          review={k: "stated" for k in ("intended_use", "out_of_scope_use", "limitations",
                                                        "ethical_considerations", "data_collection_notes",
                                                        "reviewed_by")})
    _publish(project, "tiny-rel-public")
    failed = _failed(_verdicts(project, "tiny-rel-public"))
    assert list(failed) == ["tokenizers_packaged"], failed
    assert "audio: encodec_24khz has random weights" in failed["tokenizers_packaged"]
    assert "set internal: true" in failed["tokenizers_packaged"]
    first = (_bundle(project, "tiny-rel-public") / "model_card.md").read_text().splitlines()[0]
    assert first.startswith("> **RANDOM WEIGHTS: ") and "internal" not in first


def test_review_fields_block_a_public_release_until_a_person_fills_them(release_project):
    project = release_project
    project.write_release("tiny-rel-unreviewed", internal=False)
    _publish(project, "tiny-rel-unreviewed")
    failed = _failed(_verdicts(project, "tiny-rel-unreviewed"))
    assert "review.intended_use" in failed["model_card_generated"]
    assert "review.data_collection_notes" in failed["data_card_generated"]


def test_a_broken_inference_script_blocks(release_project):
    project, version = release_project, "tiny-rel-broken-script"
    project.write_release(version)
    _publish(project, version)
    bundle = _bundle(project, version)
    (bundle / ArtifactLayout.BUNDLE_INFERENCE).write_text('raise SystemExit("inference broken on purpose")\n')
    _remanifest(bundle)  # the bundle was made with the broken script
    failed = _failed(_verdicts(project, version, inference=True))
    assert list(failed) == ["inference_runs"], failed
    assert failed["inference_runs"] == "inference.py exited 1: inference broken on purpose"


def test_a_card_edited_after_generation_blocks(release_project):
    project, version = release_project, "tiny-rel-edited-card"
    project.write_release(version)
    _publish(project, version)
    bundle = _bundle(project, version)
    card = bundle / ArtifactLayout.BUNDLE_MODEL_CARD
    card.write_text(card.read_text().replace("**[FOR REVIEW]** who may use this model, for what", "anyone"))
    _remanifest(bundle)
    failed = _failed(_verdicts(project, version))
    assert list(failed) == ["model_card_generated"], failed
    assert "model_card.md is not the card generated from this release's lineage" in failed["model_card_generated"]


def test_a_bundle_file_changed_after_publishing_blocks(release_project):
    project, version = release_project, "tiny-rel-tampered"
    project.write_release(version)
    _publish(project, version)
    (_bundle(project, version) / ArtifactLayout.BUNDLE_VOCAB).write_text("{}")
    failed = _failed(_verdicts(project, version))
    assert "vocab.json: sha256 mismatch" in failed["bundle_complete"]


def test_a_task_missing_from_the_eval_report_blocks(release_project):
    """A task configured in eval.tasks that the report has no result for: evaluation is not complete."""
    project, version = release_project, "tiny-rel-new-task"
    task = (project.root / "eval" / "demo_clip_qa.yaml").read_text().replace("demo_clip_qa", "demo_clip_qa_v2")
    (project.root / "eval" / "demo_clip_qa_v2.yaml").write_text(task)
    original = project.config.read_text()
    cfg = yaml.safe_load(original)
    cfg["eval"]["tasks"].append("demo_clip_qa_v2")
    project.config.write_text(yaml.safe_dump(cfg))
    try:
        project.write_release(version)
        _publish(project, version)
        failed = _failed(_verdicts(project, version))
    finally:
        project.config.write_text(original)
    assert list(failed) == ["eval_complete"], failed
    assert "task demo_clip_qa_v2 has no standard-split result in the report" in failed["eval_complete"]


def test_releasing_a_checkpoint_that_was_not_evaluated_blocks(release_project):
    project, version = release_project, "tiny-rel-earlier"
    project.write_release(version, checkpoint_iteration=ITERATIONS // 2)
    _publish(project, version)
    failed = _failed(_verdicts(project, version))
    assert list(failed) == ["eval_complete"], failed
    assert (f"the report evaluated iteration {ITERATIONS}, the release ships iteration {ITERATIONS // 2}"
            in failed["eval_complete"])


def test_a_failed_canary_blocks(release_project):
    """A memorised canary in the report (the reference's rule recomputed), or check_leakage failed on it."""
    project, version = release_project, "tiny-rel-canary"
    project.write_release(version)
    storage = project.storage
    metrics = storage.store.local_path(storage.layout.eval_metrics(EXPERIMENT))
    original = metrics.read_bytes()
    table = pq.read_table(metrics)
    rows = table.to_pylist()
    for row in rows:
        if row["task_name"] == "demo_clip_qa" and row["metric"] == "Accuracy":
            row["value"] = 1.0 if row["split"] == "canary" else 0.0
    try:
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), metrics)
        _publish(project, version)
        failed = _failed(_verdicts(project, version))
    finally:
        metrics.write_bytes(original)
    assert list(failed) == ["canary_passed"], failed
    assert "leaked: demo_clip_qa (canary 1.000, standard 0.000)" in failed["canary_passed"]

    _publish(project, version)
    leak = CheckEvaluation(AssetCheckExecutionRecordStatus.FAILED, {})
    failed = _failed(_verdicts(project, version, leakage=leak))
    assert list(failed) == ["canary_passed"] and "check_leakage failed" in failed["canary_passed"], failed

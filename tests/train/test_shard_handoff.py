"""Corrupt shards never reach training: the blend compares each shard with what token_shards recorded, the
launch compares it with what the blend recorded, and the CPU trainer checks what it opens. Each refusal names
the file, the expected and the actual sha256 (or says "truncated")."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from mm_assets.definitions import build_definitions
from mm_assets.partitions import crawl_batches, experiments
from mm_assets.shards.assets import token_shards
from mm_assets.shards.indexed import bin_path, idx_path
from mm_assets.storage.paths import sha256_file
from trainproject import PATTERN_BATCH, write_experiment, write_project

REPO = Path(__file__).resolve().parents[2]
EXPERIMENT = "exp-handoff"
HEADER = 34  # bytes of the .idx before the lengths


def flip_pointer(prefix: Path, sequence: int = 3) -> None:
    """Shift one sequence's byte pointer by one token: sizes stay, training would read misaligned tokens."""
    data = bytearray(idx_path(prefix).read_bytes())
    n = int.from_bytes(data[18:26], "little")
    at = HEADER + 4 * n + 8 * sequence
    data[at:at + 8] = (int.from_bytes(data[at:at + 8], "little") + 4).to_bytes(8, "little")
    idx_path(prefix).write_bytes(bytes(data))


@pytest.fixture
def project(tmp_path):
    config = write_project(tmp_path)
    write_experiment(config, EXPERIMENT)
    return config


def prefix_of(project: Path) -> Path:
    return project.parents[1] / "data" / "shards" / PATTERN_BATCH / "tokens"


def run_dir(project: Path) -> Path:
    return project.parents[1] / "data" / "runs" / EXPERIMENT


def train(project: Path, instance, job: str = "train_experiment"):
    return build_definitions(project).resolve_job_def(job).execute_in_process(
        partition_key=EXPERIMENT, instance=instance, raise_on_error=False)


def failure_of(result, step: str) -> str:
    (event,) = [e for e in result.get_step_failure_events() if e.step_key == step]
    data = event.step_failure_data
    return data.user_failure_data.description if data.user_failure_data else data.error.message


def test_a_changed_pointer_stops_the_blend_naming_the_file_and_both_hashes(project):
    prefix = prefix_of(project)
    recorded = sha256_file(idx_path(prefix))
    flip_pointer(prefix)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(experiments.name, [EXPERIMENT])
        result = train(project, instance)
    assert not result.success
    message = failure_of(result, "training_blend")
    assert f"{idx_path(prefix)}: sha256 mismatch, expected {recorded} (recorded by token_shards), " \
           f"actual {sha256_file(idx_path(prefix))}" in message
    assert "sequence pointers differ from the cumulative lengths" in message
    assert not result.get_asset_materialization_events()  # nothing downstream ran, no blend was published
    assert not (run_dir(project) / "blend.json").exists()


def test_a_truncated_bin_stops_the_blend_saying_truncated(project):
    prefix = prefix_of(project)
    size = bin_path(prefix).stat().st_size
    os.truncate(bin_path(prefix), size - 400)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(experiments.name, [EXPERIMENT])
        result = train(project, instance)
    message = failure_of(result, "training_blend")
    assert f"{bin_path(prefix)}: truncated: {size - 400} bytes, the index needs {size}" in message
    assert f"truncated: {size - 400} bytes, expected {size}" in message


def test_a_shard_changed_after_the_blend_is_refused_before_the_launch(project):
    defs = build_definitions(project)
    blend_only = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={dg.AssetKey("training_blend")})
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(experiments.name, [EXPERIMENT])
        assert blend_only.execute_in_process(partition_key=EXPERIMENT, instance=instance).success
        prefix = prefix_of(project)
        recorded = sha256_file(idx_path(prefix))
        flip_pointer(prefix)
        (prefix.parent / "manifest.json").unlink()  # even with the shard's own record gone
        checkpoint_only = defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection={dg.AssetKey("checkpoint")})
        result = checkpoint_only.execute_in_process(partition_key=EXPERIMENT, instance=instance, raise_on_error=False)
    message = failure_of(result, "checkpoint")
    assert "refusing to launch: the blend's shards changed after training_blend verified them" in message
    assert f"{idx_path(prefix)}: sha256 mismatch, expected {recorded} (recorded by training_blend (blend.json)), " \
           f"actual {sha256_file(idx_path(prefix))}" in message
    assert not (run_dir(project) / "logs").exists() and not (run_dir(project) / "launch").exists()  # nothing ran


def test_a_shard_rewritten_outside_dagster_disagrees_with_its_materialization(project):
    prefix = prefix_of(project)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawl_batches.name, [PATTERN_BATCH])
        instance.add_dynamic_partitions(experiments.name, [EXPERIMENT])
        # What the token_shards run that made this batch recorded (a different .idx than the one on disk now).
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key=token_shards.key, partition=PATTERN_BATCH,
            metadata={"idx_sha256": "0" * 64, "bin_sha256": sha256_file(bin_path(prefix))}))
        result = train(project, instance)
    message = failure_of(result, "training_blend")
    assert f"tokens.idx sha256 {sha256_file(idx_path(prefix))}, but the latest token_shards materialization " \
           f"recorded {'0' * 64}: the shard was rewritten outside Dagster" in message


def cpu_trainer(prefix: Path, save: Path) -> subprocess.CompletedProcess:
    argv = ["--num-layers", "1", "--hidden-size", "16", "--num-attention-heads", "2", "--seq-length", "16",
            "--micro-batch-size", "2", "--train-iters", "2", "--lr", "0.001", "--data-path", str(prefix),
            "--split", "98,1,1", "--save", str(save), "--log-interval", "1", "--eval-iters", "0"]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "mm_assets.train.cpu", *argv], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_the_cpu_trainer_refuses_a_shard_that_does_not_match(project, tmp_path):
    prefix = prefix_of(project)
    recorded = sha256_file(idx_path(prefix))
    flip_pointer(prefix)
    proc = cpu_trainer(prefix, tmp_path / "ckpt")
    assert proc.returncode == 2, proc.stdout[-2000:]
    assert "--data-path: refusing shards that do not match their index or manifest" in proc.stderr
    assert f"{idx_path(prefix)}: sha256 mismatch, expected {recorded}" in proc.stderr
    assert sha256_file(idx_path(prefix)) in proc.stderr
    assert not (tmp_path / "ckpt" / "latest_checkpointed_iteration.txt").exists()


def test_the_cpu_trainer_says_truncated_for_a_short_bin_without_a_manifest(project, tmp_path):
    prefix = prefix_of(project)
    (prefix.parent / "manifest.json").unlink()
    size = bin_path(prefix).stat().st_size
    os.truncate(bin_path(prefix), size - 4)
    proc = cpu_trainer(prefix, tmp_path / "ckpt")
    assert proc.returncode == 2
    assert f"{bin_path(prefix)}: truncated: {size - 4} bytes, the index needs {size}" in proc.stderr

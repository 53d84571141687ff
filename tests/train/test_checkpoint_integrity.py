"""Checkpoints on the real local Slurm cluster with the CPU trainer: a resume from overwritten bytes is refused
(or, where configured, falls back to the previous verified checkpoint), a NaN run never publishes or tracks a
checkpoint, and the experiment table lists results only from runs whose blocking checks passed."""

import shutil
from pathlib import Path

import dagster as dg
import pytest

from mm_assets.definitions import build_definitions
from mm_assets.etl.catalog import run_query
from mm_assets.partitions import experiments
from mm_assets.storage.paths import sha256_file
from mm_assets.train.verified_checkpoints import CheckpointHashes
from trainproject import write_experiment, write_project

pytestmark = pytest.mark.slow
EXPERIMENT = "exp-ckpt"
WEIGHTS = Path("mp_rank_00") / "model_optim_rng.pt"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, slurm_cluster) -> Path:
    """A project trained to iteration 40 on Slurm (checkpoints at 20 and 40, their sha256s recorded)."""
    root = tmp_path_factory.mktemp("trained") / "project"
    config = write_project(root, compute={"backend": "slurm", "slurm_conf": str(slurm_cluster.conf)})
    write_experiment(config, EXPERIMENT)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(experiments.name, [EXPERIMENT])
        result = build_definitions(config).resolve_job_def("train_experiment").execute_in_process(
            partition_key=EXPERIMENT, instance=instance)
        assert result.success
    assert sorted(CheckpointHashes.load(run_dir(root) / HASHES).entries) == [20, 40]
    return root


@pytest.fixture
def project(trained, tmp_path) -> Path:
    """A copy of the trained project (its paths are relative to the folder): each test damages its own."""
    shutil.copytree(trained, tmp_path / "project")
    return tmp_path / "project" / "configs" / "pipeline.yaml"


HASHES = "checkpoint_hashes.json"  # beside run.json in the run folder (ArtifactLayout.checkpoint_hashes)


def run_dir(root: Path) -> Path:
    return root / "data" / "runs" / EXPERIMENT


def checkpoints(project: Path) -> Path:
    return run_dir(project.parents[1]) / "checkpoints"


def tracker(project: Path) -> int:
    return int((checkpoints(project) / "latest_checkpointed_iteration.txt").read_text())


def overwrite_1kib(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        f.write(b"\xff" * 1024)


def train(project: Path, instance, **overrides) -> dg.ExecuteInProcessResult:
    write_experiment(project, EXPERIMENT, **overrides)
    if not instance.has_dynamic_partition(experiments.name, EXPERIMENT):
        instance.add_dynamic_partitions(experiments.name, [EXPERIMENT])
    return build_definitions(project).resolve_job_def("train_experiment").execute_in_process(
        partition_key=EXPERIMENT, instance=instance, raise_on_error=False)


def extend_to(iterations: int) -> dict:
    return {"schedule": {"iterations": {"train_iters": iterations, "lr_warmup_iters": 5}}}


def failure_of(result, step: str) -> str:
    (event,) = [e for e in result.get_step_failure_events() if e.step_key == step]
    data = event.step_failure_data
    return data.user_failure_data.description if data.user_failure_data else data.error.message


def metadata(result, asset: str) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def records(project: Path, instance) -> dict:
    assert build_definitions(project).resolve_job_def("refresh_records").execute_in_process(instance=instance).success
    db = project.parents[1] / "data" / "catalog" / "metadata.duckdb"
    cols, rows = run_query(db, "SELECT * FROM experiment_records")
    (row,) = [dict(zip(cols, r)) for r in rows]
    return row


def test_overwritten_checkpoint_bytes_are_refused_before_the_launch(project):
    weights = checkpoints(project) / "iter_0000040" / WEIGHTS
    recorded = sha256_file(weights)
    overwrite_1kib(weights)
    logs = sorted((run_dir(project.parents[1]) / "logs").iterdir())
    with dg.instance_for_test() as instance:
        result = train(project, instance, **extend_to(60))
    assert not result.success
    message = failure_of(result, "checkpoint")
    assert "refusing to resume from iteration 40" in message
    assert f"{weights}: sha256 mismatch, expected {recorded}" in message and sha256_file(weights) in message
    assert "training.resume.on_mismatch: previous_verified" in message  # what to do
    assert sorted((run_dir(project.parents[1]) / "logs").iterdir()) == logs  # no job was submitted
    assert tracker(project) == 40


def test_a_mismatch_falls_back_to_the_previous_verified_checkpoint_where_configured(project):
    overwrite_1kib(checkpoints(project) / "iter_0000040" / WEIGHTS)
    with dg.instance_for_test() as instance:
        result = train(project, instance, resume={"on_mismatch": "previous_verified"}, **extend_to(60))
        assert result.success, failure_of(result, "checkpoint")
        meta = metadata(result, "checkpoint")
        assert (meta["resumed_from_iteration"], meta["fell_back_from_iteration"], meta["iteration"]) == (20, 40, 60)
        warnings = "\n".join(e.user_message for e in instance.all_logs(result.run_id) if e.level >= 30)
    assert "falling back from iteration 40 to iteration 20, the newest checkpoint whose files match" in warnings
    (rejected,) = (checkpoints(project) / "rejected").iterdir()
    assert rejected.name.startswith("iter_0000040.hash-mismatch.")
    assert sorted(CheckpointHashes.load(run_dir(project.parents[1]) / HASHES).entries) == [20, 40, 60]  # 40 trained again
    assert tracker(project) == 60


def nan_weights(project: Path, iteration: int) -> None:
    """Make the checkpoint's weights produce a NaN loss, and record its sha256 as the run that saved it would
    (what an unmodified Megatron without its NaN check leaves: NaN weights in a complete checkpoint)."""
    import torch

    folder = checkpoints(project) / f"iter_{iteration:07d}"
    state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
    (name,) = [k for k in state["model"] if k.endswith("word_embeddings.weight")]
    state["model"][name].fill_(float("nan"))
    torch.save(state, folder / WEIGHTS)
    hashes = CheckpointHashes.load(run_dir(project.parents[1]) / HASHES)
    hashes.record(iteration, folder, loss=None)
    hashes.save()


def test_a_nan_run_publishes_no_checkpoint_and_is_recorded_as_failed(project):
    nan_weights(project, 40)
    with dg.instance_for_test() as instance:
        result = train(project, instance, **extend_to(60))
        assert not result.success
        message = failure_of(result, "checkpoint")
        assert "logged a non-finite loss at iteration 60, its last" in message
        assert "the latest checkpoint is iteration 40" in message
        assert tracker(project) == 40 and not (checkpoints(project) / "iter_0000060").exists()
        assert sorted(CheckpointHashes.load(run_dir(project.parents[1]) / HASHES).entries) == [20, 40]
        logs = [p.read_text() for p in (run_dir(project.parents[1]) / "logs").iterdir() if p.suffix == ".out"]
        (log,) = [text for text in logs if "iteration       60/" in text]
        assert "number of nan iterations:   5" in log
        assert "WARNING: not saving checkpoint at iteration       60: its loss is not finite" in log

        row = records(project, instance)
    assert (row["status"], row["failed_at"]) == ("failed", "step checkpoint")
    assert row["result_summary"] == "failed: step checkpoint"
    assert row["final_loss"] is None and row["iterations"] is None and row["checkpoint"] is None


def test_records_list_a_result_only_while_its_blocking_checks_pass(project):
    with dg.instance_for_test() as instance:
        assert train(project, instance, **extend_to(60)).success
        row = records(project, instance)
        assert (row["status"], row["failed_at"]) == ("ok", None)
        assert "over 60 iterations" in row["result_summary"] and row["final_loss"] is not None

        # The published checkpoint is damaged afterwards; its blocking check, run again, fails.
        overwrite_1kib(checkpoints(project) / "iter_0000060" / WEIGHTS)
        defs = build_definitions(project)
        check = defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection=set(), asset_check_selection={dg.AssetCheckKey(dg.AssetKey("checkpoint"), "checkpoint_complete")})
        assert not check.execute_in_process(instance=instance, tags={"dagster/partition": EXPERIMENT},
                                            raise_on_error=False).success
        row = records(project, instance)
    assert (row["status"], row["failed_at"]) == ("failed", "check checkpoint_complete")
    assert row["final_loss"] is None and "loss" not in row["result_summary"]
    assert (run_dir(project.parents[1]) / HASHES).is_file()

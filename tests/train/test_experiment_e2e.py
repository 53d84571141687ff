"""An experiment end to end on the real local Slurm cluster: shard -> blend -> sbatch job (Pipes) -> checkpoint
-> JSONL log -> experiment record; a resubmission resumes from the latest checkpoint."""

import json

import dagster as dg
import pytest

from mm_assets.definitions import build_definitions
from mm_assets.etl.catalog import run_query
from mm_assets.partitions import experiments
from trainproject import asset_metadata, train_green, write_experiment, write_project

pytestmark = pytest.mark.slow
EXPERIMENT = "exp-ci-slurm"
FAKE_SECRET = "fake-secret-never-in-a-job-1f0c"


@pytest.fixture
def project(tmp_path, slurm_cluster):
    """A project whose compute backend is the local Slurm cluster, with one pattern shard and one experiment."""
    return write_project(tmp_path, compute={"backend": "slurm", "slurm_conf": str(slurm_cluster.conf)})


def _write_experiment(project, iters: int) -> None:
    write_experiment(project, EXPERIMENT, notes="CI run on the local Slurm cluster.",
                     schedule={"iterations": {"train_iters": iters, "lr_warmup_iters": 5}})


def test_experiment_trains_on_slurm_resumes_and_is_recorded(project, slurm_cluster, monkeypatch):
    _write_experiment(project, 40)
    defs = build_definitions(project)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)  # in the Dagster process: never in a job
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(experiments.name, [EXPERIMENT])
        first = train_green(defs, instance, EXPERIMENT)
        ckpt = asset_metadata(first, "checkpoint")
        job = int(ckpt["slurm_job_id"])
        saved = slurm_cluster.dir / "state" / f"hash.{job % 10}" / f"job.{job}"
        assert (saved / "environment").is_file() and (saved / "script").is_file()  # Slurm's copy of the job
        assert FAKE_SECRET.encode() not in (saved / "environment").read_bytes() + (saved / "script").read_bytes()
        assert b"AWS_SECRET_ACCESS_KEY" not in (saved / "environment").read_bytes()
        assert ckpt["backend"] == "slurm" and ckpt["slurm_job_id"].isdigit()
        assert ckpt["iteration"] == 40 and ckpt["resumed_from_iteration"] == -1
        assert all(len(sha) == 64 for sha in ckpt["sha256"].values())
        log = asset_metadata(first, "training_log")
        assert log["last_loss"] < log["first_loss"] - 0.5  # the loss falls

        run_dir = project.parents[1] / "data" / "runs" / EXPERIMENT
        records = [json.loads(line) for line in (run_dir / "training_log.jsonl").read_text().splitlines()]
        assert list(records[0]) == ["timestamp", "iteration", "loss", "grad_norm", "lr", "consumed_tokens",
                                    "throughput_tps", "gpu_mem_used_gb", "loss_scale"]
        assert log["records"] == len(records) and records[-1]["iteration"] == 40
        assert records[-1]["consumed_tokens"] == 40 * 8 * 64
        sbatch = (run_dir / "launch" / f"{EXPERIMENT}.sbatch").read_text()
        assert "--gres" not in sbatch and "--train-iters" in (run_dir / "launch" / f"{EXPERIMENT}.args.txt").read_text()

        _write_experiment(project, 60)  # resubmitting continues from the latest checkpoint
        second = train_green(defs, instance, EXPERIMENT)
        ckpt = asset_metadata(second, "checkpoint")
        assert (ckpt["resumed_from_iteration"], ckpt["iteration"]) == (40, 60)

        assert defs.resolve_job_def("refresh_records").execute_in_process(instance=instance).success
        db = project.parents[1] / "data" / "catalog" / "metadata.duckdb"
        cols, rows = run_query(db, "SELECT experiment_id, config_path, key_changes, result_summary, notes, status "
                                   "FROM experiment_records")
        (row,) = [dict(zip(cols, r)) for r in rows]
        assert row["experiment_id"] == EXPERIMENT and row["notes"] == "CI run on the local Slurm cluster."
        assert row["status"] == "ok"
        assert "schedule.iterations.train_iters=60" in row["key_changes"]
        assert "over 60 iterations" in row["result_summary"]
        md = (project.parents[1] / "data" / "records" / "experiment_records.md").read_text()
        assert f"`{EXPERIMENT}`" in md and "| Experiment ID |" in md

"""Validate before any side effect: an experiment that cannot launch (here: a world size TP does not divide)
registers no partition, materializes nothing and writes no file, from `mm train run` and from the assets."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from mm_assets.definitions import build_definitions
from mm_assets.partitions import experiments
from trainproject import write_experiment, write_project

REPO = Path(__file__).resolve().parents[3]
EXPERIMENT = "exp-bad-world"
BAD_WORLD = {"cluster": {"nodes": 3}, "parallelism": {"tensor_model_parallel_size": 2}}  # 3 CPU processes, TP 2


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_mm_train_run_refuses_before_registering_anything(tmp_path):
    config = write_project(tmp_path / "project")
    write_experiment(config, EXPERIMENT, **BAD_WORLD)
    home = tmp_path / "dagster-home"
    home.mkdir()
    before = files_under(tmp_path / "project")
    proc = subprocess.run([sys.executable, "-m", "mm_assets.cli", "--config", str(config), "train", "run", EXPERIMENT],
                          env={**os.environ, "DAGSTER_HOME": str(home)}, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"experiment {EXPERIMENT}" in proc.stderr and "problem(s) before launch" in proc.stderr
    assert "world size = cluster.nodes=3 × 1 process per CPU node (cluster.gpus_per_node=0) = 3 is not divisible " \
           "by parallelism.tensor_model_parallel_size" in proc.stderr
    assert files_under(tmp_path / "project") == before  # no blend.json, no launch files, no run folder
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_dynamic_partitions(experiments.name) == []
        assert not instance.get_run_records()


def test_the_blend_asset_validates_the_launch_before_writing(tmp_path):
    config = write_project(tmp_path / "project")
    write_experiment(config, EXPERIMENT, **BAD_WORLD)
    before = files_under(tmp_path / "project")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(experiments.name, [EXPERIMENT])
        result = build_definitions(config).resolve_job_def("train_experiment").execute_in_process(
            partition_key=EXPERIMENT, instance=instance, raise_on_error=False)
    assert not result.success and not result.get_asset_materialization_events()
    (failure,) = result.get_step_failure_events()
    assert failure.step_key == "training_blend"
    assert "is not divisible by parallelism.tensor_model_parallel_size" in failure.step_failure_data.user_failure_data.description
    assert files_under(tmp_path / "project") == before

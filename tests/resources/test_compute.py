"""ComputeResource: one JobSpec runs on either backend through Pipes; each line of the job's log reaches
`on_line` as it streams, `on_start` hears where the job runs (the metrics publisher's file_sd targets), the
result names the log, and a failing job fails with it."""

import shlex
import socket
import sys
from pathlib import Path

import dagster as dg
import pytest

from mm_assets.config.base import ConfigError
from resources.compute import ComputeResource, JobSpec

PROGRAM = "import sys, time\nfor i in range(3):\n    print(f'line {i}', flush=True); time.sleep(0.2)\nsys.exit({code})\n"


def _job(tmp_path: Path, code: int, compute: ComputeResource, heard: list[str], started: list) -> JobSpec:
    program = PROGRAM.replace("{code}", str(code))
    log = tmp_path / "logs" / "job.log"
    log.parent.mkdir(exist_ok=True)  # Slurm opens --output before the script runs
    sbatch = f"#!/bin/bash\n#SBATCH --time=5\n#SBATCH --output={log}\nexec {sys.executable} -c {shlex.quote(program)}\n"
    return JobSpec(name="compute-test", command=[sys.executable, "-c", program], sbatch=sbatch, log=log,
                   pipes_dir=tmp_path / "pipes", env=compute.environment({"OMP_NUM_THREADS": "1"}),
                   on_line=heard.append, on_start=lambda job_id, nodes: started.append((job_id, nodes)))


def _run(tmp_path: Path, compute: ComputeResource, code: int = 0):
    heard: list[str] = []
    started: list[tuple[str | None, list[str]]] = []

    @dg.asset
    def job_asset(context: dg.AssetExecutionContext, compute: ComputeResource) -> dg.MaterializeResult:
        invocation = compute.run(context, _job(tmp_path, code, compute, heard, started))
        return dg.MaterializeResult(metadata={"log": invocation.metadata["log"]})

    result = dg.materialize([job_asset], resources={"compute": compute}, raise_on_error=False)
    return result, heard, started


def test_the_local_backend_streams_lines_and_names_its_log(tmp_path):
    result, heard, started = _run(tmp_path, ComputeResource(backend="local", poll_interval_s=0.1))
    assert result.success
    assert heard == ["line 0", "line 1", "line 2"]
    assert started == [(None, [socket.gethostname()])]
    (event,) = result.get_asset_materialization_events()
    log = Path(event.materialization.metadata["log"].value)
    assert log == tmp_path / "logs" / "job.log" and log.read_text().splitlines() == heard


def test_a_failing_job_fails_with_its_log(tmp_path):
    result, heard, _ = _run(tmp_path, ComputeResource(backend="local", poll_interval_s=0.1), code=3)
    (failure,) = result.get_step_failure_events()
    data = failure.step_failure_data.user_failure_data
    assert "exited with code 3" in data.description and data.metadata["log"].value == str(tmp_path / "logs" / "job.log")
    assert heard == ["line 0", "line 1", "line 2"]


def test_a_missing_credentials_file_is_refused_before_a_job_is_built(tmp_path):
    compute = ComputeResource(backend="local", credentials_file=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="compute.credentials_file: .*nope does not exist"):
        compute.environment()


@pytest.mark.slow
def test_slurm_streams_the_same_job(tmp_path, slurm_cluster):
    compute = ComputeResource(backend="slurm", slurm_conf=str(slurm_cluster.conf), poll_interval_s=0.1)  # sees it RUNNING
    result, heard, started = _run(tmp_path, compute)
    assert result.success, result.get_step_failure_events()
    assert heard == ["line 0", "line 1", "line 2"]
    ((job_id, nodes),) = started  # the node list from `scontrol show hostnames` once the job ran
    assert job_id.isdigit() and nodes == [socket.gethostname().split(".")[0]]
    (event,) = result.get_asset_materialization_events()
    assert Path(event.materialization.metadata["log"].value) == tmp_path / "logs" / "job.log"

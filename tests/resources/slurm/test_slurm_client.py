"""SlurmPipesClient on the real local cluster (tests/conftest.py starts it): Pipes results come back,
failures carry Slurm's state, exit code and log tail, a terminated run cancels its job, and sbatch's
rejections surface with Slurm's own message."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from resources.slurm.client import SlurmPipesClient
from resources.slurm.state import parse_sacct, parse_scontrol_job

REPO = Path(__file__).resolve().parents[3]
PY = sys.executable  # the job runs on this machine, with this environment's dagster_pipes


def _client(cluster, tmp_path: Path, **kw) -> SlurmPipesClient:
    return SlurmPipesClient(
        shared_dir=tmp_path / "shared", slurm_conf=str(cluster.conf), poll_interval_s=0.3, **kw
    )


def _materialize(script: str, job_name: str, client: SlurmPipesClient, *, extras=None):
    @dg.asset
    def trained(context: dg.AssetExecutionContext, slurm: SlurmPipesClient):
        return slurm.run(context=context, script=script, job_name=job_name, extras=extras).get_materialize_result()

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([trained], resources={"slurm": client}, instance=instance, raise_on_error=False)
    return result, instance


def _failure(result) -> dg.Failure:
    (event,) = result.get_step_failure_events()
    data = event.step_failure_data.user_failure_data
    assert data is not None, event.step_failure_data.error
    return data


def _messages(instance, result) -> str:
    return "\n".join(r.user_message for r in instance.all_logs(result.run_id))


def test_job_reports_materialization_through_pipes(slurm_cluster, tmp_path):
    script = textwrap.dedent(
        f"""\
        #!/bin/bash
        #SBATCH --time=5
        #SBATCH --ntasks=1
        echo "job $SLURM_JOB_ID on $(hostname)"
        exec {PY} - <<'PY'
        import os
        from dagster_pipes import open_dagster_pipes
        with open_dagster_pipes() as pipes:
            pipes.log.info("hello from the slurm job")
            pipes.report_asset_materialization(
                metadata={{
                    "job_id_seen_by_job": int(os.environ["SLURM_JOB_ID"]),
                    "loss": 1.25,
                    "tag": pipes.get_extra("tag"),
                }}
            )
        PY
        """
    )
    result, instance = _materialize(script, "mm-test-ok", _client(slurm_cluster, tmp_path), extras={"tag": "t-1"})
    assert result.success
    (mat,) = result.asset_materializations_for_node("trained")
    md = {k: v.value for k, v in mat.metadata.items()}
    assert md["loss"] == 1.25 and md["tag"] == "t-1"
    assert md["slurm_state"] == "COMPLETED" and md["slurm_exit_code"] == "0:0"
    assert md["job_id_seen_by_job"] == md["slurm_job_id"]
    logs = _messages(instance, result)
    assert "hello from the slurm job" in logs  # dagster_pipes log → context.log
    assert f"[slurm {md['slurm_job_id']}] job {md['slurm_job_id']} on" in logs  # the job's stdout, streamed
    assert Path(md["log"]).parent.parent.parent == tmp_path / "shared"  # <shared>/<run>/<job>/slurm-N.out


def test_nonzero_exit_fails_with_state_exit_code_and_log_tail(slurm_cluster, tmp_path):
    logs = tmp_path / "own-logs"
    logs.mkdir()
    # The script chooses its own --output/--error (as the training sbatch does): both are followed.
    script = textwrap.dedent(
        f"""\
        #!/bin/bash
        #SBATCH --output={logs}/run-%j.out
        #SBATCH --error={logs}/run-%j.err
        for i in $(seq 1 60); do echo "step $i"; done
        echo "boom: loss is nan" >&2
        exit 3
        """
    )
    result, instance = _materialize(script, "mm-test-exit3", _client(slurm_cluster, tmp_path, log_tail_lines=10))
    assert not result.success
    failure = _failure(result)
    job_id = failure.metadata["slurm_job_id"].value
    assert f"Slurm job {job_id} (mm-test-exit3) ended FAILED, exit code 3:0" in failure.description
    assert "step 60" in failure.description and "step 50" not in failure.description  # the last 10 lines
    assert "boom: loss is nan" in failure.description  # stderr's tail too
    assert failure.metadata["slurm_state"].value == "FAILED"
    assert failure.metadata["slurm_exit_code"].value == "3:0"
    assert failure.metadata["log"].value == f"{logs}/run-{job_id}.out"
    assert f"[slurm {job_id} stderr] boom: loss is nan" in _messages(instance, result)


@pytest.mark.timeout(150)
def test_time_limit_ends_in_timeout(slurm_cluster, tmp_path):
    # Time limits are whole minutes and slurmctld enforces them every 30 s, so a natural --time=1 takes 60-90 s.
    # The job moves its own end time to now (root may): slurmctld's enforcement then ends it within ~30 s, in
    # the genuine TIMEOUT state. If that is refused (not root), the 1-minute limit still applies.
    script = textwrap.dedent(
        """\
        #!/bin/bash
        #SBATCH --time=1
        echo "started"
        scontrol update JobId="$SLURM_JOB_ID" EndTime=now || echo "could not move EndTime; waiting for the limit"
        sleep 300
        """
    )
    t0 = time.monotonic()
    result, _ = _materialize(script, "mm-test-timeout", _client(slurm_cluster, tmp_path))
    assert not result.success
    failure = _failure(result)
    assert failure.metadata["slurm_state"].value == "TIMEOUT"
    assert "ended TIMEOUT" in failure.description
    assert "DUE TO TIME LIMIT" in failure.description  # slurmstepd's line at the end of the log
    print(f"TIMEOUT after {time.monotonic() - t0:.1f} s")


def test_sbatch_rejects_gpus_the_cluster_lacks(slurm_cluster, tmp_path):
    script = "#!/bin/bash\n#SBATCH --gres=gpu:8\necho never\n"
    result, _ = _materialize(script, "mm-test-gpu", _client(slurm_cluster, tmp_path))
    assert not result.success
    failure = _failure(result)
    assert "sbatch rejected Slurm job 'mm-test-gpu'" in failure.description
    assert "Invalid generic resource (gres) specification" in failure.description
    assert slurm_cluster.run("squeue", "-h", "-n", "mm-test-gpu").stdout == ""


def test_missing_slurm_conf_fails_at_once(tmp_path):
    # Slurm commands retry a missing config for 60 s; the client checks first. (No cluster needed.)
    fake = {name: "/bin/true" for name in ("sbatch", "squeue", "scontrol", "scancel", "sacct")}
    client = SlurmPipesClient(shared_dir=tmp_path, slurm_conf=str(tmp_path / "nope.conf"), **fake)
    t0 = time.monotonic()
    result, _ = _materialize("#!/bin/bash\n", "mm-test-noconf", client)
    assert not result.success and time.monotonic() - t0 < 20
    assert "nope.conf' does not exist" in _failure(result).description


def test_lost_controller_fails_the_run_and_cancels_the_job(slurm_cluster, tmp_path):
    # squeue failing (slurmctld unreachable) past unreachable_timeout_s fails the step; the job it leaves
    # behind is cancelled, not orphaned.
    squeue = tmp_path / "squeue"
    squeue.write_text("#!/bin/sh\necho 'squeue: error: Socket timed out on send/recv operation' >&2\nexit 1\n")
    squeue.chmod(0o755)
    client = _client(slurm_cluster, tmp_path, squeue=str(squeue), unreachable_timeout_s=1, cancel_timeout_s=2)
    name = f"mm-test-lost-{uuid.uuid4().hex[:6]}"
    result, _ = _materialize("#!/bin/bash\nsleep 300\n", name, client)
    assert not result.success
    (event,) = result.get_step_failure_events()
    message = event.step_failure_data.error.message
    assert "squeue failed for 1 s" in message and "Socket timed out" in message
    (job_id,) = slurm_cluster.run("squeue", "-h", "-t", "all", "-n", name, "-o", "%i").stdout.split()
    assert parse_scontrol_job(slurm_cluster.run("scontrol", "-o", "show", "job", job_id).stdout).state == "CANCELLED"


_CANCEL_CHILD = """
import sys
import dagster as dg
from resources.slurm.client import SlurmPipesClient

shared, conf, name = sys.argv[1:4]
script = "#!/bin/bash\\necho started\\nsleep 300\\n"

@dg.asset
def trained(context: dg.AssetExecutionContext, slurm: SlurmPipesClient):
    return slurm.run(context=context, script=script, job_name=name).get_materialize_result()

client = SlurmPipesClient(shared_dir=shared, slurm_conf=conf, poll_interval_s=0.3)
result = dg.materialize([trained], resources={"slurm": client}, raise_on_error=False)
print("RUN", "success" if result.success else "failed", flush=True)
"""


@pytest.mark.timeout(120)
def test_terminating_the_run_cancels_the_job(slurm_cluster, tmp_path):
    name = f"mm-test-cancel-{uuid.uuid4().hex[:6]}"
    child = tmp_path / "child.py"
    child.write_text(_CANCEL_CHILD)
    proc = subprocess.Popen(
        [PY, str(child), str(tmp_path / "shared"), str(slurm_cluster.conf), name],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        job_id = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = slurm_cluster.run("squeue", "-h", "-n", name, "-o", "%i %T").stdout.split()
            if out and out[1] == "RUNNING":
                job_id = out[0]
                break
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.2)
        assert job_id, f"job {name} never ran"
        # What a run launcher does on terminate (and k8s on pod deletion): Dagster turns it into an interrupt.
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "RUN failed" in output, output
    assert f"cancelling Slurm job {job_id}" in output
    assert slurm_cluster.run("squeue", "-h", "-j", job_id).stdout.strip() == ""  # gone from the queue
    assert parse_scontrol_job(slurm_cluster.run("scontrol", "-o", "show", "job", job_id).stdout).state == "CANCELLED"
    sacct = slurm_cluster.run("sacct", "-c", "-j", job_id, "-n", "-P", "-o", "JobID,State,ExitCode").stdout
    assert parse_sacct(sacct, job_id).state == "CANCELLED"


def test_interrupt_during_submission_is_held_until_the_job_id_is_known():
    # sbatch killed half-way could leave a queued job nobody cancels: the client holds the signal instead.
    from mm_assets.interrupts import deferred_interrupts

    seen = []

    def handler(signo, _frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with deferred_interrupts():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
                seen.append("block finished")
        assert seen == ["block finished"]
        assert signal.getsignal(signal.SIGINT) is handler  # restored
    finally:
        signal.signal(signal.SIGINT, previous)

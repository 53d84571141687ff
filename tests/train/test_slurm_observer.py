"""The compute clients tell an observer (the metrics publisher) the job's nodes once it runs and every log line
as it streams: on the real local Slurm cluster (node list from `scontrol show hostnames`) and locally."""

import socket
import sys
import textwrap

import dagster as dg

from resources.compute import LocalPipesClient
from resources.slurm import SlurmPipesClient


class Recorder:
    def __init__(self):
        self.started, self.lines = [], []

    def job_started(self, job_id, nodes):
        self.started.append((job_id, nodes))

    def job_lines(self, lines):
        self.lines.extend(lines)


SCRIPT = textwrap.dedent("""\
    #!/bin/bash
    #SBATCH --time=5
    #SBATCH --ntasks=1
    for i in 1 2 3; do echo "line $i"; sleep 0.4; done
    """)


def test_slurm_client_reports_nodes_and_lines(slurm_cluster, tmp_path):
    recorder = Recorder()
    client = SlurmPipesClient(shared_dir=tmp_path / "shared", slurm_conf=str(slurm_cluster.conf), poll_interval_s=0.2)

    @dg.asset
    def watched(context: dg.AssetExecutionContext):
        return client.run(context=context, script=SCRIPT, job_name="mm-test-observer",
                          observer=recorder).get_materialize_result()

    assert dg.materialize([watched], instance=dg.DagsterInstance.ephemeral()).success
    ((job_id, nodes),) = recorder.started
    assert job_id.isdigit() and nodes == [socket.gethostname().split(".")[0]]
    assert [ln for ln in recorder.lines if ln.startswith("line ")] == ["line 1", "line 2", "line 3"]


def test_local_client_reports_its_host_and_lines(tmp_path):
    recorder = Recorder()

    @dg.asset
    def watched(context: dg.AssetExecutionContext):
        return LocalPipesClient(poll_interval_s=0.1).run(
            context=context, command=[sys.executable, "-c", "print('a'); print('b')"],
            log_path=tmp_path / "job.log", observer=recorder).get_materialize_result()

    assert dg.materialize([watched], instance=dg.DagsterInstance.ephemeral()).success
    assert recorder.started == [(None, [socket.gethostname()])] and recorder.lines == ["a", "b"]

"""Runs whose process died are marked failed: in Dagster OSS nothing else does it for the runs `mm` executes.

Dagster's run monitoring (dagster.yaml `run_monitoring`, done by the daemon) watches runs launched through a run
launcher: start and cancel timeouts, and worker health where the launcher can check it (DefaultRunLauncher
cannot). A run that `mm` executes in its own process (`execute_in_process`) and that is then SIGKILLed,
OOM-killed or loses its machine stays STARTED forever. So `mm` tags each run with the process executing it
(host, pid, process start), and at startup fails this host's unfinished runs whose process is gone.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import dagster as dg
from dagster._core.events import JobFailureData, RunFailureReason  # what the daemon records for a dead worker

HOST_TAG, PID_TAG, START_TAG = "mm/host", "mm/pid", "mm/process_start"
UNFINISHED = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def process_start(pid: int) -> str | None:
    """Identifies one process across pid reuse: boot id + start time in clock ticks (Linux), else None."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return f"{boot}:{stat[19]}"  # field 22 of proc(5); stat[0] is field 3


def owner_tags() -> dict[str, str]:
    """Tags naming the process that executes a run (this one)."""
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
    start = process_start(os.getpid())
    if start:
        tags[START_TAG] = start
    return tags


def owner_alive(tags: dict[str, str]) -> bool:
    """Whether the process named by `tags` (on this host) still runs; a reused pid does not count."""
    try:
        pid = int(tags[PID_TAG])
        os.kill(pid, 0)
    except (KeyError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        pass  # alive, owned by someone else
    start = tags.get(START_TAG)
    return start is None or process_start(pid) in (start, None)


def fail_orphaned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark this host's unfinished `mm` runs whose process is gone as failed (CANCELING ones as canceled)."""
    host = socket.gethostname()
    records = instance.get_run_records(filters=dg.RunsFilter(
        statuses=[*UNFINISHED, dg.DagsterRunStatus.CANCELING], tags={HOST_TAG: host}))
    marked = []
    for record in records:
        run = record.dagster_run
        if owner_alive(run.tags):
            continue
        message = (f"The process that executed this run (pid {run.tags.get(PID_TAG)} on {host}) is gone: killed "
                   "(SIGKILL, out of memory) or crashed without ending the run. Marked by mm; rerun to continue.")
        if run.status == dg.DagsterRunStatus.CANCELING:
            instance.report_run_canceled(run, message)
        else:
            instance.report_run_failed(run, message, JobFailureData(
                error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION))
        marked.append(run.run_id)
    return marked

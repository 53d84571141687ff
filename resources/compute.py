"""The local compute backend: a training (or any) command as a subprocess under Dagster Pipes.

The embedded default needs no cluster: the same rendered program and arguments that Slurm would start run
here, their output goes to the run's log file (what the training_log asset parses) and into the Dagster log,
and a terminated Dagster run terminates the process group.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Protocol

import dagster as dg
from dagster._core.definitions.resource_annotation import TreatAsResourceParam

from mm_assets.train.slurm_state import LogFollower, tail_lines


class JobObserver(Protocol):
    """Watches a job from outside it (e.g. the metrics publisher): its nodes once it runs, then its output lines
    as the client streams them. Both compute clients call it; it must not raise."""

    def job_started(self, job_id: str | None, nodes: list[str]) -> None: ...

    def job_lines(self, lines: list[str]) -> None: ...


class LocalPipesClient(dg.PipesClient, TreatAsResourceParam):
    """Runs `command` with the Pipes bootstrap in its environment; stdout+stderr appended to `log_path`."""

    def __init__(self, *, poll_interval_s: float = 1.0, log_tail_lines: int = 50, terminate_timeout_s: float = 30.0):
        self.poll_interval_s = poll_interval_s
        self.log_tail_lines = log_tail_lines
        self.terminate_timeout_s = terminate_timeout_s

    @classmethod
    def _is_dagster_maintained(cls) -> bool:
        return False

    def run(self, *, context: dg.AssetExecutionContext, command: list[str], log_path: Path,
            env: dict[str, str] | None = None, extras: dict[str, Any] | None = None,
            observer: JobObserver | None = None) -> dg.PipesClientCompletedInvocation:
        log_path = Path(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        folder = log_path.parent
        with dg.open_pipes_session(
            context=context,
            context_injector=dg.PipesFileContextInjector(str(folder / "pipes-context.json")),
            message_reader=dg.PipesFileMessageReader(str(folder / "pipes-messages.jsonl")),
            extras=extras,
        ) as session:
            full_env = {**os.environ, **(env or {}), **session.get_bootstrap_env_vars()}
            context.log.info(f"starting {command[:4]}... (log: {log_path})")
            with open(log_path, "ab") as out:
                proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=full_env,
                                        start_new_session=True)
            follower = LogFollower(log_path)
            if observer is not None:
                observer.job_started(None, [socket.gethostname()])
            try:
                while proc.poll() is None:
                    time.sleep(self.poll_interval_s)
                    self._stream(context, follower, observer)
            except BaseException:
                self._terminate(proc)
                context.log.warning(f"terminated the local job (pid {proc.pid})")
                raise
            self._stream(context, follower, observer, final=True)
            if proc.returncode != 0:
                tail = "\n".join(tail_lines(log_path, self.log_tail_lines))
                raise dg.Failure(
                    description=f"local job exited with code {proc.returncode}; last lines of {log_path}:\n{tail}",
                    metadata={"exit_code": proc.returncode, "log": dg.MetadataValue.path(str(log_path)),
                              "log_tail": dg.MetadataValue.md(f"```\n{tail}\n```")},
                )
        return dg.PipesClientCompletedInvocation(session, metadata={"exit_code": 0, "log": str(log_path)})

    @staticmethod
    def _stream(context: dg.AssetExecutionContext, follower: LogFollower, observer: JobObserver | None,
                final: bool = False) -> None:
        lines = follower.read(final=final)
        if lines:
            context.log.info("\n".join(lines))
            if observer is not None:
                observer.job_lines(lines)

    def _terminate(self, proc: subprocess.Popen) -> None:
        for sig, wait in ((signal.SIGTERM, self.terminate_timeout_s), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

"""The local compute backend: a job as a subprocess under Dagster Pipes.

The embedded default needs no cluster: the same rendered program and arguments that Slurm would start run
here, their output goes to the job's log file (what the training_log asset parses), into the Dagster log and
to `on_line` (`on_start` hears this host once the process runs), and a terminated Dagster run terminates the process group. The process gets the environment it
is given (resources/job_env.py) plus the Pipes bootstrap, nothing inherited from the Dagster process.
"""

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg

# Not exported from `dagster`; Dagster's own Pipes clients (PipesSubprocessClient) import it from here.
from dagster._core.definitions.resource_annotation import TreatAsResourceParam

from resources.logs import LogFollower, tail_lines


class LocalPipesClient(dg.PipesClient, TreatAsResourceParam):
    """Runs `command` with `env` + the Pipes bootstrap as its whole environment; stdout+stderr appended to
    `log_path`, the Pipes files in `pipes_dir`."""

    def __init__(self, *, poll_interval_s: float = 1.0, log_tail_lines: int = 50, terminate_timeout_s: float = 30.0):
        self.poll_interval_s = poll_interval_s
        self.log_tail_lines = log_tail_lines
        self.terminate_timeout_s = terminate_timeout_s

    @classmethod
    def _is_dagster_maintained(cls) -> bool:
        return False

    def run(self, *, context: dg.AssetExecutionContext, command: list[str], log_path: Path, pipes_dir: Path,
            env: dict[str, str], extras: dict[str, Any] | None = None,
            on_line: Callable[[str], None] | None = None,
            on_start: Callable[[str | None, list[str]], None] | None = None) -> dg.PipesClientCompletedInvocation:
        log_path, pipes_dir = Path(log_path), Path(pipes_dir)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        pipes_dir.mkdir(parents=True, exist_ok=True)
        with dg.open_pipes_session(
            context=context,
            context_injector=dg.PipesFileContextInjector(str(pipes_dir / "pipes-context.json")),
            message_reader=dg.PipesFileMessageReader(str(pipes_dir / "pipes-messages.jsonl")),
            extras=extras,
        ) as session:
            full_env = {**env, **session.get_bootstrap_env_vars()}
            context.log.info(f"starting {command[:4]}... (log: {log_path})")
            with open(log_path, "ab") as out:
                proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=full_env,
                                        start_new_session=True)
            follower = LogFollower(log_path)
            if on_start is not None:
                on_start(None, [socket.gethostname()])
            try:
                while proc.poll() is None:
                    time.sleep(self.poll_interval_s)
                    self._stream(context, follower, on_line)
            except BaseException:
                self._terminate(proc)
                context.log.warning(f"terminated the local job (pid {proc.pid})")
                raise
            self._stream(context, follower, on_line, final=True)
            if proc.returncode != 0:
                tail = "\n".join(tail_lines(log_path, self.log_tail_lines))
                raise dg.Failure(
                    description=f"local job exited with code {proc.returncode}; last lines of {log_path}:\n{tail}",
                    metadata={"exit_code": proc.returncode, "log": dg.MetadataValue.path(str(log_path)),
                              "log_tail": dg.MetadataValue.md(f"```\n{tail}\n```")},
                )
        return dg.PipesClientCompletedInvocation(session, metadata={"exit_code": 0,
                                                                    "log": dg.MetadataValue.path(str(log_path))})

    @staticmethod
    def _stream(context: dg.AssetExecutionContext, follower: LogFollower, on_line: Callable[[str], None] | None,
                final: bool = False) -> None:
        lines = follower.read(final=final)
        if on_line is not None:
            for line in lines:
                on_line(line)
        if lines:
            context.log.info("\n".join(lines))

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

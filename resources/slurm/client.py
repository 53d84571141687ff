"""Slurm as a Dagster Pipes client: submit a rendered sbatch script, follow the job, and collect what it
reported through `dagster_pipes` (DESIGN.md §6).

The Pipes context and messages travel through files in `shared_dir`, which the submitting host and the compute
nodes must both see (a shared filesystem). The job's environment is exactly what the caller passes
(resources/job_env.py), SLURM_CONF and the Pipes bootstrap: sbatch runs with only those variables and
`--export=<their names>`, so nothing else of the Dagster process reaches the job or Slurm's state directory.
The job is followed with squeue while queued, then scontrol (finished jobs stay for MinJobAge) or `sacct -c` /
`sacct` for its final state; its output file is streamed into the run's log (and to `on_line`; `on_start`
hears the job's hosts, from `scontrol show hostnames`, each time it starts running). A terminated
Dagster run cancels the job; any final state but COMPLETED raises `dg.Failure` with the state, exit code and
log tail. Parsing lives in state.py beside this module.

    @dg.asset
    def checkpoint(context, slurm: SlurmPipesClient):
        return slurm.run(context=context, script=text, job_name="exp-1").get_materialize_result()
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import dagster as dg

# Not exported from `dagster`; Dagster's own Pipes clients (PipesSubprocessClient) import it from here.
from dagster._core.definitions.resource_annotation import TreatAsResourceParam
from dagster_pipes import PipesExtras

from mm_assets.interrupts import deferred_interrupts
from mm_assets.storage.paths import atomic_write_text
from resources.logs import LogFollower, tail_lines
from resources.slurm.state import (
    SACCT_FIELDS,
    JobStatus,
    SlurmOutputError,
    expand_output_pattern,
    parse_hostnames,
    parse_sacct,
    parse_sbatch_parsable,
    parse_scontrol_fields,
    parse_scontrol_job,
    parse_squeue_state,
    sbatch_directives,
    sets_option,
)

_INTERRUPTS = (dg.DagsterExecutionInterruptedError, KeyboardInterrupt)
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class SlurmPipesClient(dg.PipesClient, TreatAsResourceParam):
    """Runs one sbatch script per call as a Slurm job speaking the Pipes protocol.

    Args:
        shared_dir: folder on a filesystem the cluster's nodes share; each call gets a folder under
            `<shared_dir>/<run id>/` with the script, the Pipes files and (unless the script sets --output)
            the job's log.
        poll_interval_s: seconds between state checks and log reads.
        log_tail_lines: lines of the job's log quoted in a failure.
        env: the job's environment (resources/job_env.py builds one); nothing else of this process is passed.
        slurm_conf: SLURM_CONF for the Slurm commands (a local cluster's config); None: Slurm's default.
        sbatch, squeue, scontrol, scancel, sacct: the commands, as names on PATH or paths.
        cancel_timeout_s: how long to wait for a cancelled job to leave the queue.
        unreachable_timeout_s: how long squeue may keep failing (slurmctld down) before the run fails.
        command_timeout_s: limit for each Slurm command.
    """

    def __init__(
        self,
        *,
        shared_dir: str | os.PathLike[str],
        poll_interval_s: float = 5.0,
        log_tail_lines: int = 50,
        env: Mapping[str, str] | None = None,
        slurm_conf: str | None = None,
        sbatch: str = "sbatch",
        squeue: str = "squeue",
        scontrol: str = "scontrol",
        scancel: str = "scancel",
        sacct: str = "sacct",
        cancel_timeout_s: float = 60.0,
        unreachable_timeout_s: float = 600.0,
        command_timeout_s: float = 60.0,
    ):
        if poll_interval_s <= 0:
            raise ValueError(f"poll_interval_s must be > 0, got {poll_interval_s}")
        if log_tail_lines < 0:
            raise ValueError(f"log_tail_lines must be >= 0, got {log_tail_lines}")
        self.shared_dir = Path(shared_dir)
        self.poll_interval_s = float(poll_interval_s)
        self.log_tail_lines = int(log_tail_lines)
        self.env = dict(env or {})
        self.slurm_conf = slurm_conf
        self.commands = {
            "sbatch": sbatch,
            "squeue": squeue,
            "scontrol": scontrol,
            "scancel": scancel,
            "sacct": sacct,
        }
        self.cancel_timeout_s = float(cancel_timeout_s)
        self.unreachable_timeout_s = float(unreachable_timeout_s)
        self.command_timeout_s = float(command_timeout_s)

    # --- Slurm commands -----------------------------------------------------------------------------------

    def _command_env(self) -> dict[str, str]:
        """squeue, scontrol, scancel, sacct: PATH and SLURM_CONF are all they need."""
        env = {"PATH": os.environ.get("PATH", os.defpath)}
        if self.slurm_conf:
            env["SLURM_CONF"] = self.slurm_conf
        return env

    def _exe(self, name: str) -> str:
        exe = self.commands[name]
        found = exe if os.sep in exe else shutil.which(exe)
        if not found or not os.access(found, os.X_OK):
            raise dg.Failure(
                f"Slurm command {name!r} not found ({exe!r}): install slurm-client or set "
                f"SlurmPipesClient({name}=<path>)"
            )
        return found

    def _slurm(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run a Slurm command (an argument list, never a shell string) and capture its output."""
        try:
            return subprocess.run(
                [self._exe(name), *args],
                env=dict(env) if env is not None else self._command_env(),
                capture_output=True,
                text=True,
                timeout=self.command_timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(e.cmd, 124, "", f"{name} timed out after {e.timeout:.0f} s")

    def _preflight(self) -> None:
        # Slurm commands retry a missing config file for 60 s before failing: say so at once instead.
        if self.slurm_conf and not Path(self.slurm_conf).is_file():
            raise dg.Failure(
                f"slurm_conf {self.slurm_conf!r} does not exist; start the local cluster with "
                "scripts/slurm/start.sh or fix SlurmPipesClient(slurm_conf=...)"
            )
        for name in self.commands:
            self._exe(name)

    # --- run ----------------------------------------------------------------------------------------------

    def run(  # narrower than PipesClient.run: script and job_name are required
        self,
        *,
        context: dg.OpExecutionContext | dg.AssetExecutionContext,
        script: str,
        job_name: str,
        extras: PipesExtras | None = None,
        env: Mapping[str, str] | None = None,
        on_line: Callable[[str], None] | None = None,
        on_start: Callable[[str | None, list[str]], None] | None = None,
    ) -> dg.PipesClientCompletedInvocation:
        """Submit `script` (the rendered sbatch script) as `job_name`, wait for it, return its Pipes results;
        `on_line` hears each line of the job's output as it streams, `on_start` the job id and its hosts
        whenever it starts running.

        Raises dg.Failure when sbatch rejects the job (with Slurm's message) or the job ends in any state
        but COMPLETED (with state, exit code and log tail). A terminated run cancels the job, then re-raises.
        """
        if not job_name or any(c in job_name for c in "\n\r\0"):
            raise dg.Failure(f"job_name {job_name!r} must be a non-empty single line")
        self._preflight()
        job_dir = self._new_job_dir(context.run.run_id, job_name)
        script_path = job_dir / "job.sbatch"
        atomic_write_text(script_path, script)
        default_output = None if sets_option(sbatch_directives(script), "--output", "-o") else job_dir / "slurm-%j.out"

        with dg.open_pipes_session(
            context=context,
            context_injector=dg.PipesFileContextInjector(str(job_dir / "pipes-context.json")),
            message_reader=dg.PipesFileMessageReader(str(job_dir / "pipes-messages.jsonl"), cleanup_file=False),
            extras=extras,
        ) as session:
            job_env = {
                **self.env,
                **(env or {}),
                **({"SLURM_CONF": self.slurm_conf} if self.slurm_conf else {}),
                **session.get_bootstrap_env_vars(),
            }
            job_id: str | None = None
            try:
                # A terminate arriving while sbatch runs would kill sbatch after it queued the job, leaving a
                # job nobody cancels: hold the signal until the job id is known.
                with deferred_interrupts():
                    job_id = self._submit(context, script_path, job_name, default_output, job_env)
                status, logs = self._follow(context, job_id, job_name, default_output, on_line, on_start)
            except BaseException as e:
                # Interrupted (the run was terminated) or broken: no job may outlive its Dagster step.
                if job_id is not None:
                    why = "Run interrupted" if isinstance(e, _INTERRUPTS) else f"{type(e).__name__} while following"
                    self._cancel(context, job_id, why)
                raise

        metadata = {
            "slurm_job_id": dg.MetadataValue.int(int(job_id)),
            "slurm_state": status.state,
            "slurm_exit_code": str(status.exit_code) if status.exit_code else "unknown",
            "log": dg.MetadataValue.path(str(logs[0].path)),
            "slurm_job_dir": dg.MetadataValue.path(str(job_dir)),
        }
        if not status.succeeded:
            raise self._failure(job_id, job_name, status, logs, metadata)
        return dg.PipesClientCompletedInvocation(session, metadata=metadata)

    def _new_job_dir(self, run_id: str, job_name: str) -> Path:
        name = _UNSAFE_NAME.sub("_", job_name)[:64]
        job_dir = self.shared_dir / run_id / f"{name}-{uuid.uuid4().hex[:8]}"
        job_dir.mkdir(parents=True)
        return job_dir

    def _submit(
        self,
        context: dg.OpExecutionContext | dg.AssetExecutionContext,
        script_path: Path,
        job_name: str,
        default_output: Path | None,
        job_env: Mapping[str, str],
    ) -> str:
        # Options on the command line override the script's #SBATCH lines: only the name (and the log
        # location when the script chose none) are set here.
        # Exactly these variables (their values come from sbatch's own environment, which is job_env), plus
        # the SLURM_* ones Slurm always sets. Never ALL: that would hand over the Dagster process's secrets.
        args = ["--parsable", f"--export={','.join(sorted(job_env))}", f"--job-name={job_name}"]
        if default_output is not None:
            args.append(f"--output={default_output}")
        proc = self._slurm("sbatch", *args, str(script_path), env=job_env)
        if proc.returncode != 0:
            message = (proc.stderr or proc.stdout).strip() or f"exit status {proc.returncode}"
            raise dg.Failure(
                description=f"sbatch rejected Slurm job {job_name!r}: {message}",
                metadata={
                    "sbatch_stderr": dg.MetadataValue.text(message),
                    "sbatch_script": dg.MetadataValue.path(str(script_path)),
                },
            )
        try:
            job_id = parse_sbatch_parsable(proc.stdout)
        except SlurmOutputError as e:
            raise dg.Failure(f"could not read the job id for {job_name!r}: {e}") from e
        context.log.info(f"Submitted Slurm job {job_id} ({job_name}) from {script_path}")
        return job_id

    def _log_files(self, job_id: str, job_name: str, default_output: Path | None) -> list[LogFollower]:
        """The job's stdout (and stderr, when it goes elsewhere) as scontrol resolved them (%j etc. filled)."""
        status = self._scontrol(job_id)
        stdout = status.stdout if status and status.stdout else None
        if stdout is None:
            stdout = expand_output_pattern(str(default_output or f"slurm-{job_id}.out"), job_id, job_name)
        paths = [stdout]
        if status and status.stderr and status.stderr != stdout:
            paths.append(status.stderr)
        return [LogFollower(p) for p in paths]

    def _follow(
        self,
        context: dg.OpExecutionContext | dg.AssetExecutionContext,
        job_id: str,
        job_name: str,
        default_output: Path | None,
        on_line: Callable[[str], None] | None,
        on_start: Callable[[str | None, list[str]], None] | None = None,
    ) -> tuple[JobStatus, list[LogFollower]]:
        """Poll until the job leaves the queue, streaming its log; return its final status."""
        logs = self._log_files(job_id, job_name, default_output)
        context.log.info(f"Slurm job {job_id} log: {', '.join(str(f.path) for f in logs)}")
        last: tuple[str, str | None] | None = None
        failing_since: float | None = None
        while True:
            proc = self._slurm("squeue", "-j", job_id, "-h", "-o", "%T|%r")
            if proc.returncode != 0 and "Invalid job id" not in proc.stderr:
                # slurmctld unreachable or busy: keep trying for a while; the job itself is unaffected.
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                    context.log.warning(f"squeue failed for Slurm job {job_id}, retrying: {proc.stderr.strip()}")
                elif now - failing_since > self.unreachable_timeout_s:
                    raise dg.Failure(
                        f"squeue failed for {self.unreachable_timeout_s:.0f} s while following Slurm job "
                        f"{job_id}: {proc.stderr.strip()}. Check slurmctld (`scontrol ping`)."
                    )
            else:
                failing_since = None
                queued = parse_squeue_state(proc.stdout) if proc.returncode == 0 else None
                if queued is None:
                    break
                if queued != last:
                    state, reason = queued
                    context.log.info(f"Slurm job {job_id} is {state}" + (f" ({reason})" if reason else ""))
                    if on_start is not None and state == "RUNNING" and (last is None or last[0] != "RUNNING"):
                        on_start(job_id, self._job_nodes(context, job_id))
                    last = queued
            self._forward_logs(context, job_id, logs, on_line)
            time.sleep(self.poll_interval_s)
        self._forward_logs(context, job_id, logs, on_line, final=True)
        status = self._final_status(job_id)
        context.log.info(f"Slurm job {job_id} ended {status.state}, exit code {status.exit_code or 'unknown'}")
        return status, logs

    def _forward_logs(
        self,
        context: dg.OpExecutionContext | dg.AssetExecutionContext,
        job_id: str,
        logs: list[LogFollower],
        on_line: Callable[[str], None] | None,
        final: bool = False,
    ) -> None:
        for i, follower in enumerate(logs):
            lines = follower.read(final=final)
            if on_line is not None and i == 0:  # the job's stdout: Megatron's log
                for line in lines:
                    on_line(line)
            label = f"slurm {job_id}" + (" stderr" if i else "")
            # One event per poll, not per line: a training log has many lines and each event is stored.
            for start in range(0, len(lines), 500):
                context.log.info("\n".join(f"[{label}] {ln}" for ln in lines[start : start + 500]))

    def _job_nodes(self, context: dg.OpExecutionContext | dg.AssetExecutionContext, job_id: str) -> list[str]:
        """The running job's hosts: its NodeList expanded by `scontrol show hostnames` ([] when unknown)."""
        proc = self._slurm("scontrol", "-o", "show", "job", job_id)
        nodelist = parse_scontrol_fields(proc.stdout).get("NodeList", "") if proc.returncode == 0 else ""
        if nodelist and nodelist != "(null)":
            hosts = self._slurm("scontrol", "show", "hostnames", nodelist)
            try:
                if hosts.returncode == 0:
                    return parse_hostnames(hosts.stdout)
            except SlurmOutputError as err:
                context.log.warning(f"Slurm job {job_id}: {err}")
        context.log.warning(f"Slurm job {job_id}: could not read its node list ({nodelist or proc.stderr.strip()})")
        return []

    def _scontrol(self, job_id: str) -> JobStatus | None:
        proc = self._slurm("scontrol", "-o", "show", "job", job_id)
        if proc.returncode != 0:
            return None
        try:
            return parse_scontrol_job(proc.stdout)
        except SlurmOutputError:
            return None

    def _final_status(self, job_id: str) -> JobStatus:
        """scontrol while slurmctld keeps the job (MinJobAge), else the jobcomp file (`sacct -c`) or slurmdbd."""
        status = self._scontrol(job_id)
        if status is not None and not status.active:
            return status
        for args in (("-c",), ()):
            proc = self._slurm("sacct", *args, "-j", job_id, "-n", "-P", "-o", ",".join(SACCT_FIELDS))
            found = parse_sacct(proc.stdout, job_id) if proc.returncode == 0 else None
            if found is not None:
                return found
        return JobStatus(job_id=job_id, state=status.state if status else "UNKNOWN", source="none")

    def _cancel(
        self, context: dg.OpExecutionContext | dg.AssetExecutionContext, job_id: str, why: str
    ) -> None:
        """scancel the job and wait (bounded) until it has left the queue; a second interrupt stops the wait."""
        context.log.warning(f"{why}: cancelling Slurm job {job_id}")
        proc = self._slurm("scancel", job_id)
        if proc.returncode != 0:
            context.log.error(f"scancel {job_id} failed: {proc.stderr.strip()}")
            return
        deadline = time.monotonic() + self.cancel_timeout_s
        try:
            while time.monotonic() < deadline:
                if not self._queued(job_id):
                    status = self._final_status(job_id)
                    context.log.warning(f"Slurm job {job_id} left the queue: {status.state}")
                    return
                time.sleep(min(self.poll_interval_s, 0.5))
        except _INTERRUPTS:
            return
        context.log.error(f"Slurm job {job_id} was still queued {self.cancel_timeout_s:.0f} s after scancel")

    def _queued(self, job_id: str) -> bool:
        """Whether squeue still lists the job (a failing squeue counts as listed)."""
        proc = self._slurm("squeue", "-j", job_id, "-h", "-o", "%T|%r")
        if proc.returncode != 0:
            return "Invalid job id" not in proc.stderr
        return parse_squeue_state(proc.stdout) is not None

    def _failure(
        self,
        job_id: str,
        job_name: str,
        status: JobStatus,
        logs: list[LogFollower],
        metadata: dict,
    ) -> dg.Failure:
        exit_code = str(status.exit_code) if status.exit_code else "unknown"
        tails = []
        for f in logs:
            lines = tail_lines(f.path, self.log_tail_lines)
            tails.append(f"--- last {len(lines)} lines of {f.path} ---\n" + "\n".join(lines))
        tail = "\n".join(tails)
        reason = f", reason {status.reason}" if status.reason else ""
        return dg.Failure(
            description=f"Slurm job {job_id} ({job_name}) ended {status.state}, exit code {exit_code}{reason}.\n{tail}",
            metadata={
                **metadata,
                "slurm_reason": status.reason or "",
                "log_tail": dg.MetadataValue.md(f"```\n{tail}\n```"),
            },
        )

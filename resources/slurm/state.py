"""Slurm job state without a cluster: parse what sbatch, squeue, scontrol and `sacct -c` print, and classify
states. client.py runs the commands; this module reads them.

Slurm quirks these helpers absorb (seen on Slurm 22.05, DESIGN.md §9):
- `squeue -j ID` prints nothing once the job has left the queue, and fails ("Invalid job id specified") once
  slurmctld has purged it (MinJobAge after the end).
- `scontrol show job` keeps finished jobs for MinJobAge; its ExitCode is `code:signal` ("0:15" for a job killed
  at its time limit), while `sacct -c` (the jobcomp file) records "0:0" for the same job.
- sacct's State can carry words after the state ("CANCELLED by 0").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Jobs in these states have not finished: keep polling.
ACTIVE_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "STOPPED",
        "SIGNALING",
        "STAGE_OUT",
        "RESIZING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESV_DEL_HOLD",
        "SPECIAL_EXIT",
    }
)
SUCCESS_STATE = "COMPLETED"
class SlurmOutputError(ValueError):
    """A Slurm command printed something these parsers do not understand (the text is in the message)."""


def normalize_state(raw: str) -> str:
    """`"CANCELLED by 0"` → `"CANCELLED"`, `"completed+"` → `"COMPLETED"`: the bare upper-case state name."""
    words = raw.strip().split()
    if not words:
        raise SlurmOutputError(f"empty Slurm job state in {raw!r}")
    return words[0].rstrip("+").upper()


def is_active(state: str) -> bool:
    """The job may still change state (pending, running, completing, held…)."""
    return normalize_state(state) in ACTIVE_STATES


def is_success(state: str) -> bool:
    return normalize_state(state) == SUCCESS_STATE


@dataclass(frozen=True)
class ExitCode:
    """Slurm's `code:signal` pair: "3:0" is `exit 3`, "0:15" a job ended by SIGTERM."""

    code: int
    signal: int

    @classmethod
    def parse(cls, text: str) -> ExitCode:
        m = re.fullmatch(r"\s*(\d+):(\d+)\s*", text)
        if not m:
            raise SlurmOutputError(f"exit code {text!r} is not Slurm's 'code:signal'")
        return cls(int(m.group(1)), int(m.group(2)))

    def __str__(self) -> str:
        return f"{self.code}:{self.signal}"


@dataclass(frozen=True)
class JobStatus:
    """One job as scontrol or `sacct -c` reports it. `source` names the command that said so."""

    job_id: str
    state: str
    exit_code: ExitCode | None = None
    reason: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    source: str = ""

    @property
    def active(self) -> bool:
        return is_active(self.state)

    @property
    def succeeded(self) -> bool:
        return is_success(self.state)


def parse_sbatch_parsable(stdout: str) -> str:
    """The job id from `sbatch --parsable`: `"123"` or `"123;cluster"` → `"123"`."""
    line = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    job_id = line.split(";", 1)[0].strip()
    if not job_id.isdigit():
        raise SlurmOutputError(f"sbatch --parsable printed {stdout!r}, expected a job id")
    return job_id


def parse_squeue_state(stdout: str) -> tuple[str, str | None] | None:
    """(state, reason) from `squeue -j ID -h -o '%T|%r'`; None when the job is no longer queued (empty output).

    A reason of "None" (Slurm's word for no reason) becomes None.
    """
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    if not lines:
        return None
    state, _, reason = lines[0].partition("|")
    reason = reason.strip()
    return normalize_state(state), (reason if reason and reason != "None" else None)


# `Key=` at the start of a word: keys hold letters, digits and `_ / : . -` ("AllocNode:Sid", "CPUs/Task").
_SCONTROL_KEY = re.compile(r"(?:(?<=\s)|^)([A-Za-z][\w/:.\-]*)=")


def parse_scontrol_fields(text: str) -> dict[str, str]:
    """`Key=Value` pairs of one `scontrol show job` record (one-line `-o` or the multi-line layout).

    A value runs to the next ` Key=`, so values with spaces (a Reason, a path) survive; a value that itself
    contains ` Word=` would be split there.
    """
    matches = list(_SCONTROL_KEY.finditer(text))
    fields: dict[str, str] = {}
    for m, nxt in zip(matches, [*matches[1:], None]):
        end = nxt.start() if nxt else len(text)
        fields.setdefault(m.group(1), text[m.end() : end].strip())
    return fields


def parse_scontrol_job(text: str) -> JobStatus:
    """The first job record of `scontrol -o show job ID` (one line) or `scontrol show job ID` (indented lines)."""
    record: list[str] = []
    for line in text.splitlines():
        if not line.strip() or (record and not line[:1].isspace()):
            if record:
                break
            continue
        record.append(line)
    fields = parse_scontrol_fields(" ".join(record))
    if "JobId" not in fields or "JobState" not in fields:
        raise SlurmOutputError(f"scontrol printed no JobId/JobState: {text.strip()[:300]!r}")
    exit_code = ExitCode.parse(fields["ExitCode"]) if fields.get("ExitCode") else None
    reason = fields.get("Reason")
    return JobStatus(
        job_id=fields["JobId"],
        state=normalize_state(fields["JobState"]),
        exit_code=exit_code,
        reason=reason if reason and reason != "None" else None,
        stdout=fields.get("StdOut") or None,
        stderr=fields.get("StdErr") or None,
        source="scontrol",
    )


HOSTNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")


def parse_hostnames(stdout: str) -> list[str]:
    """`scontrol show hostnames NODELIST`: one host a line. A line that is not a host name is refused."""
    hosts = [line.strip() for line in stdout.splitlines() if line.strip()]
    bad = [h for h in hosts if not HOSTNAME.match(h)]
    if bad:
        raise SlurmOutputError(f"scontrol show hostnames printed {bad[0]!r}, which is not a host name")
    return hosts


SACCT_FIELDS = ("JobID", "State", "ExitCode")


def parse_sacct(stdout: str, job_id: str) -> JobStatus | None:
    """The job's line from `sacct [-c] -j ID -n -P -o JobID,State,ExitCode`; None when it is not there.

    Steps ("123.batch") are skipped: the allocation's line is the job's state.
    """
    for line in stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 3 or parts[0] != job_id:
            continue
        exit_code = ExitCode.parse(parts[2]) if parts[2].strip() else None
        return JobStatus(job_id=job_id, state=normalize_state(parts[1]), exit_code=exit_code, source="sacct")
    return None


def expand_output_pattern(pattern: str, job_id: str, job_name: str) -> str:
    """The file an `--output` pattern names for one (non-array) job: %j/%A job id, %x name, %% a percent."""
    table = {"j": job_id, "A": job_id, "x": job_name, "%": "%"}
    return re.sub(r"%(\d*)([%jAx])", lambda m: table[m.group(2)].zfill(int(m.group(1) or 0)), pattern)


def sbatch_directives(script: str) -> list[str]:
    """The `#SBATCH` option words, read as sbatch reads them: up to the first line that is a command.

    `#SBATCH --time=1 # note` gives ["--time=1"]; a `#SBATCH` after the first command is ignored by sbatch,
    and here.
    """
    words: list[str] = []
    for line in script.splitlines()[1 if script.startswith("#!") else 0 :]:
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not stripped.startswith("#SBATCH")):
            continue
        if not stripped.startswith("#SBATCH"):
            break
        for word in stripped[len("#SBATCH") :].split():
            if word.startswith("#"):
                break
            words.append(word)
    return words


def sets_option(directives: list[str], long: str, short: str | None = None) -> bool:
    """Whether `--long[=v]` (or `-s`) appears among sbatch option words."""
    return any(
        w == long or w.startswith(long + "=") or (short is not None and w.startswith(short))
        for w in directives
    )

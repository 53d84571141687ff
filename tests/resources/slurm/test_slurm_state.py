"""Parsing and classification of Slurm's output (resources/slurm/state.py), on text captured from the
local Slurm 22.05 cluster; no cluster needed."""

import pytest

from resources.slurm.state import (
    ExitCode,
    SlurmOutputError,
    expand_output_pattern,
    is_active,
    is_success,
    normalize_state,
    parse_hostnames,
    parse_sacct,
    parse_sbatch_parsable,
    parse_scontrol_fields,
    parse_scontrol_job,
    parse_squeue_state,
    sbatch_directives,
    sets_option,
)

SCONTROL_ONELINE_FAILED = (
    "JobId=1 JobName=fail.sh UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901759 Nice=0 "
    "Account=(null) QOS=(null) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) Requeue=1 Restarts=0 "
    "BatchFlag=1 Reboot=0 ExitCode=3:0 RunTime=00:00:00 TimeLimit=UNLIMITED TimeMin=N/A "
    "SubmitTime=2026-11-29T04:12:21 EndTime=2026-11-29T04:12:21 Deadline=N/A Partition=debug "
    "AllocNode:Sid=localhost:14024 ReqNodeList=(null) NodeList=vm BatchHost=vm NumNodes=1 NumCPUs=1 NumTasks=1 "
    "CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* "
    "Command=/tmp/exp/fail.sh WorkDir=/tmp/exp StdErr=/tmp/exp/slurm-1.out StdIn=/dev/null "
    "StdOut=/tmp/exp/slurm-1.out Power= \n"
)

SCONTROL_MULTILINE_RUNNING = """\
JobId=26 JobName=long job
   UserId=root(0) GroupId=root(0) MCS_label=N/A
   JobState=RUNNING Reason=None Dependency=(null)
   Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0
   RunTime=00:00:01 TimeLimit=UNLIMITED TimeMin=N/A
   StartTime=2026-11-29T04:18:01 EndTime=Unknown Deadline=N/A
   Command=/tmp/exp/long.sh
   WorkDir=/tmp/exp
   StdErr=/tmp/exp/o-26.err
   StdIn=/dev/null
   StdOut=/tmp/exp/o-26.out
   Power=
"""


def test_scontrol_one_line_record():
    s = parse_scontrol_job(SCONTROL_ONELINE_FAILED)
    assert (s.job_id, s.state, str(s.exit_code), s.reason) == ("1", "FAILED", "3:0", "NonZeroExitCode")
    assert s.stdout == s.stderr == "/tmp/exp/slurm-1.out"
    assert not s.active and not s.succeeded


def test_scontrol_multi_line_record_keeps_values_with_spaces():
    fields = parse_scontrol_fields(SCONTROL_MULTILINE_RUNNING)
    assert fields["JobName"] == "long job"
    assert fields["Power"] == ""
    s = parse_scontrol_job(SCONTROL_MULTILINE_RUNNING)
    assert s.state == "RUNNING" and s.reason is None and s.active
    assert (s.stdout, s.stderr) == ("/tmp/exp/o-26.out", "/tmp/exp/o-26.err")


def test_scontrol_reads_the_first_of_several_records():
    second = SCONTROL_ONELINE_FAILED.replace("JobId=1 ", "JobId=2 ")
    assert parse_scontrol_job(SCONTROL_ONELINE_FAILED + second).job_id == "1"
    assert parse_scontrol_job("\n" + SCONTROL_MULTILINE_RUNNING + "\n" + SCONTROL_MULTILINE_RUNNING).job_id == "26"


def test_scontrol_keys_with_punctuation_are_keys():
    fields = parse_scontrol_fields(SCONTROL_ONELINE_FAILED)
    assert fields["AllocNode:Sid"] == "localhost:14024"
    assert fields["CPUs/Task"] == "1"
    assert fields["TRES"] == "cpu=1,node=1,billing=1"  # `=` inside a value is not a new key


def test_scontrol_without_a_job_is_an_error():
    with pytest.raises(SlurmOutputError, match="no JobId/JobState"):
        parse_scontrol_job("slurm_load_jobs error: Invalid job id specified\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("RUNNING|None\n", ("RUNNING", None)),
        ("PENDING|BeginTime\n", ("PENDING", "BeginTime")),
        ("COMPLETING|NonZeroExitCode\n", ("COMPLETING", "NonZeroExitCode")),
        ("", None),  # left the queue
        ("\n", None),
    ],
)
def test_squeue_state(text, expected):
    assert parse_squeue_state(text) == expected


def test_sacct_jobcomp_lines():
    text = "23|CANCELLED|0:0\n2|TIMEOUT|0:0\n1|FAILED|3:0\n"
    s = parse_sacct(text, "1")
    assert (s.state, str(s.exit_code), s.source) == ("FAILED", "3:0", "sacct")
    assert parse_sacct(text, "99") is None


def test_sacct_skips_steps_and_reads_cancelled_by():
    text = "7|CANCELLED by 0|0:15\n7.batch|CANCELLED|0:15\n"
    assert parse_sacct(text, "7").state == "CANCELLED"


@pytest.mark.parametrize(
    ("stdout", "job_id"),
    [("42\n", "42"), ("42;mm-local\n", "42"), ("sbatch: warning: x\n43\n", "43")],
)
def test_sbatch_parsable(stdout, job_id):
    assert parse_sbatch_parsable(stdout) == job_id


@pytest.mark.parametrize("stdout", ["", "Submitted batch job 42\n"])
def test_sbatch_parsable_rejects_other_output(stdout):
    with pytest.raises(SlurmOutputError, match="expected a job id"):
        parse_sbatch_parsable(stdout)


@pytest.mark.parametrize(
    ("state", "active", "success"),
    [
        ("PENDING", True, False),
        ("RUNNING", True, False),
        ("COMPLETING", True, False),
        ("REQUEUE_HOLD", True, False),
        ("COMPLETED", False, True),
        ("FAILED", False, False),
        ("TIMEOUT", False, False),
        ("CANCELLED by 0", False, False),
        ("OUT_OF_MEMORY", False, False),
        ("NODE_FAIL", False, False),
        ("PREEMPTED", False, False),
        ("BOOT_FAIL", False, False),
        ("DEADLINE", False, False),
        ("SOMETHING_NEW", False, False),  # an unknown final state never counts as success
    ],
)
def test_state_classes(state, active, success):
    assert is_active(state) is active
    assert is_success(state) is success


def test_normalize_state():
    assert normalize_state(" cancelled by 1000 ") == "CANCELLED"
    assert normalize_state("COMPLETED+") == "COMPLETED"
    with pytest.raises(SlurmOutputError):
        normalize_state("  ")


def test_exit_code():
    assert ExitCode.parse("3:0") == ExitCode(3, 0)
    assert str(ExitCode.parse("0:15")) == "0:15"
    with pytest.raises(SlurmOutputError, match="code:signal"):
        ExitCode.parse("3")


def test_sbatch_directives_stop_at_the_first_command():
    script = (
        "#!/bin/bash\n"
        "# a comment\n"
        "#SBATCH --time=1   # one minute\n"
        "\n"
        "#SBATCH -o /logs/%j.out --nodes=2\n"
        "echo hi\n"
        "#SBATCH --error=/ignored\n"
    )
    words = sbatch_directives(script)
    assert words == ["--time=1", "-o", "/logs/%j.out", "--nodes=2"]
    assert sets_option(words, "--output", "-o")
    assert not sets_option(words, "--error", "-e")
    assert sets_option(["--output=/x"], "--output", "-o")
    assert not sets_option(["--open-mode=append"], "--output", "-o")


def test_expand_output_pattern():
    assert expand_output_pattern("/l/slurm-%j.out", "12", "n") == "/l/slurm-12.out"
    assert expand_output_pattern("/l/%x-%5j-%%.out", "12", "train") == "/l/train-00012-%.out"


def test_hostnames_of_a_node_list():
    """`scontrol show hostnames dgx-[01-02]` (the nodes a job's file_sd targets name); anything else is refused."""
    assert parse_hostnames("dgx-01\ndgx-02\n") == ["dgx-01", "dgx-02"]
    with pytest.raises(SlurmOutputError, match="not a host name"):
        parse_hostnames("dgx-01\nbad host:9400\n")

"""An experiment trained again with the CPU trainer on the local backend: every job's log makes training_log
(a rerun that is already at train_iters logs nothing and keeps the history, a resumed job replaces what it
re-ran), the checks and the experiment record stay green, and each Megatron line reaches the Dagster log once."""

import json
import re
from collections import Counter

import dagster as dg
import pytest

from mm_assets.definitions import build_definitions
from mm_assets.etl.catalog import run_query
from mm_assets.partitions import experiments
from trainproject import asset_metadata, train_green, write_experiment, write_project

pytestmark = pytest.mark.slow
EXPERIMENT = "exp-rerun"
TRAINING_LINE = re.compile(r"iteration\s+(\d+)/\s*(\d+) \|")
FIRST_JOB = [1, *range(5, 41, 5)]  # Megatron logs a job's first iteration and every --log-interval (5)


def _logged_iterations(instance, run_id: str) -> Counter:
    """How often each training line of the job's log appears in the run's Dagster log."""
    messages = [entry.user_message for entry in instance.all_logs(run_id)]
    return Counter(int(m.group(1)) for text in messages for m in TRAINING_LINE.finditer(text))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three materializations of one experiment: 40 iterations, the same again (a no-op), then 60."""
    config = write_project(tmp_path_factory.mktemp("rerun") / "project")
    write_experiment(config, EXPERIMENT)
    defs = build_definitions(config)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(experiments.name, [EXPERIMENT])
        first, again = train_green(defs, instance, EXPERIMENT), train_green(defs, instance, EXPERIMENT)
        write_experiment(config, EXPERIMENT, schedule={"iterations": {"train_iters": 60, "lr_warmup_iters": 5}})
        longer = train_green(defs, instance, EXPERIMENT)
        assert defs.resolve_job_def("refresh_records").execute_in_process(instance=instance).success
        yield {"config": config, "first": first, "again": again, "longer": longer,
               "logged": _logged_iterations(instance, first.run_id)}


def test_a_rerun_at_train_iters_keeps_the_history(runs):
    first, again = asset_metadata(runs["first"], "training_log"), asset_metadata(runs["again"], "training_log")
    assert asset_metadata(runs["again"], "checkpoint")["resumed_from_iteration"] == 40
    assert (first["records"], first["last_iteration"], first["attempts"]) == (len(FIRST_JOB), 40, 1)
    assert (again["records"], again["last_iteration"], again["attempts"]) == (len(FIRST_JOB), 40, 2)
    assert again["first_loss"] == first["first_loss"] and again["last_loss"] == first["last_loss"]


def test_a_resumed_run_joins_its_jobs_logs(runs):
    log = asset_metadata(runs["longer"], "training_log")
    assert asset_metadata(runs["longer"], "checkpoint")["resumed_from_iteration"] == 40
    resumed_job = [41, *range(45, 61, 5)]
    assert (log["records"], log["last_iteration"], log["attempts"]) == (len(FIRST_JOB) + len(resumed_job), 60, 3)
    assert log["first_loss"] == asset_metadata(runs["first"], "training_log")["first_loss"]  # from the first job
    run_dir = runs["config"].parents[1] / "data" / "runs" / EXPERIMENT
    records = [json.loads(line) for line in (run_dir / "training_log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == FIRST_JOB + resumed_job
    attempts = json.loads((run_dir / "attempts.json").read_text())
    assert [a["resumed_from_iteration"] for a in attempts] == [None, 40, 40]
    assert all(a["outcome"] == "ok" and a["log"].startswith(f"runs/{EXPERIMENT}/logs/") for a in attempts)


def test_the_experiment_record_stays_green(runs):
    db = runs["config"].parents[1] / "data" / "catalog" / "metadata.duckdb"
    cols, rows = run_query(db, "SELECT status, iterations, result_summary FROM experiment_records")
    (row,) = [dict(zip(cols, r)) for r in rows]
    assert row["status"] == "ok" and row["iterations"] == 60 and "over 60 iterations" in row["result_summary"]


def test_each_megatron_line_reaches_the_dagster_log_once(runs):
    assert runs["logged"] == Counter(FIRST_JOB)

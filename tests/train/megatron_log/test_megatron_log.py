"""Megatron's text log → the reference's JSONL (§B.4): real-format lines, odd lines, streaming, the writer.

The literal lines below are what Megatron-LM prints (training.py `training_log`, `evaluate_and_print_results`,
utils `report_memory`, checkpointing.py `save_checkpoint`; main at d98e8a64 and an older release without
microseconds or throughput), not output of our own formatter: the formatter is checked against them.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone

import pytest

from mm_assets.train.megatron_log.events import (
    JSONL_FIELDS,
    CheckpointSaved,
    MalformedLine,
    MemoryReport,
    TrainingRecord,
    ValidationRecord,
)
from mm_assets.train.megatron_log.format import format_saving_checkpoint, format_training_line, format_validation_block
from mm_assets.train.megatron_log.parse import parse_line
from mm_assets.train.megatron_log.stream import MegatronLogParser, jsonl_text, merge_attempts, parse_log
from resources.logs import LogFollower

SEQ = 8192

# Megatron-LM main, --log-throughput.
MAIN = (
    " [2026-11-29 04:00:00.250000] iteration      100/    1000 | consumed samples:         3200 |"
    " elapsed time per iteration (ms): 81.2 | throughput per GPU (TFLOP/s/GPU): 412.7 |"
    " learning rate: 9.500000E-05 | global batch size:    32 | lm loss: 2.854000E+00 | loss scale: 1.0 |"
    " grad norm: 0.980 | number of skipped iterations:   0 | number of nan iterations:   0 |"
)
# An older release: no microseconds, no throughput.
OLD = (
    " [2024-05-21 10:00:10] iteration      110/  500000 | consumed samples:       106496 |"
    " elapsed time per iteration (ms): 6721.4 | learning rate: 9.500000E-05 | global batch size:  1024 |"
    " lm loss: 2.849000E+00 | loss scale: 65536.0 | grad norm: 0.950 | number of skipped iterations:   0 |"
    " number of nan iterations:   0 |"
)
# fp16: one overflow in the interval (no grad norm that step, the loss averaged over the advanced ones).
SKIPPED = (
    " [2026-11-29 04:00:10.000000] iteration      110/    1000 | consumed samples:         3520 |"
    " elapsed time per iteration (ms): 80.0 | learning rate: 9.400000E-05 | global batch size:    32 |"
    " lm loss: 2.850000E+00 | loss scale: 32768.0 | number of skipped iterations:   1 |"
    " number of nan iterations:   0 |"
)
# Every iteration of the interval NaN: Megatron averages over no advanced iteration and prints 0.
ALL_NAN = (
    " [2026-11-29 04:00:20.000000] iteration      120/    1000 | consumed samples:         3840 |"
    " elapsed time per iteration (ms): 80.0 | learning rate: 9.300000E-05 | global batch size:    32 |"
    " lm loss: 0.000000E+00 | loss scale: 1.0 | number of skipped iterations:  10 |"
    " number of nan iterations:  10 |"
)
# A NaN average is left out by Megatron's `avg >= 0` (and some forks print it as "nan").
NAN_OMITTED = (
    " [2026-11-29 04:00:30.000000] iteration      130/    1000 | consumed samples:         4160 |"
    " elapsed time per iteration (ms): 80.0 | learning rate: 9.200000E-05 | global batch size:    32 |"
    " loss scale: 1.0 | grad norm: nan | number of skipped iterations:   0 | number of nan iterations:   1 |"
)
NAN_PRINTED = NAN_OMITTED.replace(" loss scale: 1.0 |", " lm loss: nan | loss scale: 1.0 |")
VALID = " validation loss at iteration 100 | lm loss value: 2.854000E+00 | lm loss PPL: 1.735707E+01 | "
VALID_FINAL = (" validation loss at iteration 1000 on validation set | lm loss value: 2.500000E+00 |"
               " lm loss PPL: 1.218249E+01 | ")
TEST_FINAL = (" validation loss at iteration 1000 on test set | lm loss value: 2.510000E+00 |"
              " lm loss PPL: 1.230493E+01 | ")
VALID_MULTI = " validation-code loss at iteration 200 | lm loss value: 1.500000E+00 | lm loss PPL: 4.481689E+00 | "
MEMORY = ("[Rank 0] (after 2 iterations) memory (MB) | allocated: 10240.00 | max allocated: 20480.00 |"
          " reserved: 74240.00 | max reserved: 74240.00")
SAVING = ("[2026-11-29 04:05:00.000000] saving checkpoint at iteration     500 to /lustre/runs/exp/checkpoints"
          " in torch_dist format")


def test_main_format_with_throughput():
    r = parse_line(MAIN, seq_length=SEQ)
    assert isinstance(r, TrainingRecord)
    assert (r.iteration, r.train_iters, r.consumed_samples, r.global_batch_size) == (100, 1000, 3200, 32)
    assert (r.loss, r.grad_norm, r.lr, r.loss_scale) == (2.854, 0.98, 9.5e-5, 1.0)
    assert r.timestamp == "2026-11-29T04:00:00.250000Z"
    assert r.consumed_tokens == 3200 * SEQ
    assert r.throughput_tps == pytest.approx(32 * SEQ / 0.0812)
    assert (r.tflops_per_gpu, r.elapsed_ms, r.skipped_iterations, r.nan_iterations) == (412.7, 81.2, 0, 0)
    assert r.gpu_mem_used_gb is None


def test_old_format_without_throughput_or_microseconds():
    r = parse_line(OLD, seq_length=SEQ)
    assert r.timestamp == "2024-05-21T10:00:10Z"
    assert (r.iteration, r.loss, r.grad_norm, r.loss_scale, r.tflops_per_gpu) == (110, 2.849, 0.95, 65536.0, None)
    assert r.consumed_tokens == 872415232  # the reference's own example: 106496 samples × 8192
    assert r.throughput_tps == pytest.approx(1024 * SEQ / 6.7214)


def test_skipped_and_nan_iterations():
    skipped = parse_line(SKIPPED, seq_length=SEQ)
    assert (skipped.loss, skipped.grad_norm, skipped.skipped_iterations, skipped.nan_iterations) == (2.85, None, 1, 0)
    assert skipped.loss_scale == 32768.0
    all_nan = parse_line(ALL_NAN, seq_length=SEQ)
    assert (all_nan.loss, all_nan.skipped_iterations, all_nan.nan_iterations) == (None, 10, 10)
    for line in (NAN_OMITTED, NAN_PRINTED):
        r = parse_line(line, seq_length=SEQ)
        assert isinstance(r, TrainingRecord) and r.loss is None and r.nan_iterations == 1
        assert math.isnan(r.grad_norm)
        assert r.to_json_dict()["grad_norm"] is None and r.to_json_dict()["loss"] is None  # JSON has no NaN


def test_validation_lines_are_their_own_records():
    periodic = parse_line(VALID, seq_length=SEQ)
    assert isinstance(periodic, ValidationRecord)
    assert (periodic.iteration, periodic.split, periodic.final, periodic.loss) == (100, "validation", False, 2.854)
    assert periodic.ppl == {"lm loss": 17.35707}
    final, test = parse_line(VALID_FINAL, seq_length=SEQ), parse_line(TEST_FINAL, seq_length=SEQ)
    assert (final.iteration, final.split, final.final) == (1000, "validation", True)
    assert (test.split, test.final, test.loss) == ("test", True, 2.51)
    multi = parse_line(VALID_MULTI, seq_length=SEQ)
    assert (multi.name, multi.iteration, multi.loss) == ("code", 200, 1.5)
    assert set(periodic.to_json_dict()) == {"iteration", "split", "final", "name", "loss", "ppl"}
    # The rules of dashes around them are just other output.
    assert parse_line("-" * 90, seq_length=SEQ) is None


def test_memory_reports_fill_gpu_mem_for_the_records_after_them():
    report = parse_line(MEMORY, seq_length=SEQ)
    assert isinstance(report, MemoryReport) and report.iteration == 2 and report.used_gb == 72.5
    with_device = parse_line(MEMORY + " | total device memory used: 75776.00", seq_length=SEQ)
    assert with_device.used_gb == 74.0
    log = parse_log([OLD.replace("110/", "1/"), MEMORY, MAIN], seq_length=SEQ)
    assert [r.gpu_mem_used_gb for r in log.training] == [None, 72.5]


def test_checkpoint_lines():
    saved = parse_line(SAVING, seq_length=SEQ)
    assert saved == CheckpointSaved(500, "/lustre/runs/exp/checkpoints", "2026-11-29T04:05:00Z")
    older = parse_line("saving checkpoint at iteration     500 to /ckpt", seq_length=SEQ)
    assert (older.iteration, older.path, older.timestamp) == (500, "/ckpt", None)


@pytest.mark.parametrize(
    "line, reason",
    [
        (MAIN[:150], "does not end with '|'"),  # cut off mid-record
        (MAIN[:-60] + "|", "unreadable segment"),  # cut mid-field, then something wrote a '|'
        (MAIN.replace("grad norm: 0.980", "grad norm: 0.9x0"), "'grad norm' is not a number"),
        (MAIN[:-1] + MAIN, "two records on one line"),  # two writers interleaved
        (VALID[:40], "does not end with '|'"),
        (MAIN.replace("2026-11-29", "2026-13-29"), "unreadable time"),
        (MAIN.replace("consumed samples:         3200", "consumed samples: nan"), "no 'consumed samples'"),
    ],
)
def test_malformed_lines_are_reported_not_parsed(line, reason):
    event = parse_line(line, seq_length=SEQ)
    assert isinstance(event, MalformedLine) and reason in event.reason


def test_other_output_is_ignored_and_counted():
    text = "\n".join([
        "using world size: 256, data-parallel size: 8, context-parallel size: 1",
        "> building GPT model ...",
        MAIN,
        "\x00\x00garbage\xff",
        MAIN[:120],
        VALID,
        SAVING,
        "",
    ])
    log = parse_log(text, seq_length=SEQ)
    assert [r.iteration for r in log.training] == [100]
    assert [v.iteration for v in log.validation] == [100] and len(log.checkpoints) == 1
    assert len(log.malformed) == 1
    c = log.counts
    assert (c.lines, c.training, c.validation, c.checkpoints, c.malformed, c.other) == (7, 1, 1, 1, 1, 3)


def test_timestamps_are_converted_to_utc():
    plus2 = timezone(timedelta(hours=2))
    assert parse_line(MAIN, seq_length=SEQ, tz=plus2).timestamp == "2026-11-29T02:00:00.250000Z"


def test_tokens_per_second_field_wins_over_the_derived_throughput():
    line = MAIN.replace(" learning rate:", " tokens per second: 1234567.0 | learning rate:")
    assert parse_line(line, seq_length=SEQ).throughput_tps == 1234567.0
    unknown_length = parse_line(MAIN, seq_length=None)
    assert unknown_length.throughput_tps is None and unknown_length.consumed_tokens is None


def test_moe_and_extra_losses_are_kept_apart_from_lm_loss():
    line = MAIN.replace(" loss scale:", " load_balancing_loss: 1.010000E+00 | loss scale:")
    r = parse_line(line, seq_length=SEQ)
    assert r.loss == 2.854 and r.losses == {"lm loss": 2.854, "load_balancing_loss": 1.01}


def test_jsonl_fields_are_exactly_the_references():
    assert JSONL_FIELDS == ("timestamp", "iteration", "loss", "grad_norm", "lr", "consumed_tokens",
                            "throughput_tps", "gpu_mem_used_gb", "loss_scale")
    record = parse_log([MEMORY, OLD], seq_length=SEQ).training[0].to_json_dict()
    assert list(record) == list(JSONL_FIELDS)
    assert record == {
        "timestamp": "2024-05-21T10:00:10Z", "iteration": 110, "loss": 2.849, "grad_norm": 0.95, "lr": 9.5e-5,
        "consumed_tokens": 872415232, "throughput_tps": pytest.approx(1024 * SEQ / 6.7214),
        "gpu_mem_used_gb": 72.5, "loss_scale": 65536.0,
    }


def test_a_log_becomes_jsonl(tmp_path):
    """What training_log writes: the training records as JSON Lines, NaN as null (the store writes it whole)."""
    text = "\n".join([MAIN, SKIPPED, ALL_NAN, "-" * 20, VALID, MAIN[:100]])
    parsed = parse_log(text, seq_length=SEQ)
    jsonl = jsonl_text(parsed.training)
    rows = [json.loads(line) for line in jsonl.splitlines()]
    assert [r["iteration"] for r in rows] == [100, 110, 120]
    assert all(list(r) == list(JSONL_FIELDS) for r in rows)
    assert rows[2]["loss"] is None and rows[1]["grad_norm"] is None
    assert "NaN" not in jsonl
    assert [json.loads(x)["loss"] for x in jsonl_text(parsed.validation).splitlines()] == [2.854]
    assert parsed.counts.malformed == 1  # the cut-off last line
    assert jsonl_text([]) == ""


def test_incremental_parser_handles_lines_split_across_chunks():
    text = "\n".join([MAIN, VALID, OLD]) + "\n"
    parser = MegatronLogParser(seq_length=SEQ)
    events = []
    for i in range(0, len(text), 37):
        events += parser.feed(text[i : i + 37])
    events += parser.finish()
    assert [type(e).__name__ for e in events] == ["TrainingRecord", "ValidationRecord", "TrainingRecord"]
    assert events[0] == parse_line(MAIN, seq_length=SEQ)


def test_a_log_followed_as_it_grows_parses_line_by_line(tmp_path):
    """How a job's lines reach monitoring: the compute resource's LogFollower hands over complete lines (its
    `on_line`), and the parser turns each into events."""
    path = tmp_path / "train.log"
    follower, parser = LogFollower(path), MegatronLogParser(seq_length=SEQ)

    def poll(final: bool = False) -> list:
        return [event for line in follower.read(final=final) for event in parser.feed(line + "\n")]

    assert poll() == []  # not there yet
    first = (MAIN + "\n" + "é " + OLD).encode("utf-8")
    cut = first.index("é".encode("utf-8")) + 1  # in the middle of a two-byte character
    path.write_bytes(first[:cut])
    assert [e.iteration for e in poll()] == [100]
    with path.open("ab") as f:
        f.write(first[cut:] + b"\n" + SKIPPED.encode()[:50])
    assert [e.iteration for e in poll()] == [110]
    assert poll() == []  # half a line waits for its newline
    with path.open("ab") as f:
        f.write(SKIPPED.encode()[50:])
    assert poll() == []
    assert [e.iteration for e in poll(final=True)] == [110]  # the last line, without a newline
    path.write_text(VALID + "\n")  # rewritten shorter: read again from the start
    assert [type(e).__name__ for e in poll()] == ["ValidationRecord"]


def test_formatter_prints_megatrons_exact_lines():
    """Our trainer's lines are byte-for-byte Megatron's (same format strings, same field order)."""
    line = format_training_line(
        moment=datetime(2026, 11, 29, 4, 0, 0, 250000), iteration=100, train_iters=1000, consumed_samples=3200,
        elapsed_ms=81.2, tflops_per_gpu=412.7, learning_rate=9.5e-5, global_batch_size=32,
        losses=[("lm loss", 2.854)], loss_scale=1.0, grad_norm=0.98, skipped_iterations=0, nan_iterations=0,
    )
    assert line == MAIN
    nan_line = format_training_line(
        moment=datetime(2026, 11, 29, 4, 0, 30), iteration=130, train_iters=1000, consumed_samples=4160,
        elapsed_ms=80.0, learning_rate=9.2e-5, global_batch_size=32, losses=[("lm loss", float("nan"))],
        loss_scale=1.0, grad_norm=float("nan"), skipped_iterations=0, nan_iterations=1,
    )
    assert nan_line == NAN_OMITTED
    rule, text, rule2 = format_validation_block("iteration 100", [("lm loss", 2.854)])
    assert text == VALID and rule == rule2 == "-" * (len(VALID) + 1)
    assert format_saving_checkpoint(datetime(2026, 11, 29, 4, 5), 500, "/lustre/runs/exp/checkpoints",
                                    "torch_dist") == SAVING


def _job_log(iterations: list[int], loss: float) -> str:
    return "".join(format_training_line(moment=datetime(2026, 11, 29, 4, 0, 0), iteration=i, train_iters=60,
                                        consumed_samples=8 * i, elapsed_ms=100.0, global_batch_size=8,
                                        losses=[("lm loss", loss)], loss_scale=1.0, grad_norm=1.0,
                                        skipped_iterations=0, nan_iterations=0, learning_rate=1e-3) + "\n"
                   for i in iterations)


def test_a_run_of_several_jobs_reads_as_one_log():
    first = parse_log(_job_log([1, 10, 20, 30], 3.0), seq_length=64)  # killed after iteration 30, saved at 20
    resumed = parse_log(_job_log([21, 30, 40], 2.0), seq_length=64)  # resumed from 20: re-ran 21..30
    nothing = parse_log("> loading checkpoint ...\n", seq_length=64)  # already at train_iters: logs no iteration
    merged = merge_attempts([(first, 0), (resumed, 20), (nothing, 40)])
    assert [(r.iteration, r.loss) for r in merged.training] == [(1, 3.0), (10, 3.0), (20, 3.0), (21, 2.0),
                                                                (30, 2.0), (40, 2.0)]
    assert merged.counts.training == 7  # every line read
    restarted = merge_attempts([(first, 0), (resumed, 0)])  # a fresh start replaces everything before it
    assert [r.iteration for r in restarted.training] == [21, 30, 40]

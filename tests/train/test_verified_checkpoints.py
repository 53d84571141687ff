"""Checkpoint bookkeeping around a job, as it works for an unmodified Megatron-LM: real checkpoint folders,
Megatron's own log lines (log_format prints them byte for byte), the tracker file Megatron reads."""

from datetime import datetime
from pathlib import Path

import pytest

from mm_assets.storage.paths import sha256_file
from mm_assets.train.megatron_log.events import LM_LOSS
from mm_assets.train.megatron_log.format import format_training_line
from mm_assets.train.megatron_log.stream import parse_log
from mm_assets.train.verified_checkpoints import (
    CheckpointHashes,
    CheckpointMismatchError,
    prepare_resume,
    settle_after_job,
)

WEIGHTS = Path("mp_rank_00") / "model_optim_rng.pt"


def megatron_line(iteration: int, loss: float, *, skipped: int = 0, nan: int = 0) -> str:
    """Megatron's training_log line. It leaves out an average that is NaN (bf16 runs NaN iterations instead of
    skipping them) or taken over no advanced iteration, and counts the skipped iterations that were NaN."""
    return format_training_line(
        moment=datetime(2026, 12, 1, 12, 0, 0), iteration=iteration, train_iters=60, consumed_samples=iteration * 8,
        elapsed_ms=10.0, tflops_per_gpu=None, learning_rate=1e-3, global_batch_size=8,
        losses=[(LM_LOSS, loss)] if loss == loss and loss > 0 else [], loss_scale=1.0,
        grad_norm=1.0 if loss == loss else None, skipped_iterations=skipped, nan_iterations=nan)


def save(ckpt: Path, iteration: int, payload: bytes) -> Path:
    """What Megatron's save leaves: the iteration folder, then the tracker."""
    folder = ckpt / f"iter_{iteration:07d}"
    (folder / WEIGHTS).parent.mkdir(parents=True)
    (folder / WEIGHTS).write_bytes(payload)
    (ckpt / "latest_checkpointed_iteration.txt").write_text(str(iteration))
    return folder


def records(*lines: str):
    return parse_log("\n".join(lines), seq_length=64).training


def test_a_checkpoint_whose_loss_was_nan_is_moved_aside_and_the_tracker_goes_back(tmp_path):
    ckpt, hashes = tmp_path / "checkpoints", CheckpointHashes.load(tmp_path / "checkpoint_hashes.json")
    save(ckpt, 20, b"good weights")
    save(ckpt, 40, b"nan weights")
    nan = float("nan")
    log = records(megatron_line(20, 2.5), megatron_line(30, nan, skipped=10, nan=10), megatron_line(40, nan, skipped=10, nan=10))
    settled = settle_after_job(ckpt, hashes, log, since=None)
    assert settled.recorded == [20] and settled.latest == 20
    ((iteration, why, moved),) = settled.rejected
    assert iteration == 40 and "non-finite loss (nan at iteration 40, 10 NaN iterations)" in why
    assert moved.parent == ckpt / "rejected" and (moved / WEIGHTS).read_bytes() == b"nan weights"
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text() == "20"  # what Megatron resumes from
    assert sorted(CheckpointHashes.load(tmp_path / "checkpoint_hashes.json").entries) == [20]
    assert "iteration 40 logged a non-finite loss" in settled.describe()


def test_a_first_checkpoint_with_a_nan_loss_leaves_no_tracker(tmp_path):
    ckpt = tmp_path / "checkpoints"
    save(ckpt, 20, b"nan weights")
    bf16_nan = megatron_line(20, float("nan"))  # nothing skipped, the NaN average left out
    assert "lm loss" not in bf16_nan and "number of nan iterations:   0" in bf16_nan
    settled = settle_after_job(ckpt, CheckpointHashes.load(tmp_path / "checkpoint_hashes.json"), records(bf16_nan), since=None)
    assert settled.latest is None and not (ckpt / "latest_checkpointed_iteration.txt").exists()


def test_an_interval_skipped_for_overflow_is_not_a_nan(tmp_path):
    ckpt = tmp_path / "checkpoints"
    save(ckpt, 20, b"fp16 weights")
    overflow = megatron_line(20, 0.0, skipped=10)  # loss scaling skipped every step: no loss, no NaN
    settled = settle_after_job(ckpt, CheckpointHashes.load(tmp_path / "checkpoint_hashes.json"), records(overflow), since=None)
    assert settled.recorded == [20] and settled.latest == 20


def test_resume_refuses_changed_bytes_and_unrecorded_checkpoints(tmp_path):
    ckpt, hashes = tmp_path / "checkpoints", CheckpointHashes.load(tmp_path / "checkpoint_hashes.json")
    save(ckpt, 20, b"weights 20")
    folder = save(ckpt, 40, b"weights 40")
    settle_after_job(ckpt, hashes, records(megatron_line(20, 2.5), megatron_line(40, 2.0)), since=None)
    assert prepare_resume(ckpt, hashes, fallback=False).iteration == 40
    recorded = sha256_file(folder / WEIGHTS)
    (folder / WEIGHTS).write_bytes(b"weights 4O")
    with pytest.raises(CheckpointMismatchError) as err:
        prepare_resume(ckpt, hashes, fallback=False)
    assert f"{folder / WEIGHTS}: sha256 mismatch, expected {recorded}" in str(err.value)
    assert sha256_file(folder / WEIGHTS) in str(err.value)

    save(ckpt, 60, b"weights 60")  # saved by a job this project never saw end
    with pytest.raises(CheckpointMismatchError, match="no sha256 recorded for iteration 60"):
        prepare_resume(ckpt, hashes, fallback=False)


def test_fallback_takes_the_newest_matching_checkpoint_and_moves_the_newer_ones_aside(tmp_path):
    ckpt, hashes = tmp_path / "checkpoints", CheckpointHashes.load(tmp_path / "checkpoint_hashes.json")
    for iteration in (20, 40, 60):
        save(ckpt, iteration, f"weights {iteration}".encode())
    settle_after_job(ckpt, hashes, records(*(megatron_line(i, 2.0) for i in (20, 40, 60))), since=None)
    (ckpt / "iter_0000060" / WEIGHTS).write_bytes(b"damaged")
    (ckpt / "iter_0000040" / "extra.bin").write_bytes(b"added later")
    resume = prepare_resume(ckpt, hashes, fallback=True)
    assert (resume.iteration, resume.fell_back_from) == (20, 60)
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text() == "20"
    assert sorted(p.name.split(".")[0] for p in (ckpt / "rejected").iterdir()) == ["iter_0000040", "iter_0000060"]
    assert sorted(CheckpointHashes.load(tmp_path / "checkpoint_hashes.json").entries) == [20]
    assert any("falling back from iteration 60 to iteration 20" in n for n in resume.notes)


def test_a_folder_newer_than_the_tracker_is_moved_aside_before_the_launch(tmp_path):
    ckpt, hashes = tmp_path / "checkpoints", CheckpointHashes.load(tmp_path / "checkpoint_hashes.json")
    save(ckpt, 20, b"weights 20")
    settle_after_job(ckpt, hashes, records(megatron_line(20, 2.0)), since=None)
    (ckpt / "iter_0000030" / WEIGHTS).parent.mkdir(parents=True)  # a save killed before the tracker moved
    resume = prepare_resume(ckpt, hashes, fallback=False)
    assert resume.iteration == 20 and not (ckpt / "iter_0000030").exists()
    assert "iteration 30 is newer than the tracker (20)" in resume.notes[0]

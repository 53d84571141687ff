"""Checkpoints a run may resume from: per-iteration sha256s recorded after each job, compared before the next.

Megatron-LM resumes from whatever `latest_checkpointed_iteration.txt` names and never checks the bytes, so
the checks run around the job and work for an unmodified Megatron too:
- after a job ends (well or not), each new `iter_NNNNNNN` folder is hashed into the run's checkpoint_hashes.json,
  unless the log's loss covering that iteration is not finite: then the folder is moved to `rejected/` and
  the tracker goes back to the newest recorded iteration (a NaN checkpoint is never the latest);
- before the next launch, the folder the tracker names is compared with its record. On a mismatch (or no
  record) the launch is refused, or, with `resume.on_mismatch: previous_verified`, the newest recorded
  iteration that still matches becomes the tracker's and the newer folders are moved to `rejected/`.
Folders newer than the tracker (left by a save that never reached the tracker) are moved aside before a
launch, so everything newer than the resumed iteration after a job was written by that job.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mm_assets.digests import FileDigest, digest_mismatch, file_digest
from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.paths import atomic_write_text, fsync_path
from mm_assets.train.megatron_log.events import LM_LOSS, TrainingRecord

RECORDED_BY = "the run that saved it (checkpoint_hashes.json)"


class CheckpointMismatchError(RuntimeError):
    """The checkpoint the tracker names does not match its recorded hashes, and nothing to fall back to."""


def iteration_dir(checkpoint_dir: Path, iteration: int) -> Path:
    return Path(checkpoint_dir) / ArtifactLayout.checkpoint_iteration(iteration)


def iteration_dirs(checkpoint_dir: Path) -> dict[int, Path]:
    folder = Path(checkpoint_dir)
    found = (ArtifactLayout.CHECKPOINT_ITERATION.match(p.name) for p in folder.iterdir()) if folder.is_dir() else ()
    return {int(m[1]): folder / m[0] for m in found if m}


def read_tracker(checkpoint_dir: Path) -> int | None:
    path = Path(checkpoint_dir) / ArtifactLayout.CHECKPOINT_TRACKER
    if not path.is_file():
        return None
    text = path.read_text().strip()
    if not text.isdigit():
        raise CheckpointMismatchError(f"{path} holds {text!r}, not an iteration")
    return int(text)


def write_tracker(checkpoint_dir: Path, iteration: int | None) -> None:
    """Point Megatron's tracker at `iteration` (atomically); None removes it, so the next run starts fresh."""
    path = Path(checkpoint_dir) / ArtifactLayout.CHECKPOINT_TRACKER
    if iteration is None:
        path.unlink(missing_ok=True)
        fsync_path(path.parent)
    else:
        atomic_write_text(path, str(iteration))


def checkpoint_files(folder: Path) -> dict[str, FileDigest]:
    """Digest of every file of one checkpoint iteration, by path relative to the folder."""
    return {str(p.relative_to(folder)): file_digest(p) for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class CheckpointHashes:
    """A run's checkpoint_hashes.json: iteration → {files: {relative path: {sha256, bytes}}, loss, recorded_at}."""

    path: Path
    entries: dict[int, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> CheckpointHashes:
        path = Path(path)
        if not path.is_file():
            return cls(path)
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(path, {int(k): v for k, v in data.get("iterations", {}).items()})

    def save(self) -> None:
        body = {"iterations": {str(k): self.entries[k] for k in sorted(self.entries)}}
        atomic_write_text(self.path, json.dumps(body, indent=2, sort_keys=True) + "\n")

    def record(self, iteration: int, folder: Path, loss: float | None) -> None:
        files = {name: d.as_dict() for name, d in checkpoint_files(folder).items()}
        self.entries[iteration] = {"files": files, "loss": loss, "recorded_at": _now()}

    def problems(self, iteration: int, folder: Path) -> list[str]:
        """Why `folder` is not the checkpoint recorded for `iteration` (each file: expected and actual sha256)."""
        entry = self.entries.get(iteration)
        if entry is None:
            return [f"{folder}: no sha256 recorded for iteration {iteration} in {self.path} (a run this project "
                    "did not see finish wrote it)"]
        if not folder.is_dir():
            return [f"{folder}: missing (iteration {iteration} is recorded in {self.path})"]
        problems = []
        for name, recorded in sorted(entry["files"].items()):
            expected = FileDigest.from_dict(recorded, where=f"{self.path}: iteration {iteration} {name}")
            if mismatch := digest_mismatch(folder / name, expected, recorded_by=RECORDED_BY):
                problems.append(mismatch)
        extra = sorted(set(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) - set(entry["files"]))
        problems += [f"{folder / name}: not in the recorded checkpoint (added after it was saved)" for name in extra]
        return problems


def _move_aside(checkpoint_dir: Path, folder: Path, why: str) -> Path:
    """Move an iteration folder to `rejected/<name>.<why>.<UTC time>`: kept for a post-mortem, never resumed."""
    moved = f"{folder.name}.{why}.{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}"
    target = Path(checkpoint_dir) / ArtifactLayout.CHECKPOINT_REJECTED / moved
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(folder, target)
    fsync_path(Path(checkpoint_dir))
    return target


# -- after a job ---------------------------------------------------------------------------------------------


def non_finite(record: TrainingRecord) -> bool:
    """The interval's loss was NaN or infinite. Megatron prints a NaN average as nothing: `lm loss` is left out
    when the iterations that advanced averaged NaN (bf16: nothing is skipped) and the NaN iterations that
    were skipped are counted (fp16). A line whose every iteration was skipped for overflow is not NaN."""
    printed = record.losses.get(LM_LOSS)
    if printed is not None and not math.isfinite(printed):
        return True
    if record.loss is not None:
        return False
    return record.nan_iterations > 0 or record.skipped_iterations == 0


def loss_covering(records: Sequence[TrainingRecord], iteration: int) -> TrainingRecord | None:
    """The log line whose interval holds `iteration`: the first at or after it (Megatron averages the loss
    over the iterations since the previous line), else the run's last line."""
    after = [r for r in records if r.iteration >= iteration]
    if after:
        return min(after, key=lambda r: r.iteration)
    return records[-1] if records else None


@dataclass
class Settled:
    """What the end of a job did to its checkpoints."""

    recorded: list[int] = field(default_factory=list)
    rejected: list[tuple[int, str, Path]] = field(default_factory=list)  # (iteration, why, moved to)
    latest: int | None = None  # the tracker's iteration afterwards

    def describe(self) -> str:
        parts = []
        for iteration, why, moved in self.rejected:
            parts.append(f"iteration {iteration} logged {why}: its checkpoint was not published (moved to {moved})")
        parts.append(f"the latest checkpoint is {'iteration %d' % self.latest if self.latest is not None else 'none'}")
        return "; ".join(parts)


def settle_after_job(checkpoint_dir: Path, hashes: CheckpointHashes, records: Sequence[TrainingRecord],
                     *, since: int | None) -> Settled:
    """Record the sha256s of every iteration saved after `since` whose loss was finite; move the others aside
    and point the tracker at the newest recorded iteration."""
    settled = Settled()
    for iteration, folder in sorted(iteration_dirs(checkpoint_dir).items()):
        if since is not None and iteration <= since:
            continue
        covering = loss_covering(records, iteration)
        if covering is not None and non_finite(covering):
            loss = covering.losses.get(LM_LOSS, "nan")
            why = f"a non-finite loss ({loss} at iteration {covering.iteration}, {covering.nan_iterations} NaN iterations)"
            settled.rejected.append((iteration, why, _move_aside(checkpoint_dir, folder, "nonfinite-loss")))
            hashes.entries.pop(iteration, None)
        else:
            hashes.record(iteration, folder, covering.loss if covering else None)
            settled.recorded.append(iteration)
    hashes.save()
    tracked = read_tracker(checkpoint_dir)
    present = iteration_dirs(checkpoint_dir)
    if tracked is not None and tracked not in present:
        good = [i for i in hashes.entries if i in present and i < tracked]
        tracked = max(good) if good else None
        write_tracker(checkpoint_dir, tracked)
    settled.latest = tracked
    return settled


# -- before a job --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resume:
    """Where the next job resumes: the tracker's iteration after verification, and what was done to get there."""

    iteration: int | None
    notes: tuple[str, ...] = ()
    fell_back_from: int | None = None


def prepare_resume(checkpoint_dir: Path, hashes: CheckpointHashes, *, fallback: bool) -> Resume:
    """Verify the checkpoint the tracker names against its recorded sha256s (see the module docstring)."""
    tracked = read_tracker(checkpoint_dir)
    folders = iteration_dirs(checkpoint_dir)
    notes: list[str] = []
    for iteration in sorted(i for i in folders if tracked is None or i > tracked):  # saves the tracker never named
        moved = _move_aside(checkpoint_dir, folders.pop(iteration), "after-tracker")
        notes.append(f"iteration {iteration} is newer than the tracker ({tracked}): moved to {moved}")
    if tracked is None:
        return Resume(None, tuple(notes))
    problems = hashes.problems(tracked, iteration_dir(checkpoint_dir, tracked))
    if not problems:
        return Resume(tracked, tuple(notes))
    where = Path(checkpoint_dir) / ArtifactLayout.CHECKPOINT_TRACKER
    if not fallback:
        raise CheckpointMismatchError(
            f"refusing to resume from iteration {tracked} ({where}): its files do not match the sha256 recorded "
            "when it was saved:\n" + "\n".join(f"  - {p}" for p in problems) +
            "\nRestore the checkpoint, or set training.resume.on_mismatch: previous_verified to fall back to the "
            "newest checkpoint that still matches.")
    iteration = next((i for i in sorted(hashes.entries, reverse=True)
                      if i < tracked and i in folders and not hashes.problems(i, folders[i])), None)
    if iteration is None:
        raise CheckpointMismatchError(
            f"refusing to resume from iteration {tracked} ({where}):\n" + "\n".join(f"  - {p}" for p in problems) +
            f"\nand no earlier checkpoint matches its recorded sha256 to fall back to. Restore the checkpoint, or "
            f"delete {where} to start from scratch.")
    for newer in sorted(i for i in folders if i > iteration):
        moved = _move_aside(checkpoint_dir, folders[newer], "hash-mismatch" if newer == tracked else "after-fallback")
        notes.append(f"iteration {newer} moved to {moved}")
        hashes.entries.pop(newer, None)
    hashes.save()
    write_tracker(checkpoint_dir, iteration)
    notes.append(f"falling back from iteration {tracked} to iteration {iteration}, the newest checkpoint whose "
                 f"files match their recorded sha256 ({'; '.join(problems)})")
    return Resume(iteration, tuple(notes), fell_back_from=tracked)

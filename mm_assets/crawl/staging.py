"""Per-worker staging folders and per-item locks, under `<storage root>/.staging/crawl/`.

A worker downloads into its own folder and publishes an item with one rename (paths.publish_dir), so a
killed worker or a killed crawl leaves half-written files only here, never under raw/. Each worker holds an
flock on `w-<token>.lock` for its lifetime: a folder whose lock can be taken belongs to a dead process and is
swept. Item locks (striped, so their number is bounded) make two workers, or two concurrent crawls, that
meet the same item take turns: the second sees the first's item.json instead of downloading it again.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mm_assets.paths import short_hash

LOCK_STRIPES = 1024
ORPHAN_AGE_S = 600.0  # a worker folder without its lock file, older than this, is left from a crash


def _lock_file(path: Path, *, blocking: bool) -> int | None:
    """An fd holding an exclusive flock on `path` (created if needed), or None when it is held elsewhere.

    Retries when the file was unlinked between open and lock (a sweeper removed it), so the lock held is
    always on the file that is at `path` now.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


class WorkerDirs:
    """A worker's staging folder, `w-<pid>-<random>/`, locked while the worker lives."""

    def __init__(self, staging_root: Path):
        self.staging_root = Path(staging_root)
        self.staging_root.mkdir(parents=True, exist_ok=True)
        token = f"w-{os.getpid()}-{secrets.token_hex(3)}"
        self.lock_path = self.staging_root / f"{token}.lock"
        self._fd = _lock_file(self.lock_path, blocking=True)
        self.root = self.staging_root / token
        self.root.mkdir()

    @property
    def work(self) -> Path:
        """Where yt-dlp writes the current item; emptied before each item."""
        return self.root / "work"

    def fresh_work(self) -> Path:
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir()
        return self.work

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        if self._fd is not None:
            self.lock_path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None


def sweep_stale(staging_root: Path) -> list[Path]:
    """Remove the folders of workers that are gone; returns what was removed. Live workers are untouched."""
    staging_root = Path(staging_root)
    removed: list[Path] = []
    if not staging_root.is_dir():
        return removed
    for lock in sorted(staging_root.glob("w-*.lock")):
        fd = _lock_file(lock, blocking=False)
        if fd is None:
            continue  # a live worker holds it
        try:
            folder = lock.with_suffix("")
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
            lock.unlink(missing_ok=True)
        finally:
            os.close(fd)
    now = time.time()
    for folder in sorted(staging_root.glob("w-*")):
        if folder.is_dir() and not folder.with_suffix(".lock").exists():
            try:
                if now - folder.stat().st_mtime > ORPHAN_AGE_S:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(folder)
            except FileNotFoundError:
                pass
    return removed


@contextmanager
def item_lock(staging_root: Path, source: str, item_id: str) -> Iterator[None]:
    """Exclusive, cross-process, released when the holder exits or dies (flock)."""
    folder = Path(staging_root) / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    stripe = int(short_hash(source, item_id, n=8), 16) % LOCK_STRIPES
    fd = _lock_file(folder / f"{stripe:04d}.lock", blocking=True)
    try:
        yield
    finally:
        os.close(fd)

"""Item staging folders and item locks, under the crawl's scratch folder (`<scratch>/crawl/`, ArtifactLayout).

An item is downloaded into `items/<key>/`, its key a hash of (source, item id), and published with one rename
(paths.publish_dir): nothing half-written is ever under raw/. Because the key is stable (never a process id), a
crawl that was killed, interrupted or timed out leaves its partial download (`*.part`) where the next attempt
at the same item finds it, and yt-dlp resumes it with an HTTP Range request (`continuedl`). Everything else in
such a folder (subtitles, info.json, half-extracted audio) is redone.

Item locks (flock on one of LOCK_STRIPES files, released when the holder exits or dies) make two workers, or two
concurrent crawls, that meet the same item take turns: the second sees the first's item.json instead of
downloading it again. A folder's lock stripe follows from its key, so the sweep leaves in-progress folders
alone; of the rest it keeps resumable partials within an age and a size bound (oldest go first).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.paths import lock_file, short_hash

LOCK_STRIPES = 1024


def item_key(source: str, item_id: str) -> str:
    """The item's staging folder name: stable across processes and runs, safe as a path component."""
    return short_hash(source, item_id, n=16)


def _stripe_path(staging_root: Path, key: str) -> Path:
    folder = Path(staging_root) / ArtifactLayout.CRAWL_ITEM_LOCKS
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{int(key[:8], 16) % LOCK_STRIPES:04d}.lock"


@contextmanager
def item_lock(staging_root: Path, source: str, item_id: str) -> Iterator[None]:
    """Exclusive, cross-process, released when the holder exits or dies (flock)."""
    fd = lock_file(_stripe_path(staging_root, item_key(source, item_id)), blocking=True)
    try:
        yield
    finally:
        os.close(fd)


def is_resumable(name: str) -> bool:
    """A partial download yt-dlp continues: `x.part`, fragments `x.part-Frag7` and their `x.ytdl` state."""
    return name.endswith((".part", ".ytdl")) or ".part-Frag" in name


def stage_item(staging_root: Path, source: str, item_id: str) -> Path:
    """The item's staging folder, holding only what a download can resume; call with the item's lock held."""
    folder = Path(staging_root) / ArtifactLayout.CRAWL_STAGED_ITEMS / item_key(source, item_id)
    folder.mkdir(parents=True, exist_ok=True)
    keep_partials(folder)
    return folder


def keep_partials(folder: Path) -> None:
    """Remove everything but resumable partial downloads (what an interrupted attempt left half-done)."""
    for path in folder.iterdir():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif not is_resumable(path.name):
            path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Partial:
    folder: Path
    bytes: int
    mtime: float  # the newest file's: when the download last made progress


def _partial(folder: Path) -> Partial | None:
    """What a stale folder holds for a resume, or None when it holds nothing worth keeping."""
    files = [p for p in folder.rglob("*") if p.is_file() and is_resumable(p.name)]
    if not files:
        return None
    stats = [p.stat() for p in files]
    return Partial(folder, sum(s.st_size for s in stats), max(s.st_mtime for s in stats))


def sweep_stale(staging_root: Path, *, max_age_s: float, max_bytes: int, now: float | None = None) -> list[Path]:
    """Remove staging nobody is working on and nobody will resume; returns what was removed.

    Folders whose item lock is held (in progress here or in another crawl) are untouched. A stale folder with
    a partial download is kept for the next attempt unless it is older than `max_age_s` or, oldest first, the
    kept partials exceed `max_bytes`. Worker folders of the layout before items/ (`w-<pid>-<token>`) go too.
    """
    staging_root = Path(staging_root)
    if not staging_root.is_dir():
        return []
    now = time.time() if now is None else now
    removed = _sweep_worker_folders(staging_root)
    items = staging_root / ArtifactLayout.CRAWL_STAGED_ITEMS
    folders = sorted(p for p in items.iterdir() if p.is_dir()) if items.is_dir() else []
    kept: list[Partial] = []
    for folder in folders:
        with _unless_locked(staging_root, folder.name) as free:
            if not free:
                continue
            partial = _partial(folder)
            if partial is None or now - partial.mtime > max_age_s:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
            else:
                keep_partials(folder)  # side files are redone by the next attempt anyway
                kept.append(partial)
    total = sum(p.bytes for p in kept)
    for partial in sorted(kept, key=lambda p: p.mtime):
        if total <= max_bytes:
            break
        with _unless_locked(staging_root, partial.folder.name) as free:
            if free:
                shutil.rmtree(partial.folder, ignore_errors=True)
                removed.append(partial.folder)
                total -= partial.bytes
    return removed


@contextmanager
def _unless_locked(staging_root: Path, key: str) -> Iterator[bool]:
    """Holds the key's item lock for the block when nobody else does; yields whether it could."""
    try:
        int(key[:8], 16)
    except ValueError:
        yield False  # not a folder this module made
        return
    fd = lock_file(_stripe_path(staging_root, key), blocking=False)
    try:
        yield fd is not None
    finally:
        if fd is not None:
            os.close(fd)


def _sweep_worker_folders(staging_root: Path) -> list[Path]:
    """Folders of the per-process layout that items/ replaced, whose worker (flock holder) is gone."""
    removed: list[Path] = []
    for folder in sorted(staging_root.glob("w-*")):
        if folder.is_dir() and not folder.with_suffix(".lock").exists():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    for lock in sorted(staging_root.glob("w-*.lock")):
        fd = lock_file(lock, blocking=False)
        if fd is None:
            continue  # a live worker of an older version holds it
        try:
            folder = lock.with_suffix("")
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
            lock.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return removed

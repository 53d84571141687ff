"""Safe names, confined paths and atomic writes for everything that comes from the outside.

Ids, titles and URLs are untrusted: they never reach a shell, and a path built from them never leaves
its root. Files appear whole or not at all (temp file + fsync + rename).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_COMPONENT = 96


class UnsafePathError(ValueError):
    """A path built from outside input would leave its root."""


class LockBusyError(RuntimeError):
    """Another live process holds the lock: it is writing the same thing now."""


def sanitize_component(raw: str, *, max_len: int = MAX_COMPONENT) -> str:
    """One safe path component from any string: [A-Za-z0-9._-], no leading dot, never empty.

    The result is stable (same input, same output); callers that need uniqueness add a hash of the raw value.
    """
    text = unicodedata.normalize("NFKC", str(raw))
    text = _UNSAFE.sub("_", text).strip("._-")
    text = re.sub(r"_{2,}", "_", text)
    if not text:
        text = "x"
    return text[:max_len].rstrip("._-") or "x"


def short_hash(*parts: str, n: int = 10) -> str:
    h = hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return h[:n]


def safe_join(root: Path, *parts: str) -> Path:
    """root/parts..., refusing any result outside root (after resolving '..' and symlinks)."""
    root = Path(root).resolve()
    target = root.joinpath(*parts).resolve()
    if target != root and root not in target.parents:
        raise UnsafePathError(f"path {'/'.join(parts)!r} escapes {root}")
    return target


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fsync_path(path: Path) -> None:
    """fsync a file or a folder (a folder after a rename, so the new entry survives a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside `target`; on success it is renamed over `target`, on error removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
        fsync_path(target.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: Path, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def remove_path(path: Path) -> None:
    """Remove a file, a link or a folder tree, whichever is there (nothing there is fine)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def publish_dir(staged: Path, target: Path) -> None:
    """Move a fully written folder into place with one rename; an older copy is replaced whole."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        trash = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, trash)
        os.replace(staged, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staged, target)
    fsync_path(target.parent)


def lock_file(path: Path, *, blocking: bool) -> int | None:
    """An fd holding an exclusive flock on `path` (created if needed), or None when it is held elsewhere.

    Retries when the file was unlinked between open and lock (a sweeper removed it), so the lock held is
    always on the file that is at `path` now. The lock dies with its process: a killed holder frees it.
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


@contextmanager
def exclusive(path: Path, *, what: str, unlink: bool = False, wait: bool = False) -> Iterator[None]:
    """Hold the flock on `path` for the block; LockBusyError naming `what` when a live process holds it (or,
    with `wait`, wait for it). `unlink` removes the lock file on the way out (a waiter that opened it retries
    on the new file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = lock_file(path, blocking=wait)
    if fd is None:
        raise LockBusyError(f"{what} is being written by another process (it holds {path}); "
                            "wait for it to finish, then retry")
    try:
        yield
    finally:
        if unlink:
            path.unlink(missing_ok=True)
        os.close(fd)

"""The I/O seam: every artifact an asset reads or writes goes through an `ArtifactStore`, by key (layout.py).

`LocalStore` keeps artifacts under a folder, `S3Store` (s3.py) under s3://bucket/prefix; assets do not know
which: `url` is what tools and the UI are given (a local path here, `s3://…` there),
`local_path`/`local_dir` a local copy for tools that need files (here the artifact itself, there a verified
download into the scratch folder), and `publish` the only way a file or folder appears: built at a local
staging path, then moved into place whole (here one rename; there every file uploaded, the manifest or
marker last), or not at all.
"""

from __future__ import annotations

import errno
import functools
import os
import posixpath
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.paths import (
    UnsafePathError,
    atomic_write_bytes,
    exclusive,
    fsync_path,
    publish_dir,
    remove_path,
    safe_join,
)
from mm_assets.storage.s3_access import S3Access, is_s3_url

DEFAULT_SCRATCH = ".staging"  # under a local root: staging there is on the root's filesystem (one rename)


class ArtifactStore(ABC):
    """Artifacts by key. `scratch` is a local folder for staging, caches and downloads."""

    scratch: Path

    @property
    @abstractmethod
    def url_root(self) -> str:
        """What every url() starts with: the root folder, or s3://bucket/prefix."""

    @abstractmethod
    def url(self, key: str) -> str:
        """Where the artifact lives, for tools (DuckDB, Megatron --data-path) and for people (UI metadata)."""

    @abstractmethod
    def key_of(self, url: str) -> str:
        """The key of a URL this store gave out; UnsafePathError for one outside the store."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether a file or a folder (a key prefix) is stored at `key`."""

    @abstractmethod
    def list(self, pattern: str) -> list[str]:
        """Keys of the files matching a glob (`metadata/*/hashes.parquet`), sorted."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """The artifact's bytes; FileNotFoundError naming the key when there is none."""

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode("utf-8")

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Store a small file whole (atomic; concurrent writers of one key: the last one wins)."""

    def write_text(self, key: str, text: str) -> None:
        self.write_bytes(key, text.encode("utf-8"))

    @abstractmethod
    def local_path(self, key: str) -> Path:
        """A local file holding the artifact's bytes, for tools that read files (polars, soundfile, megatron)."""

    @abstractmethod
    def local_dir(self, prefix: str) -> Path:
        """A local folder holding the artifacts under `prefix` (an item folder, a shard)."""

    def local_prefix(self, key: str) -> Path:
        """A local Megatron prefix (`<folder>/tokens`): its folder fetched whole, the prefix inside it."""
        folder, name = posixpath.split("/".join(key_parts(key)))
        return self.local_dir(folder) / name

    def register_filesystem(self, con) -> None:
        """Let a DuckDB connection read this store's url()s (local files need nothing)."""

    @abstractmethod
    @contextmanager
    def publish(self, key: str, *, last: str | None = None, what: str | None = None,
                wait: bool = False) -> Iterator[Path]:
        """A local staging path to build `key` at (a file or a folder, not yet existing); when the block ends
        well the artifact appears whole at `key`, replacing the previous one; on an error nothing changes.

        `last` names the file of a folder that commits it (a manifest): a store that cannot rename a folder
        writes it after every other file. One writer per key: a second raises LockBusyError naming `what`
        (default the key), or with `wait` waits for the first. What a killed writer left, the next one removes.
        """

    @abstractmethod
    @contextmanager
    def working_dir(self, prefix: str) -> Iterator[Path]:
        """A local folder that a tool reads and updates in place (a training run's checkpoints): here the
        folder itself; an object store syncs it down before and its changes up after the block."""

    @abstractmethod
    def working_path(self, key: str) -> Path:
        """Where `key` lies inside the working folder working_dir() keeps for it (no I/O): the paths a job is
        given (--save, logs), also before the block runs."""


class Storage(Protocol):
    """What plain code needs of storage: the layout that names artifacts and the store that holds them
    (resources.storage.StorageResource provides both)."""

    @property
    def layout(self) -> ArtifactLayout: ...

    @property
    def store(self) -> ArtifactStore: ...


def key_parts(key: str) -> list[str]:
    path = PurePosixPath(key)
    if not key or path.is_absolute() or ".." in path.parts:
        raise UnsafePathError(f"{key!r} is not a key (a relative path without '..')")
    return list(path.parts)


def _sweep_replaced(target: Path) -> None:
    """Beside `target`: the copy a killed publish was replacing (`.<name>.old-<pid>`, paths.publish_dir) and
    the staging folder of the layout before scratch staging (`.staging-<name>-<pid>`)."""
    if not target.parent.is_dir():
        return
    for pattern in (f".{target.name}.old-", f".staging-{target.name}-"):
        for stale in target.parent.glob(f"{pattern}*"):
            if stale.name[len(pattern):].isdigit():
                remove_path(stale)


def _into_place(staged: Path, target: Path) -> None:
    """Rename `staged` over `target` (a folder replaced whole); from another filesystem, copy it beside first."""
    if staged.stat().st_dev != target.parent.stat().st_dev:
        beside = target.with_name(f".{target.name}.incoming-{os.getpid()}")
        remove_path(beside)
        if staged.is_dir():
            shutil.copytree(staged, beside, symlinks=True)
        else:
            shutil.copy2(staged, beside)
        staged = beside
    if staged.is_dir():
        publish_dir(staged, target)
        return
    with open(staged, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(staged, target)
    fsync_path(target.parent)


@dataclass(frozen=True)
class LocalStore(ArtifactStore):
    """Artifacts as files under `root`; staging under `scratch` (default `<root>/.staging`, the same
    filesystem, so publishing is one rename). Picklable: the crawl's worker processes get one."""

    root: Path
    scratch: Path

    def __init__(self, root: str | Path, scratch: str | Path | None = None):
        root = Path(root).resolve()
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "scratch", Path(scratch).resolve() if scratch else root / DEFAULT_SCRATCH)

    def local_path(self, key: str) -> Path:
        return safe_join(self.root, *key_parts(key))

    def local_dir(self, prefix: str) -> Path:
        return self.local_path(prefix)

    def working_path(self, key: str) -> Path:
        return self.local_path(key)

    @property
    def url_root(self) -> str:
        return str(self.root)

    def url(self, key: str) -> str:
        return str(self.local_path(key))

    def key_of(self, url: str) -> str:
        path = Path(url).resolve()
        if path != self.root and self.root not in path.parents:
            raise UnsafePathError(f"{url} is not under the storage root {self.root}")
        return path.relative_to(self.root).as_posix()

    def exists(self, key: str) -> bool:
        return self.local_path(key).exists()

    def list(self, pattern: str) -> list[str]:
        key_parts(pattern)
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.glob(pattern) if p.is_file())

    def read_bytes(self, key: str) -> bytes:
        path = self.local_path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, f"no artifact {key} in {self.root}", str(path)) from None

    def write_bytes(self, key: str, data: bytes) -> None:
        atomic_write_bytes(self.local_path(key), data)

    @contextmanager
    def publish(self, key: str, *, last: str | None = None, what: str | None = None,
                wait: bool = False) -> Iterator[Path]:
        target = self.local_path(key)  # a folder appears by one rename: `last` needs no ordering here
        staging = safe_join(self.scratch, *key_parts(key))
        staging.parent.mkdir(parents=True, exist_ok=True)
        with exclusive(staging.with_name(f"{staging.name}.lock"), what=what or key, unlink=True, wait=wait):
            remove_path(staging)  # what a killed writer of this key left
            _sweep_replaced(target)
            try:
                yield staging
                if not staging.exists():
                    raise FileNotFoundError(f"publishing {key}: nothing was written at {staging}")
                target.parent.mkdir(parents=True, exist_ok=True)
                _into_place(staging, target)
            finally:
                remove_path(staging)

    @contextmanager
    def working_dir(self, prefix: str) -> Iterator[Path]:
        folder = self.local_dir(prefix)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder


@functools.lru_cache(maxsize=16)
def open_store(root: str, scratch: str | Path | None = None, access=None) -> ArtifactStore:
    """The store for a configured storage root: a local folder (an absolute path), or s3://bucket/prefix with
    its S3Access (s3_access.py) and a scratch folder. One per process and configuration: an object store
    connects (and checks its keys) once."""
    if not is_s3_url(root):
        return LocalStore(root, scratch)
    from mm_assets.storage.s3 import S3Store

    if scratch is None:
        raise ValueError(f"storage.root {root}: object storage needs a local scratch folder (storage.scratch)")
    return S3Store(root, scratch, access or S3Access.from_environment())

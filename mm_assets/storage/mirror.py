"""Local copies of stored objects that are checked before every use.

Each copy has a record beside the tree (never inside it, so a copied folder holds only the artifact's files):
the object's ETag and size it was copied from and the sha256 of the local bytes. A copy is used only when the
object still has that ETag and size (else it is stale) and the local file still has that size and sha256
(else it is corrupt); otherwise it is fetched again. A download must have the object's size, and the MD5
that a single-part upload's ETag is; an ETag that is not the MD5 of the bytes (multipart uploads, SSE-KMS)
is accepted when two downloads agree.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mm_assets.storage.paths import atomic_write_text, remove_path, safe_join

MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")


class CorruptDownload(OSError):
    """Two downloads of one object disagree, or a download has the wrong size."""


@dataclass(frozen=True)
class Remote:
    """What the store says about an object: its ETag (quotes stripped) and size."""

    etag: str
    size: int

    @classmethod
    def of(cls, info: dict) -> Remote:
        return cls(str(info.get("ETag") or info.get("etag") or "").strip('"'), int(info.get("size", info.get("Size", -1))))


def digests(path: Path) -> tuple[str, str]:
    """(md5, sha256) of a file, in one read."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            md5.update(block)
            sha.update(block)
    return md5.hexdigest(), sha.hexdigest()


@dataclass(frozen=True)
class Mirror:
    """Copies under `files/<rel>`, their records under `records/<rel>.json`."""

    files: Path
    records: Path

    def path(self, rel: str) -> Path:
        return safe_join(self.files, rel)

    def _record_path(self, rel: str) -> Path:
        return safe_join(self.records, f"{rel}.json")

    def record(self, rel: str) -> dict | None:
        try:
            return json.loads(self._record_path(rel).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def unchanged(self, rel: str) -> bool:
        """The local file is still the bytes recorded when it was copied or uploaded."""
        record, path = self.record(rel), self.path(rel)
        if record is None or not path.is_file() or path.stat().st_size != record.get("size"):
            return False
        return digests(path)[1] == record.get("sha256")

    def fresh(self, rel: str, remote: Remote) -> bool:
        """The local copy is the object as it is now: same ETag and size, local bytes unchanged."""
        record = self.record(rel)
        return record is not None and record.get("etag") == remote.etag and record.get("size") == remote.size \
            and self.unchanged(rel)

    def remember(self, rel: str, remote: Remote, sha256: str) -> None:
        atomic_write_text(self._record_path(rel), json.dumps({"etag": remote.etag, "size": remote.size,
                                                              "sha256": sha256}))

    def fetch(self, rel: str, remote: Remote, download: Callable[[Path], None]) -> Path:
        """The verified local copy of `rel` (downloaded again unless fresh)."""
        path = self.path(rel)
        if self.fresh(rel, remote):
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f".{path.name}.{os.getpid()}.part")
        try:
            sha = self._download(part, remote, download)
            self.forget(rel)
            os.replace(part, path)
        finally:
            part.unlink(missing_ok=True)
        self.remember(rel, remote, sha)
        return path

    @staticmethod
    def _download(part: Path, remote: Remote, download: Callable[[Path], None]) -> str:
        """Download into `part`; its sha256 once the bytes are known to be the object's."""
        seen = None
        for _ in range(2):
            part.unlink(missing_ok=True)
            download(part)
            size = part.stat().st_size
            if size != remote.size:
                raise CorruptDownload(f"downloaded {size} bytes, the object has {remote.size}")
            md5, sha = digests(part)
            if md5 == remote.etag or seen == sha or (seen is None and not MD5_ETAG.match(remote.etag)
                                                     and remote.etag.count("-") == 1):
                return sha
            seen = sha  # not the MD5 it should be (or an ETag of another kind): the next download must agree
        raise CorruptDownload(f"two downloads differ or do not match ETag {remote.etag}")

    def forget(self, rel: str) -> None:
        """Remove the copy (file or folder) and its records."""
        remove_path(self.path(rel))
        for record in (self._record_path(rel), safe_join(self.records, rel)):
            remove_path(record)

    def local_files(self, rel: str) -> list[str]:
        """Paths (relative to `rel`) of the local files under the folder `rel`."""
        root = self.path(rel)
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.is_dir() else []

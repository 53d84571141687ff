"""File digests (sha256 + size) recorded by a producer and checked by its consumer before use.

Every handoff in the graph (shard → blend → launch, checkpoint → resume) records a `FileDigest` per file and
compares it before the next stage reads the file: a size mismatch is cheap to see and says "truncated", a
sha256 mismatch catches the rest. Messages name the file, the expected and the actual value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mm_assets.storage.paths import sha256_file


@dataclass(frozen=True)
class FileDigest:
    sha256: str
    bytes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, *, where: str) -> FileDigest:
        """From a recorded {"sha256": ..., "bytes": ...}; ValueError naming `where` when malformed."""
        if not isinstance(data, dict) or not isinstance(data.get("sha256"), str) or len(data["sha256"]) != 64 \
                or not isinstance(data.get("bytes"), int) or isinstance(data["bytes"], bool) or data["bytes"] < 0:
            raise ValueError(f"{where}: expected {{sha256: <64 hex>, bytes: <int >= 0>}}, got {data!r}")
        return cls(data["sha256"], data["bytes"])


def file_digest(path: Path) -> FileDigest:
    path = Path(path)
    return FileDigest(sha256_file(path), path.stat().st_size)


def digest_mismatch(path: Path, expected: FileDigest, *, recorded_by: str) -> str | None:
    """None when `path` matches `expected`; else one line naming the file, the expected and the actual hash."""
    path = Path(path)
    if not path.is_file():
        return f"{path}: missing (recorded by {recorded_by}: sha256 {expected.sha256}, {expected.bytes} bytes)"
    actual = file_digest(path)
    if actual == expected:
        return None
    size = ""
    if actual.bytes != expected.bytes:
        kind = "truncated: " if actual.bytes < expected.bytes else ""
        size = f"; {kind}{actual.bytes} bytes, expected {expected.bytes}"
    return (f"{path}: sha256 mismatch, expected {expected.sha256} (recorded by {recorded_by}), "
            f"actual {actual.sha256}{size}")

"""The shard manifest: what `token_shards` published, with the sha256 and size of every file.

`manifest.json` is written last: a shard folder without one is incomplete. Locally the whole folder is also
published with one rename; on object storage, which has no rename, uploading the manifest after the data is
what commits the shard. File names are relative to the folder, so one manifest checks a local copy or
`s3://bucket/prefix/shards/<batch>/` alike. Consumers (the blend, the launch, the CPU trainer) compare the
files with it before reading them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mm_assets.digests import FileDigest, digest_mismatch
from mm_assets.shards.indexed import bin_path, idx_path, index_problems
from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.paths import atomic_write_text

MANIFEST_VERSION = 1
RECORDED_BY = "token_shards"


@dataclass(frozen=True)
class ShardManifest:
    """One shard folder's files (name → digest), documents and tokens."""

    documents: int
    tokens: int
    files: dict[str, FileDigest]

    def write(self, folder: Path) -> Path:
        """Write `folder`/manifest.json (atomically); call it after every other file is in place."""
        path = Path(folder) / ArtifactLayout.SHARD_MANIFEST
        body = {"version": MANIFEST_VERSION, "documents": self.documents, "tokens": self.tokens,
                "files": {name: d.as_dict() for name, d in sorted(self.files.items())}}
        atomic_write_text(path, json.dumps(body, indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def read(cls, folder: Path) -> ShardManifest:
        """ValueError naming the file when it is missing fields or of another version."""
        path = Path(folder) / ArtifactLayout.SHARD_MANIFEST
        try:
            data: Any = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: unreadable shard manifest: {err}") from None
        if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION or not isinstance(data.get("files"), dict):
            raise ValueError(f"{path}: not a version {MANIFEST_VERSION} shard manifest")
        odd = [name for name in data["files"] if not name or "/" in name or name in (".", "..")]
        if odd:
            raise ValueError(f"{path}: files {odd} are not plain file names in the shard folder")
        files = {name: FileDigest.from_dict(d, where=f"{path}: files.{name}") for name, d in data["files"].items()}
        return cls(int(data.get("documents", -1)), int(data.get("tokens", -1)), files)

    def prefix_digests(self, prefix: Path) -> dict[Path, FileDigest]:
        """The recorded digests of `prefix`.bin and .idx; ValueError when the manifest lacks either."""
        out = {}
        for path in (bin_path(prefix), idx_path(prefix)):
            if path.name not in self.files:
                raise ValueError(f"{Path(prefix).parent / ArtifactLayout.SHARD_MANIFEST} does not list {path.name}")
            out[path] = self.files[path.name]
        return out


def has_manifest(prefix: str | Path) -> bool:
    return (Path(prefix).parent / ArtifactLayout.SHARD_MANIFEST).is_file()


def manifest_problems(prefix: str | Path) -> list[str]:
    """Every file manifest.json lists (it must list `prefix`.bin/.idx) against its recorded sha256 and size."""
    prefix = Path(prefix)
    try:
        manifest = ShardManifest.read(prefix.parent)
        manifest.prefix_digests(prefix)
    except ValueError as err:
        return [str(err)]
    return [m for name, d in manifest.files.items()
            if (m := digest_mismatch(prefix.parent / name, d, recorded_by=RECORDED_BY))]


def shard_problems(prefix: str | Path, *, manifest_required: bool = True, allow_empty: bool = False) -> list[str]:
    """Everything wrong with the shard at `prefix` that reading it would not say clearly: the index against
    itself and its .bin (indexed.index_problems), then the files against manifest.json. Without
    `manifest_required` a shard that has no manifest is checked for consistency only."""
    prefix = Path(prefix)
    problems = index_problems(prefix, allow_empty=allow_empty)
    if has_manifest(prefix):
        problems += manifest_problems(prefix)
    elif manifest_required:
        problems.append(f"{prefix.parent / ArtifactLayout.SHARD_MANIFEST} is missing: the shard is incomplete (the manifest is "
                        "written last); rematerialize token_shards for it")
    return problems

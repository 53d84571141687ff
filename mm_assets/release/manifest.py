"""A release bundle's manifest.json: the sha256 and size of every file, what each part of the bundle is, and
the lineage that made it (experiment, crawl batches, checkpoint, tokenizers, code and library versions).

It is written last, after every other file: locally the bundle folder then appears by one rename; on object
storage, uploading the manifest after the data is what commits the bundle. Paths are POSIX paths relative to
the bundle folder, so one manifest checks a local copy or `s3://…/releases/<version>/` alike (verify.py).
Nothing in it depends on when it was written: the same inputs make the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from mm_assets.digests import FileDigest, file_digest
from mm_assets.storage.layout import ArtifactLayout

MANIFEST_FORMAT = "mm-pretrain.release-bundle"
MANIFEST_VERSION = 1


class ManifestError(ValueError):
    """A manifest.json that cannot be read; the message names the file and the field."""


def bundle_path(name: Any, *, where: str) -> str:
    """`name` when it is a relative POSIX path inside a bundle (no `..`, no absolute path, no backslash)."""
    path = PurePosixPath(name) if isinstance(name, str) else None
    if path is None or not name or path.is_absolute() or ".." in path.parts or "\\" in name or "\0" in name \
            or str(path) != name:
        raise ManifestError(f"{where}: {name!r} is not a path inside the bundle")
    return name


@dataclass(frozen=True)
class BundleManifest:
    release: dict[str, Any]  # version, model_name, internal, license
    contents: dict[str, Any]  # role (checkpoint, vocab, text_tokenizer, …) -> path in the bundle
    lineage: dict[str, Any]
    files: dict[str, FileDigest] = field(default_factory=dict)

    @classmethod
    def of_folder(cls, folder: Path, *, release: dict[str, Any], contents: dict[str, Any],
                  lineage: dict[str, Any]) -> BundleManifest:
        """Digest every file under `folder` (the manifest itself aside)."""
        folder = Path(folder)
        files = {p.relative_to(folder).as_posix(): file_digest(p) for p in sorted(folder.rglob("*"))
                 if p.is_file() and p.relative_to(folder).as_posix() != ArtifactLayout.BUNDLE_MANIFEST}
        return cls(release, contents, lineage, files)

    def to_json(self) -> str:
        body = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "release": self.release,
                "contents": self.contents, "lineage": self.lineage,
                "files": {name: d.as_dict() for name, d in sorted(self.files.items())}}
        return json.dumps(body, indent=2, sort_keys=True) + "\n"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    @property
    def total_bytes(self) -> int:
        return sum(d.bytes for d in self.files.values())

    def write(self, folder: Path) -> Path:
        path = Path(folder) / ArtifactLayout.BUNDLE_MANIFEST
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def from_json(cls, text: str, *, where: str) -> BundleManifest:
        """ManifestError naming `where` when the text is not a version-1 release manifest."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ManifestError(f"{where}: not JSON ({err})") from None
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise ManifestError(f"{where}: not a release manifest (format {MANIFEST_FORMAT!r})")
        if data.get("version") != MANIFEST_VERSION:
            raise ManifestError(f"{where}: version {data.get('version')!r}; this code reads version {MANIFEST_VERSION}")
        for key in ("release", "contents", "lineage", "files"):
            if not isinstance(data.get(key), dict):
                raise ManifestError(f"{where}: {key}: missing or not an object")
        files = {}
        for name, digest in data["files"].items():
            try:
                name = bundle_path(name, where=f"{where}: files")
                files[name] = FileDigest.from_dict(digest, where=f"{where}: files.{name}")
            except ValueError as err:
                raise ManifestError(str(err)) from None
        return cls(data["release"], data["contents"], data["lineage"], files)

    @classmethod
    def read(cls, folder: Path) -> BundleManifest:
        path = Path(folder) / ArtifactLayout.BUNDLE_MANIFEST
        if not path.is_file():
            raise ManifestError(f"{path} is missing: the bundle is incomplete (the manifest is written last)")
        return cls.from_json(path.read_text(encoding="utf-8"), where=str(path))

    def part(self, role: str) -> str:
        """The bundle path of one of its parts (contents.<role>); ManifestError when the manifest has none."""
        name = self.contents.get(role)
        if name is None:
            raise ManifestError(f"manifest.json: contents.{role} is missing")
        return bundle_path(name, where=f"manifest.json: contents.{role}")

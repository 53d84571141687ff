"""`mm release verify`: recompute every hash of a bundle against its manifest, the way a user who downloaded
it would, and name each file that is missing, differs, or is not in the manifest.

It needs only the bundle: no catalog, no Dagster. A bundle is a local folder or a prefix on object storage
(`s3://bucket/…/releases/<version>/`, read in a stream, nothing downloaded to disk; the endpoint and keys come
from the pipeline config's storage section or the environment, as for the store).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from mm_assets.digests import FileDigest
from mm_assets.release.manifest import BundleManifest, ManifestError
from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.s3_access import S3Access, is_s3_url
from mm_assets.storage.store import ArtifactStore

MANIFEST = ArtifactLayout.BUNDLE_MANIFEST


class BundleFiles(Protocol):
    """The files of one bundle, wherever it is."""

    where: str  # the bundle's folder or URL, for messages

    def names(self) -> list[str]:
        """Every file's path relative to the bundle."""

    def open(self, name: str) -> BinaryIO:
        """A binary stream of one file; FileNotFoundError when there is none."""


@dataclass(frozen=True)
class LocalBundle:
    folder: Path

    @property
    def where(self) -> str:
        return str(self.folder)

    def names(self) -> list[str]:
        return sorted(p.relative_to(self.folder).as_posix() for p in self.folder.rglob("*") if p.is_file())

    def open(self, name: str) -> BinaryIO:
        return open(self.folder / name, "rb")


@dataclass(frozen=True)
class S3Bundle:
    """A bundle under an s3:// prefix, read through an S3Store rooted at it (its s3fs filesystem, whose first
    use checks the keys: a refused one is a StorageAccessError naming the endpoint and the bucket)."""

    store: Any  # mm_assets.storage.s3.S3Store

    @property
    def where(self) -> str:
        return self.store.url_root

    @property
    def _root(self) -> str:
        return self.store.url_root[len("s3://"):]

    def names(self) -> list[str]:
        root = self._root + "/"
        return sorted(path[len(root):] for path in self.store.fs.find(self._root) if path.startswith(root))

    def open(self, name: str) -> BinaryIO:
        return self.store.fs.open(f"{self._root}/{name}", "rb")


@dataclass
class Verification:
    where: str
    manifest_sha256: str | None = None
    checked: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            return (f"{self.where}: OK, {self.checked} files ({self.bytes:,} bytes) match manifest.json "
                    f"(sha256 {self.manifest_sha256})")
        return f"{self.where}: {len(self.problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in self.problems)


def stream_digest(stream: BinaryIO, chunk: int = 1 << 20) -> FileDigest:
    digest, size = hashlib.sha256(), 0
    while block := stream.read(chunk):
        digest.update(block)
        size += len(block)
    return FileDigest(digest.hexdigest(), size)


def _compare(name: str, expected: FileDigest, actual: FileDigest) -> str | None:
    if actual == expected:
        return None
    size = "" if actual.bytes == expected.bytes else f"; {actual.bytes} bytes, manifest.json records {expected.bytes}"
    return f"{name}: sha256 mismatch, manifest.json records {expected.sha256}, the file has {actual.sha256}{size}"


def file_problems(bundle: BundleFiles, manifest: BundleManifest) -> Iterator[tuple[str, FileDigest | None, str | None]]:
    """(name, its digest or None, the problem or None) for every file the manifest lists, then every file it does
    not list."""
    present = set(bundle.names())
    for name, expected in sorted(manifest.files.items()):
        if name not in present:
            yield name, None, (f"{name}: missing (manifest.json records sha256 {expected.sha256}, "
                               f"{expected.bytes} bytes)")
            continue
        with bundle.open(name) as stream:
            actual = stream_digest(stream)
        yield name, actual, _compare(name, expected, actual)
    for name in sorted(present - set(manifest.files) - {MANIFEST}):
        yield name, None, f"{name}: not listed in manifest.json (added after the bundle was made)"


def read_manifest(bundle: BundleFiles) -> BundleManifest:
    try:
        with bundle.open(MANIFEST) as stream:
            text = stream.read().decode("utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{bundle.where}/{MANIFEST} is missing: not a release bundle, or an incomplete one "
                            "(the manifest is written last)") from None
    return BundleManifest.from_json(text, where=f"{bundle.where}/{MANIFEST}")


def verify_bundle(bundle: BundleFiles) -> Verification:
    """Every file the manifest lists, recomputed; a missing manifest is the one problem reported."""
    result = Verification(bundle.where)
    try:
        manifest = read_manifest(bundle)
    except ManifestError as err:
        result.problems.append(str(err))
        return result
    result.manifest_sha256 = manifest.sha256
    for _, digest, problem in file_problems(bundle, manifest):
        if problem:
            result.problems.append(problem)
        elif digest is not None:
            result.checked += 1
            result.bytes += digest.bytes
    return result


def open_bundle(target: str, access: S3Access | None = None) -> BundleFiles:
    """A bundle folder or s3:// URL (read with `access`, else the endpoint and keys of the environment);
    ManifestError when it is neither."""
    if is_s3_url(target):
        from mm_assets.storage.s3 import S3Store

        try:
            store = S3Store(target.rstrip("/"), Path(tempfile.gettempdir()) / "mm-release-verify",
                            access or S3Access.from_environment())
        except ValueError as err:
            raise ManifestError(str(err)) from None
        return S3Bundle(store)
    folder = Path(target)
    if "://" in target:
        raise ManifestError(f"{target}: give a bundle folder or an s3:// URL")
    if not folder.is_dir():
        raise ManifestError(f"{target}: no such folder (a release bundle: releases/<version>/ under the storage root)")
    return LocalBundle(folder.resolve())


def stored_bundle(store: ArtifactStore, key: str) -> BundleFiles:
    """The bundle at `key` where the store keeps it: its folder, or its objects (read in a stream, with the
    store's endpoint and keys)."""
    url = store.url(key)
    return open_bundle(url, getattr(store, "access", None)) if is_s3_url(url) else LocalBundle(store.local_dir(key))

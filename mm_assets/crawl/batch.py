"""Crawl batches: a manifest of URLs, snapshotted into storage when it is registered as a partition.

The snapshot makes a batch immutable: rematerializing a partition reads the same URLs even if the file
under sources/ was edited since. Registering the same content twice is a no-op; different content under
a registered name is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from mm_assets.config.pipeline import PipelineConfig
from mm_assets.storage.paths import sanitize_component
from mm_assets.storage.store import Storage

MAX_URL_LEN = 2048
_BATCH_KEY = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")


class BatchError(ValueError):
    """A manifest that cannot be registered; the message says which and why."""


@dataclass(frozen=True)
class ManifestEntry:
    line_no: int
    url: str
    error: str | None = None  # why this line cannot be crawled (recorded as a failed item)


@dataclass(frozen=True)
class BatchInfo:
    batch: str
    source: str
    manifest_sha256: str
    origin: str
    registered_at: str
    urls: int


def check_url(url: str) -> str | None:
    """Why `url` cannot be crawled, or None. Only absolute http(s) URLs without controls or spaces."""
    if len(url) > MAX_URL_LEN:
        return f"URL longer than {MAX_URL_LEN} characters"
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        return "URL contains whitespace or control characters"
    try:
        parts = urlsplit(url)
    except ValueError as err:
        return f"URL does not parse: {err}"
    if parts.scheme not in {"http", "https"}:
        return f"scheme {parts.scheme or '(none)'!r} is not http or https"
    if not parts.hostname:
        return "URL has no host"
    return None


def parse_manifest(text: str) -> list[ManifestEntry]:
    """One entry per non-blank, non-comment line; bad lines carry their reason instead of being dropped."""
    entries, seen = [], {}
    for line_no, raw in enumerate(text.splitlines(), start=1):
        url = raw.strip()
        if not url or url.startswith("#"):
            continue
        error = check_url(url)
        if error is None and url in seen:
            error = f"duplicate of line {seen[url]}"
        seen.setdefault(url, line_no)
        entries.append(ManifestEntry(line_no, url, error))
    return entries


def batch_key(source: str, manifest: Path) -> str:
    """Partition key `<source>-<manifest stem>`, e.g. youtube-2026-11-29."""
    key = f"{source}-{sanitize_component(manifest.stem)}".lower()
    if not _BATCH_KEY.match(key):
        raise BatchError(f"manifest {manifest.name!r} gives batch key {key!r}; rename it to [a-z0-9._-]")
    return key


def source_of(manifest: Path, cfg: PipelineConfig, source: str | None = None) -> str:
    """The manifest's source: given, or the name of its parent folder (sources/<source>/<batch>.txt)."""
    name = source or manifest.resolve().parent.name
    if name not in cfg.sources.names:
        raise BatchError(
            f"manifest {manifest}: source {name!r} is not one of sources.names {cfg.sources.names}; "
            "put it under sources/<source>/ or pass --source"
        )
    return name


def load_batch(storage: Storage, batch: str) -> tuple[BatchInfo, list[ManifestEntry]]:
    """The registered snapshot of `batch`; fails with the command to register it when it is missing."""
    info_key = storage.layout.batch_info(batch)
    if not storage.store.exists(info_key):
        raise BatchError(f"batch {batch!r} is not registered ({storage.store.url(info_key)} is missing); "
                         "run `mm crawl add-batch FILE`")
    info = BatchInfo(**json.loads(storage.store.read_text(info_key)))
    return info, parse_manifest(storage.store.read_text(storage.layout.batch_manifest(batch)))


def register_batch(
    storage: Storage, cfg: PipelineConfig, manifest: Path, source: str | None = None
) -> tuple[BatchInfo, bool]:
    """Snapshot `manifest` into storage. Returns (info, created); same content again is a no-op."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise BatchError(f"manifest {manifest} does not exist")
    data = manifest.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BatchError(f"manifest {manifest} is not UTF-8 ({err}); save it as UTF-8") from None
    src = source_of(manifest, cfg, source)
    key = batch_key(src, manifest)
    sha = hashlib.sha256(data).hexdigest()
    if storage.store.exists(storage.layout.batch_info(key)):
        existing, _ = load_batch(storage, key)
        if existing.manifest_sha256 != sha:
            raise BatchError(
                f"batch {key!r} is already registered with different content (sha256 {existing.manifest_sha256[:12]}"
                f" vs {sha[:12]}); batches are immutable: save the new URLs as a new manifest file"
            )
        return existing, False
    entries = parse_manifest(text)
    if not entries:
        raise BatchError(f"manifest {manifest} has no URLs (one URL a line, '#' starts a comment)")
    info = BatchInfo(
        batch=key,
        source=src,
        manifest_sha256=sha,
        origin=str(manifest.resolve()),
        registered_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        urls=len(entries),
    )
    storage.store.write_bytes(storage.layout.batch_manifest(key), data)
    storage.store.write_text(storage.layout.batch_info(key), json.dumps(asdict(info), indent=2))  # last: the marker
    return info, True


def find_manifests(cfg: PipelineConfig) -> list[tuple[str, Path]]:
    """(source, path) of every manifest under the configured sources folder, in a stable order."""
    found = []
    for source in cfg.sources.names:
        folder = cfg.manifest_dir / source
        if folder.is_dir():
            found += [(source, p) for p in sorted(folder.glob("*.txt")) if p.is_file()]
    return found

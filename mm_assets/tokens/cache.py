"""Per-item token cache: a rerun reuses the codes of every item whose input, tokenizer and code are unchanged.

Why a content-hash cache rather than Dagster code and data versions: Dagster's versions tell whether a whole
partition is stale, but rematerializing still runs the asset body over every item, and one changed item of a
batch makes the whole batch stale again. The cache works per item and from the bytes themselves, so it holds
in the CLI, in tests and after the Dagster instance is wiped. An entry's key is the sha256 of

- the input file's sha256 (a changed file is a different item),
- the tokenizer identity's fingerprint (weights sha256, library versions and every setting that shapes the
  codes: chunk_seconds, bandwidth, resolution, fps, ..., see identity.py), and
- the sha256 of the source files that turn a file into codes (`CODE_MODULES`, e.g. the VTT parser for text),

so new weights, a changed setting, an upgraded library or edited tokenizer code re-tokenize exactly the items
they affect. Only ok results are cached; a failed item is retried on every run (its cause may be transient).

An entry (ArtifactLayout.token_cache_entry) is a JSON header line (format, key, shape, notes, payload sha256) and the
int32 codes. It is written atomically (temp + fsync + rename); one whose header, size or checksum does not
match is counted as corrupt, never used, and rewritten. Deleting the folder is always safe: it costs a rerun.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from mm_assets.storage.store import Storage

CACHE_FORMAT = 1
MAGIC = b"mm-token-cache\n"
# Modules whose source shapes each modality's codes (beyond the libraries recorded in the identity).
CODE_MODULES = {
    "text": ("mm_assets.tokens.text", "mm_assets.etl.subtitles"),
    "audio": ("mm_assets.tokens.audio", "mm_assets.tokens.encodec_model"),
    "image": ("mm_assets.tokens.vqgan", "mm_assets.tokens.vq"),
    "video": ("mm_assets.tokens.video", "mm_assets.tokens.vq"),
}


@cache
def code_fingerprint(modality: str) -> str:
    """sha256 over the source files of the modules that make `modality`'s codes."""
    h = hashlib.sha256()
    for name in CODE_MODULES[modality]:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise RuntimeError(f"token cache: cannot locate the source of {name}")
        h.update(name.encode() + b"\0" + Path(spec.origin).read_bytes() + b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class CachedCodes:
    codes: np.ndarray  # (levels, frames) int32
    notes: str | None


@dataclass
class CacheStats:
    """What one materialization got from the cache; `corrupt` entries are also counted as misses."""

    hits: int = 0
    misses: int = 0
    corrupt: int = 0
    written: int = 0

    def metadata(self) -> dict[str, int]:
        return {"cache_hits": self.hits, "cache_misses": self.misses, "cache_corrupt": self.corrupt,
                "cache_written": self.written}


class TokenCache:
    """Codes by key in storage's token cache, for one modality's tokenizer identity and code."""

    def __init__(self, storage: Storage, modality: str, identity_sha256: str):
        self.store, self.layout, self.modality = storage.store, storage.layout, modality
        self.stats = CacheStats()
        self._salt = json.dumps({"format": CACHE_FORMAT, "modality": modality, "identity": identity_sha256,
                                 "code": code_fingerprint(modality)}, sort_keys=True)

    def key(self, input_sha256: str) -> str:
        return hashlib.sha256(f"{self._salt}\0{input_sha256}".encode()).hexdigest()

    def entry(self, key: str) -> str:
        return self.layout.token_cache_entry(self.modality, key)

    def get(self, key: str) -> CachedCodes | None:
        """The entry's codes, or None (counted as a miss, and as corrupt when a damaged entry was found)."""
        try:
            data = self.store.read_bytes(self.entry(key))
        except FileNotFoundError:
            self.stats.misses += 1
            return None
        found = _parse(data, key)
        if found is None:
            self.stats.corrupt += 1
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return found

    def put(self, key: str, codes: np.ndarray, notes: str | None) -> None:
        payload = np.ascontiguousarray(codes, dtype="<i4").tobytes()
        header = {"format": CACHE_FORMAT, "key": key, "shape": list(codes.shape), "notes": notes,
                  "payload_sha256": hashlib.sha256(payload).hexdigest()}
        self.store.write_bytes(self.entry(key), MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + payload)
        self.stats.written += 1


def _parse(data: bytes, key: str) -> CachedCodes | None:
    """Codes from an entry's bytes, or None when anything about it is off (truncated, edited, another key)."""
    if not data.startswith(MAGIC):
        return None
    line_end = data.find(b"\n", len(MAGIC))
    try:
        header = json.loads(data[len(MAGIC):line_end]) if line_end > 0 else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(header, dict) or header.get("format") != CACHE_FORMAT or header.get("key") != key:
        return None
    shape, notes, payload = header.get("shape"), header.get("notes"), data[line_end + 1:]
    if (not isinstance(shape, list) or len(shape) != 2 or not all(isinstance(n, int) and n >= 0 for n in shape)
            or not (notes is None or isinstance(notes, str))):
        return None
    if len(payload) != 4 * shape[0] * shape[1] or hashlib.sha256(payload).hexdigest() != header.get("payload_sha256"):
        return None
    return CachedCodes(np.frombuffer(payload, dtype="<i4").astype(np.int32).reshape(shape), notes)

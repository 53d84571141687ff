"""Per-batch token files: one Parquet per modality, one row per item (codes or the reason there are none).

A token file (ArtifactLayout.token_file) holds unique_id, status (ok / failed), reason, message, levels, frames and
the codes flattened level-major (codes[q * frames + t]). The tokenizer identity travels in the file's
schema metadata, so codes never lose the name, weights hash and library versions that made them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

IDENTITY_KEY = b"mm.tokenizer"
TOKENS_SCHEMA = pa.schema(
    [
        ("unique_id", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("message", pa.string()),
        ("levels", pa.int32()),
        ("frames", pa.int32()),
        ("codes", pa.list_(pa.int32())),
        ("notes", pa.string()),
    ]
)


@dataclass
class TokenRow:
    unique_id: str
    status: str  # ok / failed
    reason: str | None = None  # failed: a short class (too_short, no_frames, corrupt_media, ...)
    message: str | None = None
    codes: np.ndarray | None = None  # (levels, frames) int32
    notes: str | None = None  # e.g. "silent"

    def as_arrow_row(self) -> dict[str, Any]:
        codes = None if self.codes is None else np.asarray(self.codes, dtype=np.int32)
        if codes is not None and codes.ndim == 1:
            codes = codes[None, :]
        return {
            "unique_id": self.unique_id,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "levels": None if codes is None else codes.shape[0],
            "frames": None if codes is None else codes.shape[1],
            "codes": None if codes is None else codes.reshape(-1),
            "notes": self.notes,
        }


def write_tokens(path: Path, rows: list[TokenRow], identity: dict[str, Any]) -> None:
    """Write rows sorted by unique_id (deterministic bytes) with the identity in the schema metadata (to a
    staging path: the store publishes it)."""
    ordered = sorted(rows, key=lambda r: r.unique_id)
    schema = TOKENS_SCHEMA.with_metadata({IDENTITY_KEY: json.dumps(identity, sort_keys=True).encode()})
    table = pa.Table.from_pylist([r.as_arrow_row() for r in ordered], schema=schema)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")


def read_identity(path: Path) -> dict[str, Any]:
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(IDENTITY_KEY, b"{}"))


def read_tokens(path: Path) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """(unique_id -> codes (levels, frames), failed rows) from one token file."""
    codes, failed = {}, []
    for row in pq.read_table(path).to_pylist():
        if row["status"] == "ok":
            flat = np.asarray(row["codes"], dtype=np.int32)
            codes[row["unique_id"]] = flat.reshape(row["levels"], row["frames"])
        else:
            failed.append(row)
    return codes, failed

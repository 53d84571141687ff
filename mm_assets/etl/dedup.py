"""Exact deduplication by content hash (sha256 of an item's primary media), within a batch and across batches.

Dedup runs over every crawled item, before validation: a copy is a duplicate whether or not its original
passes validation (an original that is quarantined stays the original; fixing it is what brings the
content in). Within a batch the first item by manifest line wins. Across batches the batch registered
first wins: batch order is (registered_at, batch key), so the answer does not depend on which batch
happened to be materialized first. A hash first seen by a batch registered *later* does not exclude an
item here; instead that later batch is reported as superseded (rematerializing it turns its copy into a
duplicate). Duplicates are never dropped silently: each is written to duplicates.parquet with its winner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mm_assets.storage.layout import EVERY
from mm_assets.storage.paths import sanitize_component
from mm_assets.storage.store import Storage

# Every content hash a batch saw. The batch is the folder name (metadata/<batch>/hashes.parquet), as in
# the DuckDB catalog; registered_at orders batches for cross-batch dedup.
HASHES_SCHEMA = pa.schema(
    [
        ("hash", pa.string()),
        ("hash_of", pa.string()),  # video / audio / text / image
        ("unique_id", pa.string()),
        ("line_no", pa.int64()),
        ("status", pa.string()),  # accepted / quarantined (the first copy) / duplicate
        ("winner_unique_id", pa.string()),  # the first copy of this content (itself, for a first copy)
        ("winner_batch", pa.string()),
        ("registered_at", pa.string()),  # this batch's registration time (ISO 8601)
    ]
)


FIRST_COPY = ("accepted", "quarantined")  # the statuses of the item that holds a content hash


class PriorHash(NamedTuple):
    """A content hash whose first copy another batch holds (accepted or quarantined)."""

    batch: str
    unique_id: str
    order: tuple[str, str]  # (registered_at, batch): smaller wins


@dataclass(frozen=True)
class Candidate:
    line_no: int
    unique_id: str | None  # None only for an item whose ledger record lacks an id (it is quarantined)
    content_hash: str


@dataclass(frozen=True)
class Duplicate:
    candidate: Candidate
    kind: Literal["within_batch", "across_batches"]
    winner_unique_id: str | None
    winner_batch: str


@dataclass
class DedupResult:
    originals: list[Candidate] = field(default_factory=list)  # first copies: validated next
    duplicates: list[Duplicate] = field(default_factory=list)
    # later-registered batch -> unique_ids there whose content this batch now wins
    superseded: dict[str, list[str]] = field(default_factory=dict)

    def count(self, kind: str) -> int:
        return sum(d.kind == kind for d in self.duplicates)


def dedup(
    candidates: Sequence[Candidate], *, batch: str, registered_at: str, prior: Mapping[str, PriorHash]
) -> DedupResult:
    """Split every item that has a content hash into originals and duplicates (first by manifest line within
    the batch; earlier registered batch across batches)."""
    order = (registered_at, batch)
    result = DedupResult()
    seen: dict[str, Candidate] = {}
    for cand in sorted(candidates, key=lambda c: (c.line_no, c.unique_id or "")):
        earlier = prior.get(cand.content_hash)
        if earlier is not None and earlier.batch != batch and earlier.order < order:
            result.duplicates.append(Duplicate(cand, "across_batches", earlier.unique_id, earlier.batch))
        elif cand.content_hash in seen:
            result.duplicates.append(Duplicate(cand, "within_batch", seen[cand.content_hash].unique_id, batch))
        else:
            seen[cand.content_hash] = cand
            result.originals.append(cand)
            if earlier is not None and earlier.batch != batch:
                result.superseded.setdefault(earlier.batch, []).append(earlier.unique_id)
    for ids in result.superseded.values():
        ids.sort()
    return result


def load_prior_hashes(storage: Storage, *, exclude_batch: str) -> dict[str, PriorHash]:
    """The first copies (accepted or quarantined) in every other batch's hashes file.

    When two batches both hold a first copy of a hash (one was materialized before an earlier-registered batch), the earlier-registered one is
    kept. Files written before dedup ran over every item read the same way: their quarantined rows were
    first copies too. Holds every hash in memory (~150 bytes each): fine to ~10M items; past that, look the
    batch's own hashes up in the DuckDB catalog instead.
    """
    layout, store = storage.layout, storage.store
    skip = sanitize_component(exclude_batch)
    prior: dict[str, PriorHash] = {}
    for key in store.list(layout.hashes_file(EVERY)):
        batch = layout.batch_of(key)
        if batch == skip:
            continue
        try:
            table = pq.read_table(store.local_path(key), columns=["hash", "unique_id", "status", "registered_at"])
        except (pa.ArrowInvalid, OSError) as err:
            raise ValueError(f"{store.url(key)} is not a readable hashes file ({err}); rematerialize media_metadata "
                             f"for batch {batch!r}") from None
        table = table.filter(pc.is_in(table["status"], pa.array(FIRST_COPY)))
        for h, uid, registered_at in zip(*(table[c].to_pylist() for c in ("hash", "unique_id", "registered_at"))):
            entry = PriorHash(batch, uid, (registered_at or "", batch))
            if h not in prior or entry.order < prior[h].order:
                prior[h] = entry
    return prior

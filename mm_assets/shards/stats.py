"""Shard statistics for asset checks: plain numbers computed from the shard and its vocab layout.

A token's expected modality comes from the markers around it: ids between `<aud>` and `</aud>` must be audio
codes, ids outside every marker pair must be text ids or special tokens. Markers never span documents.
Everything is vectorised and runs over document-aligned chunks, so a shard never has to fit in memory twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from mm_assets.shards.documents import DEFAULT_MARKERS
from mm_assets.shards.indexed import TOKEN_DTYPE, read_index, read_tokens
from mm_assets.shards.vocab import TEXT, TokenRange, VocabLayout

DEFAULT_CHUNK_TOKENS = 1 << 20  # small enough that temporaries are reused, not page-faulted in again


@dataclass(frozen=True)
class RangeStats:
    """Ids found in one modality's spans against the range the layout allows it."""

    name: str
    start: int
    stop: int
    tokens: int = 0
    min_id: int | None = None
    max_id: int | None = None
    out_of_range: int = 0

    def merge(self, other: RangeStats) -> RangeStats:
        ids = [x for x in (self.min_id, self.max_id, other.min_id, other.max_id) if x is not None]
        return RangeStats(
            self.name, self.start, self.stop, self.tokens + other.tokens,
            min(ids) if ids else None, max(ids) if ids else None, self.out_of_range + other.out_of_range,
        )


@dataclass(frozen=True)
class LengthStats:
    documents: int
    min: int
    p50: float
    p95: float
    max: int
    mean: float


@dataclass(frozen=True)
class ShardStats:
    documents: int
    tokens: int
    empty_documents: int
    documents_without_eod: int
    unbalanced_documents: int  # markers unclosed, nested or closing without an opening
    special_tokens: int
    special_token_ratio: float
    lengths: LengthStats
    modalities: dict[str, RangeStats]

    @property
    def out_of_range(self) -> int:
        return sum(r.out_of_range for r in self.modalities.values())

    def as_metadata(self) -> dict[str, Any]:
        """Flat name -> number, ready for asset-check metadata."""
        flat: dict[str, Any] = {k: v for k, v in asdict(self).items() if k not in ("lengths", "modalities")}
        flat["out_of_range"] = self.out_of_range
        flat.update({f"length_{k}": v for k, v in asdict(self.lengths).items() if k != "documents"})
        for name, r in self.modalities.items():
            flat.update({f"{name}_{k}": v for k, v in asdict(r).items() if k != "name"})
        return flat


def length_distribution(lengths: ArrayLike) -> LengthStats:
    """min / p50 / p95 / max / mean of document lengths in tokens (zeros for an empty shard)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size == 0:
        return LengthStats(0, 0, 0.0, 0.0, 0, 0.0)
    p50, p95 = np.percentile(lengths, [50, 95])
    return LengthStats(
        int(lengths.size), int(lengths.min()), float(p50), float(p95), int(lengths.max()), float(lengths.mean())
    )


def special_token_ratio(tokens: ArrayLike, layout: VocabLayout) -> float:
    tokens = np.asarray(tokens)
    return float(np.isin(tokens, layout.special_ids).sum() / tokens.size) if tokens.size else 0.0


def document_stats(
    tokens: ArrayLike,
    lengths: ArrayLike,
    layout: VocabLayout,
    markers: Mapping[str, tuple[str, str]] | None = None,
) -> ShardStats:
    """Statistics of documents given as their concatenated ids and per-document lengths."""
    tokens = np.asarray(tokens)
    lengths = np.asarray(lengths, dtype=np.int64)
    if int(lengths.sum()) != tokens.size:
        raise ValueError(f"document lengths sum to {int(lengths.sum())}, but there are {tokens.size} tokens")
    pairs = _marker_ids(layout, DEFAULT_MARKERS if markers is None else markers)
    ends = np.cumsum(lengths)
    nonempty = lengths > 0
    last = tokens[ends[nonempty] - 1]
    is_special = np.isin(tokens, layout.special_ids)
    specials = int(is_special.sum())
    ranges, unbalanced = _modality_ranges(tokens, lengths, layout, pairs, is_special)
    return ShardStats(
        documents=int(lengths.size),
        tokens=int(tokens.size),
        empty_documents=int((~nonempty).sum()),
        documents_without_eod=int((last != layout.eod_id).sum()),
        unbalanced_documents=unbalanced,
        special_tokens=specials,
        special_token_ratio=specials / tokens.size if tokens.size else 0.0,
        lengths=length_distribution(lengths),
        modalities=ranges,
    )


def shard_stats(
    prefix: str | Path,
    layout: VocabLayout,
    markers: Mapping[str, tuple[str, str]] | None = None,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
) -> ShardStats:
    """Statistics of a written shard, read through its index in document-aligned chunks."""
    index = read_index(prefix)
    bounds = np.concatenate([[0], np.cumsum(index.lengths, dtype=np.int64)])
    if not np.array_equal(index.pointers, bounds[:-1] * TOKEN_DTYPE.itemsize):
        raise ValueError(f"{prefix}: sequences are not stored back to back; not a shard this code wrote")
    doc_bounds = bounds[index.document_indices]  # token offset where each document starts (and the end)
    doc_lengths = np.diff(doc_bounds)
    tokens = read_tokens(prefix)
    parts: list[ShardStats] = []
    first = 0
    while first < doc_lengths.size or not parts:
        last = int(np.searchsorted(doc_bounds, doc_bounds[first] + chunk_tokens, side="right")) - 1
        last = min(max(last, first + 1), doc_lengths.size)
        lo, hi = doc_bounds[first], doc_bounds[last]
        parts.append(document_stats(tokens[lo:hi], doc_lengths[first:last], layout, markers))
        first = last
    return _combine(parts, doc_lengths)


def _combine(parts: list[ShardStats], doc_lengths: np.ndarray) -> ShardStats:
    tokens = sum(p.tokens for p in parts)
    specials = sum(p.special_tokens for p in parts)
    modalities = dict(parts[0].modalities)
    for p in parts[1:]:
        modalities = {name: r.merge(p.modalities[name]) for name, r in modalities.items()}
    return ShardStats(
        documents=sum(p.documents for p in parts),
        tokens=tokens,
        empty_documents=sum(p.empty_documents for p in parts),
        documents_without_eod=sum(p.documents_without_eod for p in parts),
        unbalanced_documents=sum(p.unbalanced_documents for p in parts),
        special_tokens=specials,
        special_token_ratio=specials / tokens if tokens else 0.0,
        lengths=length_distribution(doc_lengths),
        modalities=modalities,
    )


def _marker_ids(layout: VocabLayout, markers: Mapping[str, tuple[str, str]]) -> dict[str, tuple[int, int]]:
    pairs = {}
    for name in layout.modality_names:
        if name not in markers:
            raise ValueError(f"no markers configured for modality {name!r} (have {sorted(markers)})")
        pairs[name] = (layout.token_id(markers[name][0]), layout.token_id(markers[name][1]))
    return pairs


def _range_stats(name: str, allowed: TokenRange, ids: np.ndarray) -> RangeStats:
    if ids.size == 0:
        return RangeStats(name, allowed.start, allowed.stop)
    outside = int(((ids < allowed.start) | (ids >= allowed.stop)).sum())
    return RangeStats(name, allowed.start, allowed.stop, int(ids.size), int(ids.min()), int(ids.max()), outside)


def _modality_ranges(
    tokens: np.ndarray,
    lengths: np.ndarray,
    layout: VocabLayout,
    pairs: Mapping[str, tuple[int, int]],
    is_special: np.ndarray,
) -> tuple[dict[str, RangeStats], int]:
    """Per modality: ids inside its markers vs its range; text: ids outside all markers. And bad documents."""
    region = np.full(tokens.size, -1, dtype=np.int16)  # -1: outside every marker pair
    starts = np.cumsum(lengths) - lengths
    nonempty = lengths > 0
    unbalanced = np.zeros(lengths.size, dtype=bool)
    for k, (opening, closing) in enumerate(pairs.values()):
        is_open, is_close = tokens == opening, tokens == closing
        if not (is_open.any() or is_close.any()):
            continue
        depth = np.cumsum(is_open, dtype=np.int32) - np.cumsum(is_close, dtype=np.int32)
        before = np.where(starts > 0, depth[np.maximum(starts - 1, 0)], 0)  # carried in from earlier documents
        depth -= np.repeat(before, lengths)
        s, e = starts[nonempty], (starts + lengths)[nonempty]
        bad = (np.minimum.reduceat(depth, s) < 0) | (np.maximum.reduceat(depth, s) > 1) | (depth[e - 1] != 0)
        unbalanced[nonempty] |= bad
        inside = (depth > 0) & ~is_open & ~is_close
        unbalanced[np.unique(np.searchsorted(starts, np.flatnonzero(inside & (region >= 0)), "right") - 1)] = True
        region[inside] = k
    stats = {TEXT: _range_stats(TEXT, layout.text, tokens[(region == -1) & ~is_special])}
    for k, name in enumerate(pairs):
        stats[name] = _range_stats(name, layout.modality(name).range, tokens[region == k])
    return stats, int(unbalanced.sum())

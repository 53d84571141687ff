"""What a release was trained on, read from the metadata catalog: the items behind the documents of every shard
its blend reads (each shard's documents.parquet names them), and their sources, modalities, hours, languages,
licenses, crawl dates, plus the duplicates and quarantined items of those batches.

The data card (cards.py) and the license check (checklist.py) both read these facts, so they cannot disagree.
A blend entry no crawl batch made (a canary set injected on purpose, a plain Megatron prefix made elsewhere)
has no documents.parquet: its documents are counted, with an unknown license.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mm_assets.config.pipeline import PipelineConfig
from mm_assets.etl.catalog import CatalogError, query_catalog
from mm_assets.release.config import license_id
from mm_assets.storage.store import Storage

UNKNOWN = "unknown"

# The training items: every document of the blend's shards, joined to its metadata row (NULL when it has none).
_ITEMS = """
WITH docs AS (SELECT DISTINCT unique_id FROM read_parquet(?))
SELECT d.unique_id, m.source, m.batch, m.modalities, m.metadata.license AS license,
       m.metadata.license_source AS license_source, m.metadata.language AS language,
       m.metadata.duration_seconds AS seconds, m.metadata.upload_date AS upload_date,
       m.data_card_info.pii_detection_method AS pii_method,
       list_min([p.timestamp FOR p IN m.processing_log IF p.stage = 'crawl']) AS crawled_at
FROM docs d LEFT JOIN media_metadata m USING (unique_id)
ORDER BY d.unique_id
"""
_QUARANTINE = """
SELECT batch, count(*) AS items, list(reason) AS reasons FROM quarantine
WHERE list_contains(?, batch) GROUP BY batch ORDER BY batch
"""
_DUPLICATES = """
SELECT batch, count(*) AS items FROM duplicates WHERE list_contains(?, batch) GROUP BY batch ORDER BY batch
"""


@dataclass(frozen=True)
class LicenseCount:
    source: str
    license: str  # the SPDX id (license_id), or "unknown"
    stated_as: str | None  # the license as the items state it
    license_source: str  # where it was read (page_json_ld, config_default, none, …)
    items: int


@dataclass(frozen=True)
class TrainingData:
    batches: tuple[str, ...]
    items: list[dict[str, Any]]  # one per training document: unique_id, source, modalities, license, …
    other_sources: dict[str, int] = field(default_factory=dict)  # lineage.other_sources' label -> documents
    quarantined: dict[str, tuple[int, dict[str, int]]] = field(default_factory=dict)  # batch -> (items, reasons)
    duplicates: dict[str, int] = field(default_factory=dict)

    def licenses(self) -> list[LicenseCount]:
        """Items per (source, license, where it was stated), the unknown ones included."""
        counts: dict[tuple[str, str, str | None, str], int] = {}
        for item in self.items:
            source = item["source"] or f"{item['unique_id'].split('_', 1)[0]} (no metadata row)"
            stated = item["license"]
            key = (source, license_id(stated) or UNKNOWN, stated, item["license_source"] or "none")
            counts[key] = counts.get(key, 0) + 1
        rows = [LicenseCount(*key, n) for key, n in sorted(counts.items())]
        rows += [LicenseCount(label, UNKNOWN, None, "none", n) for label, n in self.other_sources.items()]
        return rows


def _rows(storage: Storage, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    """A read-only query on the catalog (on object storage, its views read through the store)."""
    try:
        cols, rows = query_catalog(storage.store, sql, params)
    except FileNotFoundError as err:  # no catalog in the store
        raise CatalogError(f"{err}: materialize metadata_catalog first") from None
    return [dict(zip(cols, row)) for row in rows]


def _views(storage: Storage) -> set[str]:
    return {r["name"] for r in _rows(storage, "SELECT view_name AS name FROM duckdb_views() WHERE NOT internal", [])}


def read_training_data(storage: Storage, batches: Sequence[str],
                       other_sources: Mapping[str, str] | None = None) -> TrainingData:
    """The facts above for the blend's crawl batches (and its other entries: label -> Megatron prefix)."""
    layout, store = storage.layout, storage.store
    documents = [store.url(layout.shard_documents(b)) for b in batches]
    missing = [d for b, d in zip(batches, documents) if not store.exists(layout.shard_documents(b))]
    if missing:
        raise CatalogError(f"shard documents missing: {', '.join(missing)}; rematerialize token_shards for them")
    views = _views(storage)
    if "media_metadata" not in views:
        raise CatalogError("the catalog has no media_metadata view: materialize metadata_catalog")
    items = _rows(storage, _ITEMS, [documents]) if documents else []
    quarantined = {}
    if "quarantine" in views:
        for row in _rows(storage, _QUARANTINE, [list(batches)]):
            reasons: dict[str, int] = {}
            for reason in row["reasons"]:
                head = (reason or "unknown").split(":", 1)[0]
                reasons[head] = reasons.get(head, 0) + 1
            quarantined[row["batch"]] = (row["items"], reasons)
    duplicates = {}
    if "duplicates" in views:
        duplicates = {r["batch"]: r["items"] for r in _rows(storage, _DUPLICATES, [list(batches)])}
    others = {label: _documents(storage, prefix) for label, prefix in (other_sources or {}).items()}
    return TrainingData(tuple(batches), items, others, quarantined, duplicates)


def _documents(storage: Storage, prefix: str) -> int:
    """Documents of a blend prefix no crawl batch made (0 when its index cannot be read here)."""
    from mm_assets.shards.indexed import read_index
    from mm_assets.train.launch.preflight import local_prefixes

    try:
        return read_index(local_prefixes(storage)(prefix)).documents
    except (OSError, ValueError):
        return 0


def pii_methods(cfg: PipelineConfig, data: TrainingData) -> list[str]:
    """The PII methods the items record (their data_card_info), else the configured one."""
    recorded = sorted({i["pii_method"] for i in data.items if i["pii_method"]})
    return recorded or [cfg.metadata.pii_detection_method]

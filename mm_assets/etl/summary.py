"""What `mm ingest` tells the user at the end: one batch's outcome, read from the files the run wrote
(the crawl ledger and the metadata Parquet), never by recomputing anything."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import polars as pl
import pyarrow.parquet as pq

from checks.metadata import check_quarantine
from mm_assets.config.pipeline import PipelineConfig
from mm_assets.crawl.ledger import read_ledger
from mm_assets.storage.store import Storage

STATED = ("page_json_ld", "page_html", "page", "info_json")  # license sources that are the item's own
TOP = 3  # reasons shown per line


@dataclass
class IngestSummary:
    batch: str
    source: str
    policy: str  # the source's metadata.license_policy
    crawl: Counter = field(default_factory=Counter)  # ok / skipped / failed
    crawl_reasons: Counter = field(default_factory=Counter)  # reasons of skipped and failed items
    has_metadata: bool = False
    rows: int = 0
    duplicates: int = 0
    quarantined: int = 0
    quarantine_reasons: Counter = field(default_factory=Counter)
    fraction: float = 0.0
    max_fraction: float = 1.0
    license_sources: Counter = field(default_factory=Counter)
    date_sources: Counter = field(default_factory=Counter)

    @property
    def over_limit(self) -> bool:
        return self.has_metadata and self.fraction > self.max_fraction


def read_ingest_summary(storage: Storage, *, batch: str, source: str, cfg: PipelineConfig) -> IngestSummary:
    """The batch's outcome from its crawl ledger and metadata files; parts whose files are missing (a run that
    stopped early) stay empty."""
    layout, store = storage.layout, storage.store
    out = IngestSummary(batch, source, str(cfg.metadata.license_policy_for(source)))
    if store.exists(layout.crawl_ledger(batch)):
        records = read_ledger(store.local_path(layout.crawl_ledger(batch)))
        out.crawl = Counter(r.status for r in records)
        out.crawl_reasons = Counter(r.reason for r in records if r.status != "ok" and r.reason)
    keys = [layout.metadata_file(batch), layout.quarantine_file(batch), layout.duplicates_file(batch)]
    if not all(store.exists(k) for k in keys):
        return out
    paths = [store.local_path(k) for k in keys]
    _, share = check_quarantine(*paths, cfg.metadata)
    out.has_metadata = True
    out.rows = pq.read_metadata(paths[0]).num_rows
    out.duplicates = pq.read_metadata(paths[2]).num_rows
    out.quarantined, out.fraction, out.max_fraction = share["quarantined"], share["fraction"], share["max_fraction"]
    out.quarantine_reasons = Counter(share.get("by_reason", {}))
    meta = pl.read_parquet(paths[0], columns=["metadata"])["metadata"].struct
    fields = set(meta.fields)
    if "license_source" in fields:  # schema v2
        out.license_sources = Counter(meta.field("license_source").fill_null("null").to_list())
        out.date_sources = Counter(meta.field("upload_date_source").fill_null("none").to_list())
    return out


def _top(counts: Counter, n: int = TOP) -> str:
    """The `n` largest counts, largest first, ties by name."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{k} {v}" for k, v in ranked[:n]) + (", ..." if len(ranked) > n else "")


def _counted(counts: Counter) -> str:
    return f" ({_top(counts)})" if counts else ""


def format_summary(s: IngestSummary) -> list[str]:
    """The closing lines of `mm ingest`: crawl outcome, metadata outcome, license and date provenance."""
    lines = [f"ingest {s.batch}: {sum(s.crawl.values())} URLs"]
    lines.append(f"  crawl       {s.crawl['ok']} ok, {s.crawl['skipped']} skipped, {s.crawl['failed']} failed"
                 f"{_counted(s.crawl_reasons)}")
    if not s.has_metadata:
        return lines + ["  metadata    not written (the run stopped before media_metadata; see its log)"]
    lines.append(f"  metadata    {s.rows} rows, {s.duplicates} duplicates, {s.quarantined} quarantined"
                 f"{_counted(s.quarantine_reasons)}")
    if s.license_sources:
        stated = Counter({k: v for k, v in s.license_sources.items() if k in STATED})
        lines.append(f"  licenses    {sum(stated.values())} stated{_counted(stated)}, "
                     f"{s.license_sources['config_default']} config default, {s.license_sources['none']} unknown "
                     f"(metadata.license_policy.{s.source}: {s.policy})")
        header = s.date_sources["http_last_modified"]
        page = sum(v for k, v in s.date_sources.items() if k.startswith("page"))
        lines.append(f"  dates       {page} stated by the page, {s.date_sources['info_json']} by the platform, "
                     f"{header} only HTTP Last-Modified, {s.date_sources['none']} none")
    if s.quarantined:
        lines.append(f"  quarantine  mm query \"SELECT unique_id, source_uri, title, reasons FROM quarantine "
                     f"WHERE batch = '{s.batch}'\"")
    return lines


def format_quarantine_warning(s: IngestSummary) -> list[str]:
    """The loud part: what share is quarantined, why, and which config keys change it."""
    total = s.rows + s.duplicates + s.quarantined
    lines = [f"WARNING: {s.quarantined} of {total} crawled items of {s.batch} ({s.fraction:.0%}) are quarantined, "
             f"above metadata.quarantine_max_fraction = {s.max_fraction} (configs/pipeline.yaml)",
             f"  top reasons: {_top(s.quarantine_reasons)}"]
    if s.quarantine_reasons["license missing"]:
        lines.append(f"  `license missing`: metadata.license_policy.{s.source} is {s.policy}; set it to unknown "
                     "(kept, license null, never released) or {default: <SPDX id or URL>} to keep such items")
    lines.append("  if this share is expected, raise metadata.quarantine_max_fraction; "
                 "`mm ingest --strict` exits 3 on it")
    return lines

"""Data-pipeline counters (reference gotcha 4: watch the data loader, not only the loss): bytes and items per
modality and failures, from the crawl and token assets, in their asset metadata and pushed to the Pushgateway.

Each asset run pushes its batch's totals as one group {job, batch, asset}; rematerializing a batch replaces that
group, so `sum by (modality) (llm_pretrain_data_pipeline_processed_bytes_total)` counts every batch once.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mm_assets.monitor import metrics as mt
from mm_assets.monitor.pushgateway import Pushgateway, Sample
from mm_assets.storage.store import Storage

CRAWL_MODALITIES = {"video": "video", "audio": "audio", "image": "image"}  # ItemRecord.files key -> modality
ALL = "all"  # the modality label of a crawl failure: the whole item failed


@dataclass(frozen=True)
class BatchCounts:
    asset: str  # raw_media, audio_tokens, ...
    stage: str  # crawl | tokens
    batch: str
    bytes: Counter = field(default_factory=Counter)  # modality -> bytes
    items: Counter = field(default_factory=Counter)  # modality -> items processed
    failed: Counter = field(default_factory=Counter)  # modality -> items failed
    tokens: Counter = field(default_factory=Counter)  # modality -> tokens (token assets)

    def metadata(self) -> dict[str, int]:
        """Flat asset metadata: bytes.<modality>, items.<modality>, failed.<modality>."""
        out = {}
        for kind in ("bytes", "items", "failed"):
            out.update({f"{kind}.{m}": int(v) for m, v in sorted(getattr(self, kind).items())})
        return out

    def samples(self) -> list[Sample]:
        rows = [("processed_bytes_total", self.bytes), ("processed_items_total", self.items),
                ("failed_items_total", self.failed)]
        out = [Sample(mt.metric(mt.name("data_pipeline", name)), float(v),
                      {"stage": self.stage, "modality": m, "batch": self.batch})
               for name, counts in rows for m, v in sorted(counts.items())]
        out += [Sample(mt.metric(mt.name("data_pipeline", "tokens_total")), float(v), {"modality": m, "batch": self.batch})
                for m, v in sorted(self.tokens.items())]
        return out


def crawl_counts(batch: str, records: Iterable, storage: Storage) -> BatchCounts:
    """From the crawl ledger: each newly crawled item's files by modality (subtitles are text); failures."""
    counts = BatchCounts("raw_media", "crawl", batch)
    layout, store = storage.layout, storage.store
    for record in records:
        if record.status == "failed":
            counts.failed[ALL] += 1
        if record.status != "ok" or not record.item_dir:
            continue
        files = json.loads(store.read_text(layout.item_record(record.item_dir))).get("files", {})
        folder = store.local_dir(record.item_dir)  # as the metadata ETL reads the item
        for key, modality in CRAWL_MODALITIES.items():
            if files.get(key):
                counts.bytes[modality] += _size(folder / files[key])
                counts.items[modality] += 1
        subtitles = [s["file"] for s in (files.get("subtitles") or {}).values() if s.get("file")]
        if subtitles:
            counts.bytes["text"] += sum(_size(folder / name) for name in subtitles)
            counts.items["text"] += 1
    return counts


def token_counts(batch: str, modality: str, rows: Iterable) -> BatchCounts:
    """From a token asset's rows: codes bytes (int32) and tokens of the ok items, failed items."""
    counts = BatchCounts(f"{modality}_tokens", "tokens", batch)
    counts.failed[modality] = 0
    for row in rows:
        if row.status != "ok" or row.codes is None:
            counts.failed[modality] += 1
            continue
        counts.items[modality] += 1
        counts.tokens[modality] += int(row.codes.size)
        counts.bytes[modality] += int(row.codes.size) * 4
    return counts


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def publish_counts(monitoring, counts: BatchCounts, warn: Callable[[str], None]) -> bool:
    """Push one batch's counters (bounded by the Pushgateway timeout); a failure is a warning, never an error."""
    pg = monitoring.pushgateway
    if not pg.url:
        return False
    try:
        Pushgateway(pg.url, pg.timeout_s).push(pg.data_job, {"batch": counts.batch, "asset": counts.asset},
                                               counts.samples())
        return True
    except Exception as err:  # noqa: BLE001 (monitoring never fails the data pipeline)
        warn(f"monitoring: could not push {counts.asset} counters of {counts.batch} to {pg.url}: "
             f"{type(err).__name__}: {err}")
        return False

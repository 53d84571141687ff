"""The `raw_media` asset: one crawl batch downloaded through yt-dlp, every manifest line accounted for."""

import time
from collections import Counter
from pathlib import Path

import dagster as dg
import yt_dlp

from mm_assets.crawl.batch import load_batch
from mm_assets.crawl.records import CrawlRecord, write_ledger
from mm_assets.monitor.data_counts import crawl_counts, publish_counts
from mm_assets.partitions import crawl_batches
from resources.config import PipelineConfigResource
from resources.storage import StorageResource
from resources.ytdlp import YtDlpResource

LEDGER = "items.parquet"


class _Progress:
    """Logs items done / total and failures, at most every few seconds and at the end."""

    def __init__(self, log: dg.DagsterLogManager, batch: str, every_s: float = 5.0):
        self.log, self.batch, self.every_s, self._last = log, batch, every_s, 0.0

    def __call__(self, done: int, total: int, failures: int) -> None:
        now = time.monotonic()
        if done == total or now - self._last >= self.every_s:
            self._last = now
            self.log.info(f"crawl {self.batch}: {done}/{total} items done, {failures} failed")


def crawl_summary(records: list[CrawlRecord]) -> dict[str, int]:
    status = Counter(r.status for r in records)
    reasons = Counter(r.reason for r in records if r.reason)
    return {
        "items": len(records),
        "ok": status["ok"],
        "skipped": status["skipped"],
        "failed": status["failed"],
        **{f"reason.{k}": v for k, v in sorted(reasons.items())},
    }


@dg.asset(
    partitions_def=crawl_batches,
    group_name="crawl",
    kinds={"python"},
    description="yt-dlp output per item (media, wav, subtitles, info.json, item.json) and the per-item ledger.",
)
def raw_media(context: dg.AssetExecutionContext, storage: StorageResource, crawler: YtDlpResource,
              pipeline: PipelineConfigResource) -> dg.MaterializeResult:
    batch = context.partition_key
    info, entries = load_batch(storage, batch)
    context.log.info(f"crawl {batch}: {len(entries)} URLs from {info.origin} with {crawler.workers} workers")
    started = time.monotonic()
    records = crawler.crawl_batch(storage, info, entries, progress=_Progress(context.log, batch))
    ledger = storage.crawl_dir(batch) / LEDGER
    write_ledger(ledger, records)
    summary = crawl_summary(records)
    for r in records:
        if r.status == "failed":
            context.log.warning(f"crawl {batch}: line {r.line_no} {r.url} failed ({r.reason}): {r.message}")
    counts = crawl_counts(batch, records, lambda rel: storage.path(*Path(rel).parts))
    publish_counts(pipeline.load().monitoring, counts, context.log.warning)
    return dg.MaterializeResult(
        metadata={
            **summary,
            **counts.metadata(),
            "ledger": dg.MetadataValue.path(str(ledger)),
            "manifest_sha256": info.manifest_sha256,
            "source": info.source,
            "yt_dlp_version": yt_dlp.version.__version__,
            "wall_s": round(time.monotonic() - started, 2),
        }
    )

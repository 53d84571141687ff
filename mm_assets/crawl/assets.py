"""The `raw_media` asset: one crawl batch downloaded through yt-dlp, every manifest line accounted for."""

import time
from collections import Counter

import dagster as dg
import yt_dlp

from mm_assets.crawl.batch import load_batch
from mm_assets.crawl.ledger import CrawlRecord, write_ledger
from mm_assets.crawl.pool import crawl_batch
from mm_assets.crawl.progress import CrawlProgress
from mm_assets.monitor.data_counts import crawl_counts, publish_counts
from mm_assets.partitions import crawl_batches
from resources.config import PipelineConfigResource
from resources.storage import StorageResource
from resources.ytdlp import YtDlpResource


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
    progress = CrawlProgress(batch, len(entries), context.log.info)
    records = crawl_batch(storage, crawler.crawl_config, info, entries, progress)
    ledger = storage.layout.crawl_ledger(batch)
    with storage.store.publish(ledger) as staged:
        write_ledger(staged, records)
    summary = crawl_summary(records)
    for r in records:
        if r.status == "failed":
            context.log.warning(f"crawl {batch}: line {r.line_no} {r.url} failed ({r.reason}): {r.message}")
    counts = crawl_counts(batch, records, storage)
    publish_counts(pipeline.load().monitoring, counts, context.log.warning)
    return dg.MaterializeResult(
        metadata={
            **summary,
            **counts.metadata(),
            "ledger": dg.MetadataValue.path(storage.store.url(ledger)),
            "manifest_sha256": info.manifest_sha256,
            "source": info.source,
            "yt_dlp_version": yt_dlp.version.__version__,
            "wall_s": round(time.monotonic() - started, 2),
        }
    )

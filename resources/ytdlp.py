"""yt-dlp as a Dagster resource: the crawl settings, and one call that crawls a batch's entries.

A thin adapter: the worker pool, ids, probing and error classes live in mm_assets/crawl/. Built from the
pipeline config with `YtDlpResource(**cfg.crawl.model_dump())`.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from mm_assets.config import CrawlConfig
from mm_assets.crawl.batch import BatchInfo, ManifestEntry
from mm_assets.crawl.pool import crawl_entries
from mm_assets.crawl.progress import CrawlProgress
from mm_assets.crawl.records import CrawlRecord
from mm_assets.crawl.worker import CrawlTarget
from resources.storage import StorageResource

_DEFAULTS = CrawlConfig()


class YtDlpResource(dg.ConfigurableResource):
    """The fields mirror CrawlConfig (configs/pipeline.yaml `crawl:`), which validates them."""

    workers: int = _DEFAULTS.workers
    subtitle_languages: list[str] = Field(default_factory=lambda: list(_DEFAULTS.subtitle_languages))
    official_subtitles: bool = _DEFAULTS.official_subtitles
    automatic_subtitles: bool = _DEFAULTS.automatic_subtitles
    audio_format: str = _DEFAULTS.audio_format
    thumbnails: bool = _DEFAULTS.thumbnails
    audio_sample_rate_hz: int = _DEFAULTS.audio_sample_rate_hz
    audio_channels: int = _DEFAULTS.audio_channels
    max_video_height: int = _DEFAULTS.max_video_height
    item_timeout_s: float = _DEFAULTS.item_timeout_s
    socket_timeout_s: float = _DEFAULTS.socket_timeout_s
    retries: int = _DEFAULTS.retries
    partial_max_age_hours: float = _DEFAULTS.partial_max_age_hours
    partial_max_gb: float = _DEFAULTS.partial_max_gb

    @property
    def crawl_config(self) -> CrawlConfig:
        """The validated settings (a bad value fails here, with its name)."""
        return CrawlConfig(**{name: getattr(self, name) for name in CrawlConfig.model_fields})

    def crawl_batch(
        self,
        storage: StorageResource,
        batch: BatchInfo,
        entries: list[ManifestEntry],
        progress: CrawlProgress | None = None,
    ) -> list[CrawlRecord]:
        """Crawl `entries` into storage.item_dir(batch.source, id): one record per entry, ordered by line.

        Items already published (by an earlier run of this batch or by another batch) are not downloaded
        again: `skipped`/`archived`, with the publishing batch in `owner_batch`. A partial download that an
        interrupted run left staged is resumed. `progress` hears each record and the loop's clock.
        """
        target = CrawlTarget(
            root=str(storage.root_path),
            raw_dir=str(storage.raw_source_dir(batch.source)),
            staging_dir=str(storage.path(".staging", "crawl")),
            source=batch.source,
            batch=batch.batch,
        )
        return crawl_entries(target, self.crawl_config, entries, progress)

"""yt-dlp as a Dagster resource: the crawl settings (`crawl:` of the pipeline config), shown in the UI.

The `raw_media` asset runs the worker pool (mm_assets/crawl/pool.py) with `crawl_config`. Built from the
pipeline config with `YtDlpResource(**cfg.crawl.model_dump())`.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from mm_assets.config.pipeline import CrawlConfig

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

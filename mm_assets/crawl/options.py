"""The reference's yt-dlp recipe as Python API options, and as the equivalent command line (for the
benchmark's one-process-per-URL baseline). Both come from one CrawlConfig so they cannot drift apart.

Reference: yt-dlp --ignore-errors --download-archive A --write-sub --write-auto-sub --sub-lang L
  --extract-audio --audio-format wav -f 'bestvideo[height<=720]+bestaudio/best[height<=720]'
  -o '<root>/raw/<source>/%(id)s/%(id)s.%(ext)s' --write-info-json
Deviations, on purpose: `height<=?720` (unknown heights are not an error), `keepvideo` (extracting audio
would delete the video), the audio resampled to the configured rate and channels, and no yt-dlp archive
or ignore-errors in the API path: the crawl keeps its own ledger and classifies each item's exception
(DESIGN.md §9).
"""

from __future__ import annotations

import re
from typing import Any

import imageio_ffmpeg

from mm_assets.config.pipeline import CrawlConfig


def audio_args(cfg: CrawlConfig) -> list[str]:
    """ffmpeg output arguments of the audio extraction: resample once, at download time."""
    return ["-ar", str(cfg.audio_sample_rate_hz), "-ac", str(cfg.audio_channels)]


def subtitle_langs(cfg: CrawlConfig) -> list[str]:
    """yt-dlp treats each language as a regex; ours are literal codes (a page's srclang is untrusted)."""
    return [re.escape(lang) for lang in cfg.subtitle_languages]


def ydl_params(cfg: CrawlConfig, outtmpl: str, *, logger: Any) -> dict[str, Any]:
    """YoutubeDL params for one worker; post-processors are added by the worker, in order."""
    return {
        "format": cfg.format_selector,
        "outtmpl": {"default": outtmpl},
        "writesubtitles": cfg.official_subtitles,
        "writeautomaticsub": cfg.automatic_subtitles,
        "subtitleslangs": subtitle_langs(cfg),
        "writeinfojson": True,
        "writethumbnail": cfg.thumbnails,
        "keepvideo": True,
        "ffmpeg_location": imageio_ffmpeg.get_ffmpeg_exe(),
        "postprocessor_args": {"extractaudio": audio_args(cfg)},
        "socket_timeout": cfg.socket_timeout_s,
        "retries": cfg.retries,
        "fragment_retries": cfg.retries,
        "extractor_retries": cfg.retries,
        "ignoreerrors": False,  # raise, so each item's failure is classified (see errors.py)
        "noplaylist": True,
        "overwrites": True,  # what an interrupted attempt finished is redone; only partial downloads are kept
        "continuedl": True,  # ...and resumed with an HTTP Range request (staging.py keeps `*.part`)
        "quiet": True,
        "noprogress": True,
        "color": "no_color",
        "consoletitle": False,
        "cachedir": False,
        "logger": logger,
    }


def cli_args(cfg: CrawlConfig, out_root: str, source: str, archive: str) -> list[str]:
    """The same recipe for `python -m yt_dlp` (argument list, never a shell string)."""
    args = ["--ignore-errors", "--download-archive", archive]
    if cfg.official_subtitles:
        args.append("--write-sub")
    if cfg.automatic_subtitles:
        args.append("--write-auto-sub")
    args += [
        "--sub-lang", ",".join(subtitle_langs(cfg)),
        "--extract-audio", "--audio-format", cfg.audio_format,
        "--postprocessor-args", "ExtractAudio:" + " ".join(audio_args(cfg)),
        "--keep-video",
        "-f", cfg.format_selector,
        "-o", f"{out_root}/raw/{source}/%(id)s/%(id)s.%(ext)s",
        "--write-info-json",
        "--ffmpeg-location", imageio_ffmpeg.get_ffmpeg_exe(),
        "--socket-timeout", str(cfg.socket_timeout_s),
        "--retries", str(cfg.retries),
        "--no-playlist", "--quiet", "--no-progress", "--no-cache-dir", "--no-color",
    ]
    return args

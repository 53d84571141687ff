"""Metadata precedence: for each field of a row, where its value comes from (first present wins).

Facts the page states (JSON-LD, OpenGraph, `<link rel=license>`, read by mm_assets.crawl.page) beat what
yt-dlp infers; what we measure (ffmpeg, soundfile) beats what anyone states. The table is the code: items.py
picks every field through `pick`, so this table and the rows cannot disagree.

Origins: `page` (item.json `page`), `info_json` (yt-dlp's info.json), `http_last_modified` (info.json's date
when yt-dlp took it from the HTTP header), `config_default` (metadata.license_policy), `probe` (item.json
`probe`, ffmpeg), `audio_file` (soundfile), `subtitles` (the chosen subtitle track's language).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

# field -> (origins, first present wins; why)
PRECEDENCE: dict[str, tuple[tuple[str, ...], str]] = {
    "title": (("page", "info_json"), "JSON-LD name, og:title, <title>; yt-dlp suffixes HTML5 embeds' titles ' (1)'"),
    "description": (("info_json", "page"), "both are the page's words; yt-dlp's is the full text on platform "
                    "extractors, where the page's meta description is cut short"),
    "license": (("page", "info_json", "config_default"), "JSON-LD license, then <link rel=license>/meta; yt-dlp "
                "reads none from pages (platform extractors may); then metadata.license_policy"),
    "upload_date": (("page", "info_json", "http_last_modified"), "JSON-LD uploadDate/datePublished, OpenGraph "
                    "article:published_time; a platform's own date; last the Last-Modified header, logged"),
    "duration_seconds": (("probe", "audio_file", "info_json"), "measured beats stated"),
    "resolution": (("probe", "info_json"), "measured beats stated; only with a video"),
    "sample_rate_hz": (("audio_file",), "the extracted audio file, read with soundfile"),
    "language": (("info_json", "page", "subtitles"), "the platform's stated language (the generic extractor gives "
                 "none) beats <html lang>, which is site-wide; last the chosen subtitle's language"),
}

# yt-dlp's generic extractor sets `timestamp` from the HTTP Last-Modified header (yt_dlp/extractor/generic.py:
# `unified_timestamp(full_response.headers.get('Last-Modified'))`) and merges it into the HTML5 media it finds;
# YoutubeDL derives upload_date from it. That is when the server's file last changed, not a publication date.
# (Its JSON-LD dates, the other source it has, are read from the page first.)
LAST_MODIFIED_EXTRACTORS = frozenset({"Generic", "HTML5MediaEmbed"})

# item.json page.<field>_from -> the recorded origin; an item crawled before the crawl recorded it is `page`.
PAGE_PARTS = {"json_ld": "page_json_ld", "html": "page_html", "opengraph": "page_opengraph"}


def date_is_last_modified(info: Mapping[str, Any]) -> bool:
    """Whether info.json's upload_date is the HTTP Last-Modified date rather than a stated one."""
    return info.get("extractor_key") in LAST_MODIFIED_EXTRACTORS and info.get("timestamp") is not None


def page_origin(page: Mapping[str, Any], field: str) -> str:
    """`page_json_ld`, `page_html`, `page_opengraph`: which part of the page stated `field`."""
    return PAGE_PARTS.get(page.get(f"{field}_from"), "page")


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def pick(field: str, candidates: Mapping[str, tuple[Any, str]], conv: Callable, problems: list[str]
         ) -> tuple[Any, str | None]:
    """(value, origin) of the first present candidate in PRECEDENCE order, converted by
    conv(value, where, problems); (None, None) when none is present. `candidates`: origin -> (value, where)."""
    origins = PRECEDENCE[field][0]
    if not set(candidates) <= set(origins):
        raise ValueError(f"{field}: origins {sorted(set(candidates) - set(origins))} are not in PRECEDENCE")
    for origin in origins:
        value, where = candidates.get(origin, (None, ""))
        if _present(value):
            converted = conv(value, where, problems)  # a bad value is a problem, not a fallback
            return converted, (origin if converted is not None else None)
    return None, None

"""Classify a failed item into one of ledger.REASONS, from yt-dlp's exceptions first and its text second.

yt-dlp's own outcome is not trustworthy enough to be the ledger (DESIGN.md §9): a corrupt file and a file
without audio give the same ffprobe message, so the crawl probes media itself and raises MediaProblem with
the reason already decided; everything else is mapped here. `stage` is where the error happened:
"extract" (reading the page) or "download" (media, subtitles, post-processing).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from yt_dlp.networking.exceptions import HTTPError, TransportError
from yt_dlp.utils import (
    ContentTooShortError,
    ExtractorError,
    PostProcessingError,
    UnsupportedError,
)

from mm_assets.crawl.ledger import REASONS

MAX_MESSAGE = 500
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PREFIX = re.compile(r"^(?:ERROR|WARNING):\s*")

# Text patterns, tried in order when no exception type decides (messages from the logger, wrapped errors).
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("unsupported_url", re.compile(r"Unsupported URL|is not a valid URL", re.I)),
    ("no_media", re.compile(r"No video formats found|Requested format is not available|no (?:video|media) "
                            r"(?:formats|found)|This video is (?:private|unavailable)|Unable to extract", re.I)),
    ("corrupt_media", re.compile(r"Invalid data found|moov atom not found|Conversion failed|unable to obtain "
                                 r"file audio codec|Postprocessing:", re.I)),
    ("page_unavailable", re.compile(r"Unable to download webpage|HTTP Error \d+|Connection "
                                    r"refused|Name or service not known|getaddrinfo|Failed to resolve", re.I)),
    ("download_error", re.compile(r"Unable to download|fragment|Did not get any data|timed out|Read timed out|"
                                  r"IncompleteRead|ContentTooShort|Connection reset", re.I)),
]


class MediaProblem(PostProcessingError):
    """Raised by the crawl's own probe with the reason already decided (corrupt_media / no_audio)."""

    def __init__(self, reason: str, msg: str):
        if reason not in REASONS:
            raise ValueError(f"unknown reason {reason!r}; use a key of ledger.REASONS")
        super().__init__(msg)
        self.reason = reason


def clean_message(text: str, limit: int = MAX_MESSAGE) -> str:
    """One line, no colour codes or ERROR: prefix, at most `limit` characters."""
    text = _ANSI.sub("", str(text)).strip()
    text = _PREFIX.sub("", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps: DownloadError.exc_info, ExtractorError.cause, __cause__."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen or not isinstance(e, BaseException):
            continue
        seen.add(id(e))
        yield e
        exc_info = getattr(e, "exc_info", None)
        if isinstance(exc_info, tuple) and len(exc_info) >= 2:
            todo.append(exc_info[1])
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]


def classify_message(message: str, stage: str = "download") -> str:
    """A REASONS key for an error text alone."""
    for reason, pattern in _PATTERNS:
        if pattern.search(message):
            if reason == "page_unavailable" and stage != "extract":
                return "download_error"
            return reason
    return "unexpected_error"


def classify(exc: BaseException, stage: str) -> tuple[str, str]:
    """(reason, message) for an exception raised while crawling one item."""
    if stage not in {"extract", "download"}:
        raise ValueError(f"stage {stage!r}: use 'extract' or 'download'")
    message = clean_message(str(exc) or type(exc).__name__)
    chain = list(_chain(exc))
    for e in chain:
        if isinstance(e, MediaProblem):
            return e.reason, clean_message(str(e))
    for e in chain:
        if isinstance(e, UnsupportedError):
            return "unsupported_url", message
        if isinstance(e, ContentTooShortError):
            return "download_error", message
        if isinstance(e, (HTTPError, TransportError)):  # IncompleteRead included
            return ("page_unavailable" if stage == "extract" else "download_error"), message
        if isinstance(e, PostProcessingError):
            return "corrupt_media", message
    for e in chain:
        if isinstance(e, (ExtractorError, OSError)) or e is exc:
            reason = classify_message(clean_message(str(e)), stage)
            if reason != "unexpected_error":
                return reason, message
    if not any(type(e).__module__.startswith("yt_dlp") for e in chain):
        message = clean_message(f"{type(exc).__name__}: {exc}")
    return "unexpected_error", message

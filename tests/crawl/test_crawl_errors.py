"""Error classes: real yt-dlp exceptions (raised by yt-dlp against the loopback server, or built from its
own classes) map to the REASONS keys of ledger.py."""

from __future__ import annotations

import io
import sys

import pytest
import yt_dlp
from yt_dlp.networking import Response
from yt_dlp.networking.exceptions import HTTPError, TransportError
from yt_dlp.utils import DownloadError, ExtractorError, PostProcessingError, UnsupportedError

from mm_assets.crawl.errors import MediaProblem, classify, classify_message, clean_message
from mm_assets.crawl.ledger import REASONS
from mm_assets.demo.server import serve


def wrapped(inner: BaseException, text: str) -> DownloadError:
    """What YoutubeDL.trouble raises: a DownloadError carrying the original exception in exc_info."""
    try:
        raise inner
    except BaseException:
        return DownloadError(text, sys.exc_info())


def http_error(status: int) -> HTTPError:
    return HTTPError(Response(io.BytesIO(b""), "http://127.0.0.1/x", {}, status=status))


@pytest.mark.parametrize(
    ("exc", "stage", "reason"),
    [
        (wrapped(http_error(404), "ERROR: [generic] x: Unable to download webpage: HTTP Error 404"), "extract",
         "page_unavailable"),
        (wrapped(http_error(503), "ERROR: unable to download video data: HTTP Error 503"), "download",
         "download_error"),
        (wrapped(TransportError("Connection refused"), "ERROR: Connection refused"), "extract", "page_unavailable"),
        (wrapped(UnsupportedError("http://127.0.0.1/a.html"), "ERROR: Unsupported URL: http://127.0.0.1/a.html"),
         "extract", "unsupported_url"),
        (wrapped(PostProcessingError("WARNING: unable to obtain file audio codec with ffprobe"),
                 "ERROR: Postprocessing: WARNING: unable to obtain file audio codec with ffprobe"), "download",
         "corrupt_media"),
        (wrapped(MediaProblem("no_audio", "no audio stream"), "ERROR: Postprocessing: no audio stream"), "download",
         "no_audio"),
        (wrapped(MediaProblem("corrupt_media", "moov atom not found"), "ERROR: Postprocessing: x"), "download",
         "corrupt_media"),
        (DownloadError("ERROR: [generic] x: Requested format is not available"), "extract", "no_media"),
        (ExtractorError("No video formats found!"), "extract", "no_media"),
        (ValueError("something odd"), "download", "unexpected_error"),
    ],
)
def test_exceptions_map_to_reasons(exc, stage, reason):
    got, message = classify(exc, stage)
    assert got == reason and got in REASONS
    assert message and not message.startswith("ERROR:")


def test_media_problem_message_is_its_own():
    _, message = classify(wrapped(MediaProblem("no_audio", "the media has no audio stream"), "ERROR: Postprocessing:"),
                          "download")
    assert message == "the media has no audio stream"
    with pytest.raises(ValueError, match="REASONS"):
        MediaProblem("not-a-reason", "x")


@pytest.mark.parametrize(
    ("text", "stage", "reason"),
    [
        ("ERROR: [generic] Unable to download webpage: HTTP Error 404: Not Found", "extract", "page_unavailable"),
        ("ERROR: [generic] Unable to download webpage: HTTP Error 404: Not Found", "download", "download_error"),
        ("ERROR: Unsupported URL: http://x", "extract", "unsupported_url"),
        ("Invalid data found when processing input", "download", "corrupt_media"),
        ("ERROR: unable to download video data: Read timed out", "download", "download_error"),
        ("nothing we know", "download", "unexpected_error"),
    ],
)
def test_messages_map_to_reasons(text, stage, reason):
    assert classify_message(text, stage) == reason


def test_clean_message_is_one_short_line():
    assert clean_message("\x1b[0;31mERROR:\x1b[0m  a\nb  ") == "a b"
    assert len(clean_message("x" * 5000)) == 500
    with pytest.raises(ValueError, match="stage"):
        classify(ValueError(), "later")


def test_real_yt_dlp_failures_are_classified(tmp_path, demo_server):
    """Errors raised by yt-dlp itself, not built by hand: a 404 page, a page without media, a closed port."""
    (tmp_path / "plain.html").write_text("<html><body><p>No media here.</p></body></html>", encoding="utf-8")
    ydl = yt_dlp.YoutubeDL({"quiet": True, "no_warnings": True, "socket_timeout": 5, "logger": None})
    with serve(tmp_path) as server:
        cases = [(demo_server.url("watch/missing.html"), "page_unavailable"),
                 (server.url("plain.html"), "unsupported_url")]
        for url, reason in cases:
            with pytest.raises(DownloadError) as err:
                ydl.extract_info(url, download=False)
            assert classify(err.value, "extract")[0] == reason, err.value
        closed = server.url("plain.html")
    with pytest.raises(DownloadError) as err:
        ydl.extract_info(closed, download=False)  # the server has stopped: connection refused
    assert classify(err.value, "extract")[0] == "page_unavailable"

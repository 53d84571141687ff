"""Our own probing (ffmpeg -i / soundfile) and page metadata (JSON-LD, <link rel=license>, <html lang>)."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from mm_assets.crawl.page import decode_page, normalize_date, parse_page
from mm_assets.crawl.probe import parse_ffmpeg_header, probe_audio, probe_media
from mm_assets.demo.media import LICENSE_URL, json_ld, page_html

CLIP_HEADER = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'item.mp4':
  Duration: 00:01:02.50, start: 0.000000, bitrate: 183 kb/s
  Stream #0:0[0x1](und): Video: h264 (avc1 / 0x31637661), yuv420p(progressive), 1280x720 [SAR 1:1 DAR 16:9], 25 fps
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, mono, fltp, 65 kb/s (default)
  Stream #0:2: Video: mjpeg (Baseline), yuvj420p(pc), 300x300, 90k tbn (attached pic)
At least one output file must be specified"""
COVER_ONLY = """Input #0, mp3, from 'song.mp3':
  Duration: 00:00:03.00, start: 0.025057, bitrate: 129 kb/s
  Stream #0:0: Audio: mp3 (mp3float), 44100 Hz, stereo, fltp, 128 kb/s
  Stream #0:1: Video: png, rgba(pc), 64x64, 90k tbr, 90k tbn (attached pic)"""


def test_parse_ffmpeg_header():
    p = parse_ffmpeg_header(CLIP_HEADER)
    assert (p.readable, p.has_video, p.has_audio, p.duration_seconds, p.width, p.height) == (
        True, True, True, 62.5, 1280, 720)
    cover = parse_ffmpeg_header(COVER_ONLY)
    assert cover.has_audio and not cover.has_video and cover.width is None
    bad = parse_ffmpeg_header("[in#0 @ 0x55d0] Error opening input: Invalid data found when processing input\n")
    assert not bad.readable and "Invalid data" in bad.error and "0x55d0" not in bad.error


def test_probe_real_files(bad_site, demo_site):
    good = probe_media(demo_site.root / "media/clip-1.mp4")
    assert good.readable and good.has_audio and good.has_video and (good.width, good.height) == (320, 240)
    assert abs(good.duration_seconds - 2.0) < 0.1
    silent = probe_media(bad_site.root / "media/silent.mp4")
    assert silent.readable and silent.has_video and not silent.has_audio
    corrupt = probe_media(bad_site.root / "media/corrupt.mp4")
    assert not corrupt.readable and corrupt.error and str(bad_site.root) not in corrupt.error


def test_probe_audio(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, np.zeros(24000, dtype=np.int16), 16000)
    a = probe_audio(path)
    assert (a.sample_rate_hz, a.channels, a.duration_seconds, a.frames) == (16000, 1, 1.5, 24000)


def test_page_prefers_json_ld_and_finds_the_license():
    html = page_html("Site title | Example", video="v.mp4", ld=json_ld("Clip name", "About the clip"))
    page = parse_page(html)
    assert page == {"license": LICENSE_URL, "upload_date": "2026-01-15", "title": "Clip name",
                    "description": "About the clip", "language": "en", "license_from": "json_ld",
                    "upload_date_from": "json_ld"}


def test_page_without_json_ld_uses_html():
    html = ('<html lang="de"><head><title>Nur HTML &amp; mehr</title><meta name="description" content="d">'
            '<link rel="license" href="https://example.org/l"></head><body></body></html>')
    assert parse_page(html) == {"license": "https://example.org/l", "title": "Nur HTML & mehr",
                                "description": "d", "language": "de", "license_from": "html"}


def test_page_says_which_part_stated_license_and_date():
    """A JSON-LD block without a license leaves <link rel=license> to state it; OpenGraph dates count."""
    ld = json_ld("v", "d", license=None, upload_date=None, date_published="2025-03-01")
    page = parse_page(page_html("T", video="v.mp4", ld=ld))
    assert (page["license"], page["license_from"]) == (LICENSE_URL, "html")
    assert (page["upload_date"], page["upload_date_from"]) == ("2025-03-01", "json_ld")
    og = parse_page('<meta property="article:published_time" content="2024-02-03T10:00:00Z">')
    assert og == {"upload_date": "2024-02-03", "upload_date_from": "opengraph"}
    assert "license" not in parse_page(page_html("T", video="v.mp4", license=None))


def test_page_json_ld_graph_and_objects():
    doc = {"@context": "https://schema.org", "@graph": [
        {"@type": "WebPage", "name": "page"},
        {"@type": ["VideoObject"], "name": "v", "license": {"@id": "https://l/1"},
         "uploadDate": "20250102", "inLanguage": {"@type": "Language", "name": "fr"}}]}
    page = parse_page(f'<script type="application/ld+json">{json.dumps(doc)}</script>')
    assert page == {"license": "https://l/1", "upload_date": "2025-01-02", "title": "v", "language": "fr",
                    "license_from": "json_ld", "upload_date_from": "json_ld"}


def test_malformed_json_ld_is_recorded_not_fatal():
    html = page_html("T", video="v.mp4", ld='{"@type": "VideoObject", name: ,}')
    page = parse_page(html)
    assert page["title"] == "T" and page["license"] == LICENSE_URL
    assert page["json_ld_error"].startswith("JSON-LD block 1:")


def test_dates_and_charsets():
    assert normalize_date("2026-01-15T10:00:00Z") == "2026-01-15"
    assert normalize_date("20260115") == "2026-01-15"
    assert normalize_date("2026-13-45") is None and normalize_date("soon") is None and normalize_date(None) is None
    assert decode_page("café".encode("cp1252"), "text/html; charset=windows-1252") == "café"
    assert decode_page(b'<meta charset="latin-1">caf\xe9', None).endswith("café")
    assert decode_page(b"caf\xe9", "text/html") == "caf\ufffd"
    assert decode_page(b"x", "text/html; charset=no-such-codec") == "x"

"""What a page says about its video that yt-dlp does not read: license, upload date, title, description and
language, from JSON-LD (schema.org VideoObject) and plain HTML (<link rel="license">, <html lang>, <title>).

yt-dlp reads JSON-LD only when the page has no <video> and never reads a license (DESIGN.md §9), so the
crawl fetches each page once more through the worker's own YoutubeDL (same cookies, headers, timeouts) and
parses it here. Malformed JSON-LD is tolerated and recorded as `json_ld_error`.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from html.parser import HTMLParser
from typing import Any

MAX_PAGE_BYTES = 2 << 20
_CHARSET = re.compile(r"charset=[\"']?([\w.:-]+)", re.I)
_ISO_DATE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})")


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lang: str | None = None
        self.title_parts: list[str] = []
        self.meta: dict[str, str] = {}
        self.license: str | None = None
        self.json_ld: list[str] = []
        self._in: str | None = None  # "title" or "ld"
        self._buf: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "html" and a.get("lang"):
            self.lang = a["lang"].strip()
        elif tag == "title" and not self.title_parts:
            self._in, self._buf = "title", []
        elif tag == "meta":
            key = (a.get("property") or a.get("name") or "").lower()
            if key and "content" in a:
                self.meta.setdefault(key, a["content"])
        elif tag in {"link", "a"} and "license" in a.get("rel", "").lower().split() and a.get("href"):
            self.license = self.license or a["href"].strip()
        elif tag == "script" and a.get("type", "").lower().startswith("application/ld+json"):
            self._in, self._buf = "ld", []

    def handle_data(self, data: str) -> None:
        if self._in:
            self._buf.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._in == "title" and tag == "title":
            self.title_parts = ["".join(self._buf)]
        elif self._in == "ld" and tag == "script":
            self.json_ld.append("".join(self._buf))
        else:
            return
        self._in = None


def _video_objects(node: Any) -> list[dict]:
    """Every dict typed VideoObject (or MediaObject) in a JSON-LD document, @graph and lists included."""
    found = []
    if isinstance(node, list):
        for item in node:
            found += _video_objects(item)
    elif isinstance(node, dict):
        types = node.get("@type")
        types = types if isinstance(types, list) else [types]
        if any(t in {"VideoObject", "MediaObject", "AudioObject"} for t in types if isinstance(t, str)):
            found.append(node)
        for key in ("@graph", "mainEntity", "video", "associatedMedia"):
            if key in node:
                found += _video_objects(node[key])
    return found


def _text(value: Any) -> str | None:
    """A JSON-LD value as text: strings as they are, objects by url/@id/name."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("url") or value.get("@id") or value.get("name") or value.get("alternateName")
    if isinstance(value, (str, int, float)) and str(value).strip():
        return str(value).strip()
    return None


def normalize_date(value: str | None) -> str | None:
    """An ISO 8601 date `YYYY-MM-DD` from `2026-01-15`, `20260115` or `2026-01-15T10:00:00Z`; else None."""
    if not value or not (m := _ISO_DATE.match(value.strip())):
        return None
    try:
        return datetime(int(m[1]), int(m[2]), int(m[3])).date().isoformat()
    except ValueError:
        return None


def parse_page(html_text: str) -> dict[str, Any]:
    """The page fields of ItemRecord.page; keys are present only when found.

    JSON-LD wins over HTML (it is about the video; <title> is often the site's). Keys: license (and
    license_from: json_ld / html), upload_date (YYYY-MM-DD; upload_date_from: json_ld / opengraph), title,
    description, language, and json_ld_error when a block did not parse.
    """
    parser = _PageParser()
    try:
        parser.feed(html_text)
        parser.close()
    except Exception as err:  # html.parser is lenient; whatever it still raises means a broken page
        return {"html_error": f"{type(err).__name__}: {err}"[:200]}
    ld: dict = {}
    errors = []
    for block in parser.json_ld:
        try:
            objs = _video_objects(json.loads(block))
        except ValueError as err:
            errors.append(f"JSON-LD block {len(errors) + 1}: {err}"[:200])
            continue
        ld = ld or (objs[0] if objs else {})
    meta = parser.meta
    ld_license = _text(ld.get("license"))
    ld_date = normalize_date(_text(ld.get("uploadDate")) or _text(ld.get("datePublished")))
    found = {
        "license": ld_license or parser.license or meta.get("dc.rights") or meta.get("license"),
        "upload_date": ld_date or normalize_date(meta.get("article:published_time")),
        "title": _text(ld.get("name")) or meta.get("og:title") or (parser.title_parts or [None])[0],
        "description": _text(ld.get("description")) or meta.get("description") or meta.get("og:description"),
        "language": _text(ld.get("inLanguage")) or parser.lang,
    }
    # Which part of the page stated them: the ETL records it as the row's license_source / upload_date_source.
    if found["license"]:
        found["license_from"] = "json_ld" if ld_license else "html"
    if found["upload_date"]:
        found["upload_date_from"] = "json_ld" if ld_date else "opengraph"
    page = {k: v.strip() for k, v in found.items() if isinstance(v, str) and v.strip()}
    if errors:
        page["json_ld_error"] = "; ".join(errors)
    return page


def decode_page(data: bytes, content_type: str | None) -> str:
    """Bytes to text: the header's charset, else a <meta charset>, else UTF-8 (bad bytes replaced)."""
    charset = None
    if content_type and (m := _CHARSET.search(content_type)):
        charset = m.group(1)
    elif m := _CHARSET.search(data[:2048].decode("ascii", "replace")):
        charset = m.group(1)
    try:
        return data.decode(charset or "utf-8", "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


def read_page(ydl: Any, url: str) -> dict[str, Any]:
    """Fetch `url` once through the YoutubeDL's own opener and parse it; never raises for a bad page."""
    try:
        with ydl.urlopen(url) as resp:
            content_type = resp.headers.get("Content-Type", "")
            if "html" not in content_type.lower() and "xml" not in content_type.lower():
                return {}
            data = resp.read(MAX_PAGE_BYTES)
    except Exception as err:  # page metadata is optional: the media was already found
        return {"page_error": f"{type(err).__name__}: {err}"[:200]}
    return parse_page(decode_page(data, content_type))

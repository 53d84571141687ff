"""Subtitles: read WebVTT files strictly as UTF-8, pick the item's text, and extract plain text from cues.

A subtitle that is not UTF-8 (or not WebVTT, or has no cue text) is not fatal: the caller drops it, logs why,
and the item keeps its other modalities. A UTF-8 byte-order mark is accepted and removed.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from checks.metadata_schema import LANGUAGE_TAG

_TAG = re.compile(r"<[^>]*>")
_TIMING = re.compile(r"^\s*(\d+:)?\d{2}:\d{2}[.,]\d{3}\s+-->\s+")


@dataclass(frozen=True)
class Subtitle:
    """One subtitle file of an item: its language tag, and either its text or why it cannot be used."""

    lang: str
    path: Path
    automatic: bool
    text: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def normalize_language(tag: str) -> str:
    """'en_US' -> 'en-US', 'EN' -> 'en': separators and the primary subtag's case only; no guessing."""
    parts = tag.strip().replace("_", "-").split("-")
    return "-".join([parts[0].lower(), *parts[1:]])


def is_language_tag(tag: str | None) -> bool:
    return tag is not None and LANGUAGE_TAG.match(tag) is not None


def vtt_text(content: str) -> str:
    """The spoken text of a WebVTT document: cue payloads without tags, one line each.

    Rolling captions (YouTube's automatic subtitles repeat the previous line in every cue) are collapsed by
    dropping a line equal to the one before it.
    """
    lines: list[str] = []
    blocks = re.split(r"\r?\n\s*\r?\n", content.replace("\r\n", "\n"))
    for block in blocks[1:]:  # the first block is the WEBVTT header
        rows = block.strip("\n").split("\n")
        if not rows or rows[0].startswith(("NOTE", "STYLE", "REGION")):
            continue
        timing = next((i for i, r in enumerate(rows) if _TIMING.match(r)), None)
        if timing is None:
            continue
        for raw in rows[timing + 1 :]:
            line = html.unescape(_TAG.sub("", raw)).strip()
            if line and (not lines or lines[-1] != line):
                lines.append(line)
    return "\n".join(lines)


def read_subtitle(path: Path, lang: str, automatic: bool = False) -> Subtitle:
    """Decode and parse one subtitle file; never raises for bad content (the error says what was wrong)."""
    lang = normalize_language(lang)
    where = f"subtitle {lang} ({path.name})"
    try:
        data = path.read_bytes()
    except OSError as err:
        return Subtitle(lang, path, automatic, error=f"{where} cannot be read: {err.strerror or err}")
    try:
        content = data.decode("utf-8-sig")  # a leading BOM is fine; anything else must be strict UTF-8
    except UnicodeDecodeError as err:
        return Subtitle(lang, path, automatic, error=f"{where} is not UTF-8 ({err}); re-encode it as UTF-8")
    if not content.lstrip().startswith("WEBVTT"):
        return Subtitle(lang, path, automatic, error=f"{where} is not WebVTT (no WEBVTT header)")
    text = vtt_text(content)
    if not text:
        return Subtitle(lang, path, automatic, error=f"{where} has no cue text")
    return Subtitle(lang, path, automatic, text=text)


def language_order(langs: Sequence[str], preferred: Sequence[str]) -> list[str]:
    """Configured languages first, in configured order; any others after, sorted (deterministic)."""
    pref = [normalize_language(p) for p in preferred]
    rank = {lang: i for i, lang in enumerate(pref)}
    return sorted(langs, key=lambda lang: (rank.get(lang, len(rank)), lang))


def choose_text(subs: Sequence[Subtitle], preferred: Sequence[str], language: str | None) -> Subtitle | None:
    """The subtitle that becomes the item's text: the primary language's (exact tag, else same primary
    subtag) if readable, else the first readable one in configured order; only valid language tags qualify."""
    usable = {s.lang: s for s in subs if s.ok and is_language_tag(s.lang)}
    ordered = language_order(list(usable), preferred)
    if language:
        primary = language.split("-")[0]
        same = [lang for lang in ordered if lang == language] or [
            lang for lang in ordered if lang.split("-")[0] == primary
        ]
        if same:
            return usable[same[0]]
    return usable[ordered[0]] if ordered else None

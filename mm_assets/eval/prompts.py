"""Prompts as token ids, with exactly the ids training saw: text through the project's text tokenizer, video
codes from the configured video tokenizer offset into the shard vocabulary layout and wrapped in its
`<vid>`/`</vid>` markers (the shard assembler does both, as for a training document).

The template's `<vid>{video_placeholder}</vid>` is one slot: the two markers become the layout's special ids,
never text, and the placeholder becomes the clip's codes.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from mm_assets.eval.config import VIDEO_CLOSE, VIDEO_OPEN, VIDEO_PLACEHOLDER, VIDEO_SLOT
from mm_assets.shards.documents import DocumentAssembler
from mm_assets.shards.vocab import TEXT

VIDEO = "video"


@dataclass(frozen=True)
class Segment:
    kind: str  # "text" or "video"
    text: str = ""


def render_segments(template: str, fields: Mapping[str, str]) -> list[Segment]:
    """The template filled with the sample's fields, split at the video slot. Field values are inserted as
    they are (never parsed as a template themselves)."""
    segments, text = [], []
    for literal, field, _, _ in string.Formatter().parse(template):
        text.append(literal)
        if field is None:
            continue
        if field == VIDEO_PLACEHOLDER:
            before = "".join(text)
            if not before.endswith(VIDEO_OPEN):
                raise ValueError(f"the video placeholder must sit in {VIDEO_SLOT}")
            segments.append(Segment(TEXT, before[: -len(VIDEO_OPEN)]))
            segments.append(Segment(VIDEO))
            text = []
        else:
            text.append(fields[field])
    rest = "".join(text)
    if any(s.kind == VIDEO for s in segments):
        if not rest.startswith(VIDEO_CLOSE):
            raise ValueError(f"the video placeholder must sit in {VIDEO_SLOT}")
        rest = rest[len(VIDEO_CLOSE):]
    segments.append(Segment(TEXT, rest))
    return [s for s in segments if s.kind == VIDEO or s.text]


def prompt_ids(segments: list[Segment], encode: Callable[[str], np.ndarray], assembler: DocumentAssembler,
               video_codes: np.ndarray | None = None) -> np.ndarray:
    """Unified ids of the prompt (int32, no EOD). `video_codes`: the clip's raw codes (levels, T)."""
    parts: list[tuple[str, np.ndarray]] = []
    for segment in segments:
        if segment.kind == VIDEO:
            if video_codes is None:
                raise ValueError("the prompt has a video slot but no video codes were given")
            parts.append((VIDEO, video_codes))
        else:
            parts.append((TEXT, encode(segment.text)))
    return assembler.assemble(parts)[:-1]  # the assembler ends every document with EOD; a prompt goes on


def display_prompt(segments: list[Segment], video_tokens: int) -> str:
    """The prompt as a person reads it: the video slot shows how many codes it holds."""
    return "".join(s.text if s.kind == TEXT else f"{VIDEO_OPEN}[{video_tokens} video codes]{VIDEO_CLOSE}"
                   for s in segments)

"""The demo's eval datasets, written from what the site generator knows to be true about its own clips
(mm_assets.demo.media.DEMO_CLIPS): their tones, test patterns, lengths, titles and subtitle lines.

configs/eval/demo_*.yaml read them from `eval/datasets/demo/` under the storage root, with the site's folder
(`demo_site/`, also under the root) as the video root.
"""

from __future__ import annotations

import json
from pathlib import Path

from mm_assets.demo.media import DEMO_CLIPS, DemoClip
from mm_assets.layout import StorageLayout
from mm_assets.paths import atomic_write_text

DATASETS = "eval/datasets/demo"


def _questions(clip: DemoClip) -> list[tuple[str, str, str]]:
    n = clip.number
    return [
        (f"clip-{n}-tone", f"Which tone does clip {n} play?", f"{clip.freq_hz} Hz"),
        (f"clip-{n}-pattern", f"Which test pattern does clip {n} show?", clip.pattern),
        (f"clip-{n}-seconds", f"How many seconds long is clip {n}?", f"{clip.seconds:g}"),
        (f"clip-{n}-title", f"What is the title of the page of clip {n}?", clip.title),
        (f"clip-{n}-first-line", f"What is the first subtitle line of clip {n}?", clip.subtitles[0]),
    ]


def demo_eval_samples() -> dict[str, list[dict]]:
    """File name -> samples, one dataset per demo eval task."""
    return {
        "clip_qa.jsonl": [{"id": sid, "question": q, "answers": [a]} for clip in DEMO_CLIPS
                          for sid, q, a in _questions(clip)],
        "captions.jsonl": [{"id": f"clip-{c.number}", "video": c.media, "captions": [" ".join(c.subtitles)]}
                           for c in DEMO_CLIPS],
        "video_qa.jsonl": [{"id": f"clip-{c.number}-pattern", "video": c.media,
                            "question": "Which test pattern is shown?", "answers": [c.pattern]} for c in DEMO_CLIPS],
        "subtitles.jsonl": [{"id": f"clip-{c.number}", "text": " ".join(c.subtitles)} for c in DEMO_CLIPS],
    }


def write_demo_eval_sets(storage: StorageLayout) -> Path:
    """Write the demo datasets (JSON Lines) under the storage root; returns their folder."""
    folder = storage.eval_input(DATASETS)
    for name, samples in demo_eval_samples().items():
        atomic_write_text(folder / name, "".join(json.dumps(s, sort_keys=True) + "\n" for s in samples))
    return folder

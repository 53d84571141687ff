"""Item folders as the crawl publishes them (raw/<source>/<id>/), built here with real media files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from mm_assets.crawl.ledger import CrawlRecord, ItemRecord
from mm_assets.etl.metadata import build_metadata

SOURCE = "youtube"
BATCH = "youtube-b1"
REGISTERED = "2026-11-29T00:00:00+00:00"
VTT_EN = (
    "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nhello <c>world</c> &amp; more\n\n"
    "00:00:01.000 --> 00:00:02.000\nhello <c>world</c> &amp; more\nsecond line\n"
)

VTT_ZH = "WEBVTT\n\n00:00.000 --> 00:01.000\n你好\n".encode()


def write_wav(path: Path, seed: int, seconds: float = 0.5, rate: int = 16000) -> None:
    rng = np.random.default_rng(seed)
    sf.write(path, (rng.standard_normal(int(seconds * rate)) * 0.1).astype(np.float32), rate, subtype="PCM_16")


def make_item(
    root: Path,
    item_id: str,
    line_no: int,
    *,
    video: bytes | None = None,
    audio_seed: int | None = None,
    subs: dict[str, bytes] | None = None,
    info: Any = "default",
    page: dict | None = None,
    probe: dict | None = None,
    write_item_json: bool = True,
    batch: str = BATCH,
    crawled_at: str = "2026-11-29T01:02:03+00:00",
) -> tuple[CrawlRecord, Path]:
    """Publish one item folder like the crawl does and return its ok ledger record and folder."""
    folder = root / "raw" / SOURCE / item_id
    folder.mkdir(parents=True)
    files: dict[str, Any] = {"video": None, "audio": None, "info_json": f"{item_id}.info.json", "subtitles": {}}
    if video is not None:
        files["video"] = f"{item_id}.mp4"
        (folder / files["video"]).write_bytes(video)
    if audio_seed is not None:
        files["audio"] = f"{item_id}.wav"
        write_wav(folder / files["audio"], audio_seed)
    for lang, data in (subs or {}).items():
        name = f"{item_id}.{lang}.vtt"
        (folder / name).write_bytes(data)
        files["subtitles"][lang] = {"file": name, "automatic": False}
    if info == "default":
        info = {"id": item_id, "title": f"Title of {item_id}", "description": "A test item.", "upload_date": "20240521",
                "duration": 0.5, "width": 64, "height": 48, "webpage_url": f"https://example.test/watch?v={item_id}",
                "extractor": "generic"}
    info_path = folder / files["info_json"]
    if isinstance(info, (bytes, str)):
        info_path.write_bytes(info if isinstance(info, bytes) else info.encode())
    elif info is not None:
        info_path.write_text(json.dumps(info), encoding="utf-8")
    sha = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.suffix in {".mp4", ".wav"}}
    record = ItemRecord(
        item_id=item_id, raw_id=item_id, source=SOURCE, batch=batch, url=f"https://example.test/watch?v={item_id}",
        webpage_url=f"https://example.test/watch?v={item_id}", extractor="generic", crawled_at=crawled_at,
        crawler={"name": "yt-dlp", "version": "2026.10.26"}, files=files,
        probe=probe if probe is not None else ({"duration_seconds": 0.5, "width": 64, "height": 48} if video else {}),
        page=page if page is not None else {"license": "CC-BY-4.0"}, sha256=sha,
    )
    if write_item_json:
        (folder / "item.json").write_text(record.dump(), encoding="utf-8")
    ledger = CrawlRecord(batch=batch, line_no=line_no, url=record.url, status="ok", item_id=item_id, raw_id=item_id,
                         extractor="generic", item_dir=f"raw/{SOURCE}/{item_id}")
    return ledger, folder


def good_batch(root: Path, videos: list[bytes]) -> list[tuple[CrawlRecord, Path]]:
    """Four clean items: video+audio+text, audio+text (zh), audio only, video only."""
    return [
        make_item(root, "vid1", 1, video=videos[0], audio_seed=1, subs={"en": VTT_EN.encode()}),
        make_item(root, "aud2", 2, audio_seed=2, subs={"zh-Hans": VTT_ZH},
                  info={"title": "音频 $(rm -rf ~); `x` | y", "webpage_url": "https://example.test/a2"}),
        make_item(root, "aud3", 3, audio_seed=3, info={"title": "t3", "language": "en", "license": "CC0-1.0"},
                  page={}),
        make_item(root, "vid4", 4, video=videos[1]),
    ]


def run(items, root: Path, cfg, *, batch: str = BATCH, registered_at: str = REGISTERED, prior=None, out_dir=None):
    """build_metadata with this module's defaults, writing under <root>/metadata/<batch>/."""
    return build_metadata(items, batch=batch, source=SOURCE, registered_at=registered_at, cfg=cfg,
                          prior_hashes=prior or {}, out_dir=out_dir or root / "metadata" / batch)

"""The crawl's own ledger: one record per manifest line, and the item record published with each item.

yt-dlp is not the ledger (DESIGN.md §9): with ignoreerrors it archives failures, and its ids can clash.
Every manifest line ends as exactly one CrawlRecord: ok, skipped (with why) or failed (with the error
class and message). An item's folder holds `item.json` (ItemRecord), written before the store publishes the
folder whole, so a folder without it is never visible.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

Status = Literal["ok", "skipped", "failed"]

# Error classes a failed or skipped record may carry; tests and alerts match on these strings.
REASONS = {
    "invalid_url": "the manifest line is not a crawlable http(s) URL",
    "duplicate_url": "the URL repeats an earlier line of the same manifest",
    "archived": "the item was already crawled (this batch's earlier run or another batch): not downloaded again",
    "page_unavailable": "the page could not be fetched (HTTP error, refused connection, DNS)",
    "unsupported_url": "no extractor found media on the page",
    "no_media": "the page has no downloadable formats",
    "download_error": "a media download failed after retries",
    "corrupt_media": "ffmpeg could not decode the downloaded media",
    "no_audio": "the media has no audio stream to extract",
    "timeout": "the item exceeded crawl.item_timeout_s and its worker was restarted",
    "worker_crashed": "the worker process died while handling the item",
    "unexpected_error": "an error the crawler does not classify; see the message",
}


@dataclass
class CrawlRecord:
    """One manifest line's outcome. `item_dir` is relative to the storage root."""

    batch: str
    line_no: int
    url: str
    status: Status
    reason: str | None = None  # a key of REASONS when status != "ok"
    message: str | None = None  # the error text (truncated), for people
    item_id: str | None = None  # our sanitised, clash-free id
    raw_id: str | None = None  # the extractor's id, verbatim and untrusted
    extractor: str | None = None
    item_dir: str | None = None
    owner_batch: str | None = None  # for `archived`: the batch whose crawl published the item
    elapsed_s: float = 0.0

    def published_by(self, batch: str) -> bool:
        """Whether this line's item belongs to `batch`: published now (ok), or by the batch's earlier run
        (a rerun records it as archived, owner_batch = batch). Items of other batches do not."""
        return self.status == "ok" or (self.reason == "archived" and self.owner_batch == batch)


LEDGER_SCHEMA = pa.schema(
    [
        ("batch", pa.string()),
        ("line_no", pa.int64()),
        ("url", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("message", pa.string()),
        ("item_id", pa.string()),
        ("raw_id", pa.string()),
        ("extractor", pa.string()),
        ("item_dir", pa.string()),
        ("owner_batch", pa.string()),
        ("elapsed_s", pa.float64()),
    ]
)
assert [f.name for f in fields(CrawlRecord)] == LEDGER_SCHEMA.names


def write_ledger(path: Path, records: list[CrawlRecord]) -> None:
    """Write the ledger Parquet, ordered by manifest line (to a staging path: the store publishes it)."""
    rows = [asdict(r) for r in sorted(records, key=lambda r: r.line_no)]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA), path)


def read_ledger(path: Path) -> list[CrawlRecord]:
    return [CrawlRecord(**row) for row in pq.read_table(path).to_pylist()]


@dataclass
class ItemRecord:
    """What the crawl knows about one published item; `files` names are relative to the item folder."""

    item_id: str
    raw_id: str
    source: str
    batch: str  # the batch whose crawl published this item
    url: str
    webpage_url: str
    extractor: str
    crawled_at: str  # ISO 8601 UTC
    crawler: dict[str, str]  # {"name": "yt-dlp", "version": ...}
    # {"video": str|None, "audio": str|None, "image": str|None (the thumbnail), "info_json": str,
    #  "subtitles": {lang: {"file": str, "automatic": bool}}}
    files: dict[str, Any]
    # Filled by us, not by yt-dlp: {"duration_seconds", "width", "height", "sample_rate_hz", "audio_channels"}
    probe: dict[str, Any] = field(default_factory=dict)
    # Read from the page (JSON-LD / HTML), which yt-dlp ignores: {"license", "upload_date", "title",
    # "description", "language"}; keys present only when found.
    page: dict[str, Any] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)  # file name -> sha256

    def dump(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False, sort_keys=True)

    @classmethod
    def load(cls, path: Path) -> "ItemRecord":
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))

"""Checks on `raw_media`: every manifest line accounted for, every published item complete."""

import dagster as dg

from mm_assets.crawl.assets import raw_media
from mm_assets.crawl.batch import ManifestEntry, load_batch
from mm_assets.crawl.ledger import REASONS, CrawlRecord, read_ledger
from mm_assets.storage.paths import UnsafePathError
from mm_assets.storage.store import Storage
from resources.storage import StorageResource


def _published(storage: Storage, item_dir: str | None) -> bool:
    try:
        return bool(item_dir) and storage.store.exists(storage.layout.item_record(item_dir))
    except UnsafePathError:
        return False


def ledger_problems(entries: list[ManifestEntry], records: list[CrawlRecord], storage: Storage) -> list[str]:
    """Why the ledger does not account for the manifest; empty when every line has one valid record."""
    problems = []
    by_line: dict[int, list[CrawlRecord]] = {}
    for r in records:
        by_line.setdefault(r.line_no, []).append(r)
    for e in entries:
        got = by_line.pop(e.line_no, [])
        if len(got) != 1:
            problems.append(f"line {e.line_no} ({e.url}): {len(got)} records, expected 1")
            continue
        r = got[0]
        if r.url != e.url:
            problems.append(f"line {e.line_no}: ledger URL {r.url!r} differs from manifest {e.url!r}")
        if r.status not in ("ok", "skipped", "failed"):
            problems.append(f"line {e.line_no} ({e.url}): unknown status {r.status!r}")
        elif r.status != "ok" and r.reason not in REASONS:
            problems.append(f"line {e.line_no} ({e.url}): {r.status} with unknown reason {r.reason!r}")
        elif r.status == "ok" or r.reason == "archived":  # an item the metadata ETL will read
            if not _published(storage, r.item_dir):
                what = "ok" if r.status == "ok" else f"archived (by batch {r.owner_batch!r})"
                problems.append(f"line {e.line_no} ({e.url}): {what} but {r.item_dir}/{storage.layout.ITEM_RECORD} "
                                "is missing")
    problems += [f"line {n}: ledger record for a line the manifest does not have" for n in sorted(by_line)]
    return problems


@dg.asset_check(asset=raw_media, blocking=True, description="Every manifest line has exactly one ok/skipped/failed record with a reason.")
def every_item_accounted_for(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    batch = context.partition_key if context.has_partition_key else None
    if batch is None:
        return dg.AssetCheckResult(passed=False, metadata={"error": "run this check for one crawl batch partition"})
    _, entries = load_batch(storage, batch)
    ledger = storage.layout.crawl_ledger(batch)
    if not storage.store.exists(ledger):
        return dg.AssetCheckResult(passed=False, metadata={"error": f"no ledger at {storage.store.url(ledger)}"})
    problems = ledger_problems(entries, read_ledger(storage.store.local_path(ledger)), storage)
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"manifest_lines": len(entries), "problems": len(problems), "first_problems": "\n".join(problems[:20])},
    )

"""Same inputs, same bytes: rematerializing a batch is safe. Also the asset's entry point with storage."""

import json
import os
from dataclasses import asdict

import dagster as dg
import pyarrow.parquet as pq

from itemfactory import BATCH, REGISTERED, SOURCE, good_batch, make_item, run
from mm_assets.crawl.batch import BatchInfo
from mm_assets.crawl.ledger import CrawlRecord
from mm_assets.etl.catalog import build_catalog, run_query
from mm_assets.etl.metadata import publish_batch_metadata
from resources.storage import StorageResource

FILES = ("metadata", "quarantine", "duplicates", "hashes")


def test_two_runs_write_identical_bytes(tmp_path, cfg, videos):
    items = good_batch(tmp_path, videos) + [make_item(tmp_path, "dup", 9, video=videos[0]),
                                            make_item(tmp_path, "bad", 8, audio_seed=4, info=b"[")]
    one = run(items, tmp_path, cfg, out_dir=tmp_path / "one")
    two = run(list(reversed(items)), tmp_path, cfg, out_dir=tmp_path / "two")  # input order does not matter
    for name in FILES:
        assert one.paths[name].read_bytes() == two.paths[name].read_bytes(), name
    assert one.as_dict() | {f"path.{k}": "" for k in FILES} == two.as_dict() | {f"path.{k}": "" for k in FILES}
    assert (one.rows, one.quarantined, one.duplicates_within) == (4, 1, 1)
    # rerunning into the same folder replaces every file whole, with no temp files left behind
    before = {name: one.paths[name].read_bytes() for name in FILES}
    again = run(items, tmp_path, cfg, out_dir=tmp_path / "one")
    assert {name: again.paths[name].read_bytes() for name in FILES} == before
    assert sorted(os.listdir(tmp_path / "one")) == sorted(p.name for p in one.paths.values())


def test_entry_point_with_storage_and_ledger(tmp_path, cfg, videos):
    storage = StorageResource(root=str(tmp_path))
    items = good_batch(tmp_path, videos)
    ledger = [rec for rec, _ in items] + [
        CrawlRecord(batch=BATCH, line_no=5, url="https://example.test/x", status="failed", reason="page_unavailable"),
        CrawlRecord(batch=BATCH, line_no=6, url="https://example.test/y", status="ok", item_id="evil",
                    item_dir="../../etc"),
    ]
    info = BatchInfo(batch=BATCH, source=SOURCE, manifest_sha256="0" * 64, origin="m.txt", registered_at=REGISTERED,
                     urls=6)
    res, urls = publish_batch_metadata(ledger, storage=storage, info=info, cfg=cfg, prior_hashes={})
    assert urls["metadata"] == str(storage.store.local_path(storage.layout.metadata_file(BATCH)))
    assert (res.items, res.rows, res.quarantined, res.ledger_not_ok) == (5, 4, 1, 1)
    q = pq.read_table(urls["quarantine"]).to_pylist()[0]
    assert q["unique_id"] == "youtube_evil" and "leaves the storage root" in q["reason"]
    meta = res.dagster_metadata(urls)
    assert meta["rows"] == 4 and meta["dagster/row_count"] == 4
    assert dg.MaterializeResult(metadata=meta).metadata["quarantined"] == 1
    # the DuckDB catalog's views read every file the batch wrote (its `batch` column comes from the folder)
    cat = build_catalog(storage)
    assert cat.views == {"media_metadata": 4, "quarantine": 1, "duplicates": 0}
    _, rows = run_query(cat.url, "SELECT batch, unique_id, reason_codes FROM quarantine")
    assert rows == [(BATCH, "youtube_evil", ["ledger error"])]
    assert json.loads(json.dumps(res.as_dict(), default=str))["modalities"] == {"audio": 3, "text": 2, "video": 2}
    assert asdict(ledger[0])["status"] == "ok"

"""The closing summary of `mm ingest`, read from the ledger and the metadata files a batch wrote."""

from itemfactory import BATCH, SOURCE, make_item, run
from mm_assets.config.pipeline import parse_config
from mm_assets.crawl.ledger import CrawlRecord, write_ledger
from mm_assets.etl.summary import format_quarantine_warning, format_summary, read_ingest_summary
from resources.storage import StorageResource


def _batch(root, videos, policy):
    cfg = parse_config({"metadata": {"license_policy": {SOURCE: policy}}}, base_dir=root)
    items = [make_item(root, "plain", 1, video=videos[0], page={}),
             make_item(root, "stated", 2, video=videos[1], page={"license": "MIT", "license_from": "json_ld"}),
             make_item(root, "copy", 3, video=videos[0], page={}),
             make_item(root, "nolicense", 4, audio_seed=4, page={})]
    dead = CrawlRecord(batch=BATCH, line_no=5, url="https://example.test/gone", status="failed",
                       reason="page_unavailable", message="HTTP Error 404")
    write_ledger(root / "crawl" / BATCH / "items.parquet", [r for r, _ in items] + [dead])
    run(items, root, cfg)
    return read_ingest_summary(StorageResource(root=str(root)), batch=BATCH, source=SOURCE, cfg=cfg)


def test_summary_under_the_unknown_policy(tmp_path, videos):
    s = _batch(tmp_path, videos, "unknown")
    assert not s.over_limit
    assert format_summary(s) == [
        f"ingest {BATCH}: 5 URLs",
        "  crawl       4 ok, 0 skipped, 1 failed (page_unavailable 1)",
        "  metadata    3 rows, 1 duplicates, 0 quarantined",
        "  licenses    1 stated (page_json_ld 1), 0 config default, 2 unknown (metadata.license_policy.youtube: unknown)",
        "  dates       0 stated by the page, 3 by the platform, 0 only HTTP Last-Modified, 0 none",
    ]


def test_summary_and_warning_under_the_require_policy(tmp_path, videos):
    s = _batch(tmp_path, videos, "require")
    assert s.over_limit and (s.quarantined, s.fraction, s.max_fraction) == (2, 0.5, 0.2)
    lines = format_summary(s)
    assert lines[2] == "  metadata    1 rows, 1 duplicates, 2 quarantined (license missing 2)"
    assert lines[-1] == (f"  quarantine  mm query \"SELECT unique_id, source_uri, title, reasons FROM quarantine "
                         f"WHERE batch = '{BATCH}'\"")
    warning = format_quarantine_warning(s)
    assert warning[0] == (f"WARNING: 2 of 4 crawled items of {BATCH} (50%) are quarantined, above "
                          "metadata.quarantine_max_fraction = 0.2 (configs/pipeline.yaml)")
    assert "metadata.license_policy.youtube is require; set it to unknown" in warning[2]


def test_summary_of_a_run_that_stopped_before_the_metadata(tmp_path, cfg):
    write_ledger(tmp_path / "crawl" / BATCH / "items.parquet", [])
    s = read_ingest_summary(StorageResource(root=str(tmp_path)), batch=BATCH, source=SOURCE, cfg=cfg)
    assert not s.over_limit and format_summary(s)[-1].startswith("  metadata    not written")

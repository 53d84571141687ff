"""The catalog over real ETL output: schema v1 and v2 files in one view, readable quarantine and duplicates."""

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from checks.metadata import check_metadata_file
from itemfactory import make_item, run
from mm_assets.crawl.ledger import LEDGER_SCHEMA, write_ledger
from mm_assets.etl.catalog import build_catalog, run_query
from resources.storage import StorageResource

V2_ONLY = ("license_source", "upload_date_source")


def _as_v1(path):
    """Rewrite a metadata file as schema v1 wrote it: no provenance fields, version 1 in the footer."""
    table = pq.read_table(path)
    meta = table["metadata"].combine_chunks()
    names = [f.name for f in meta.type if f.name not in V2_ONLY]
    v1_meta = pa.StructArray.from_arrays([pc.struct_field(meta, n) for n in names], names=names,
                                         mask=pc.is_null(meta))
    table = table.set_column(table.schema.get_field_index("metadata"), "metadata", v1_meta)
    schema_meta = {**table.schema.metadata, b"mm_pretrain.schema_version": b"1"}
    pq.write_table(table.replace_schema_metadata(schema_meta), path)


def test_catalog_spans_schema_v1_and_v2_files(tmp_path, cfg, videos):
    old = run([make_item(tmp_path, "old", 1, video=videos[0], batch="youtube-v1")], tmp_path, cfg, batch="youtube-v1")
    _as_v1(old.paths["metadata"])
    run([make_item(tmp_path, "new", 1, video=videos[1], batch="youtube-v2", page={})], tmp_path, cfg,
        batch="youtube-v2")
    passed, meta = check_metadata_file(old.paths["metadata"])
    assert not passed and meta["file_schema_version"] == "1" and "rematerialize" in meta["hint"]

    db = build_catalog(StorageResource(root=str(tmp_path))).url
    _, rows = run_query(db, "SELECT batch, unique_id, metadata.license, metadata.license_source, "
                            "metadata.upload_date_source FROM media_metadata ORDER BY 1")
    assert rows == [("youtube-v1", "youtube_old", "CC-BY-4.0", None, None),  # a v1 row: no provenance
                    ("youtube-v2", "youtube_new", None, "none", "info_json")]


def test_views_have_one_batch_column_and_a_readable_quarantine(tmp_path, cfg, videos):
    items = [make_item(tmp_path, "badlang", 1, video=videos[0], info={"title": "Bad lang", "language": "English"}),
             make_item(tmp_path, "copy", 2, video=videos[0])]
    res = run(items, tmp_path, cfg)
    write_ledger(tmp_path / "crawl" / "youtube-b1" / "items.parquet", [r for r, _ in items])
    # A quarantine file from before the readable columns existed, in another batch.
    old = pq.read_table(res.paths["quarantine"]).drop_columns(["source_uri", "title", "reasons"])
    (tmp_path / "metadata" / "youtube-old").mkdir()
    pq.write_table(old, tmp_path / "metadata" / "youtube-old" / "quarantine.parquet")

    db = build_catalog(StorageResource(root=str(tmp_path))).url
    cols, _ = run_query(db, "SELECT * FROM crawl_items")
    assert cols == LEDGER_SCHEMA.names and cols.count("batch") == 1  # the ledger's own batch column
    cols, rows = run_query(db, "SELECT * FROM quarantine ORDER BY batch")
    assert cols[:4] == ["unique_id", "source_uri", "title", "reasons"] and {"row_json", "batch"} <= set(cols)
    assert len(cols) == len(set(cols))
    for row in rows:  # new and old files answer alike
        got = dict(zip(cols, row))
        assert (got["unique_id"], got["source_uri"], got["title"]) == (
            "youtube_badlang", "https://example.test/watch?v=badlang", "Bad lang")
        assert got["reasons"][0].startswith("bad language code: metadata.language = 'english'")
    cols, rows = run_query(db, "SELECT unique_id, batch, winner_unique_id, winner_batch, title FROM duplicates")
    assert rows == [("youtube_copy", "youtube-b1", "youtube_badlang", "youtube-b1", "Title of copy")]

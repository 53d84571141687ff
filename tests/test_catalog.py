"""The DuckDB catalog: views over Parquet in place, atomic rebuild, query output formats."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mm_assets.etl.catalog import EXAMPLE_QUERIES, CatalogError, build_catalog, format_rows, run_query


def _write_batch(root, batch, rows):
    folder = root / "metadata" / batch
    folder.mkdir(parents=True)
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, folder / "media_metadata.parquet")


def _row(uid, source, lang, seconds, license_):
    return {
        "unique_id": uid,
        "source": source,
        "modalities": ["audio", "video"],
        "metadata": {"license": license_, "language": lang, "duration_seconds": seconds},
    }


def test_views_count_every_batch_and_examples_run(tmp_path):
    _write_batch(tmp_path, "demo-a", [_row("demo_1", "demo", "en", 3600.0, "CC-BY-4.0"), _row("demo_2", "demo", "zh", 1800.0, "CC0-1.0")])
    _write_batch(tmp_path, "web-b", [_row("web_1", "web", "en", 1800.0, "CC-BY-4.0")])
    db = tmp_path / "catalog" / "metadata.duckdb"
    result = build_catalog(tmp_path, db)
    assert result.views == {"media_metadata": 3}
    assert result.files == {"media_metadata": 2}
    _, rows = run_query(db, "SELECT batch, count(*) FROM media_metadata GROUP BY 1 ORDER BY 1")
    assert rows == [("demo-a", 2), ("web-b", 1)]
    _, rows = run_query(db, EXAMPLE_QUERIES["audio hours per language"])
    assert rows == [("en", 1.5), ("zh", 0.5)]
    _, rows = run_query(db, EXAMPLE_QUERIES["licenses"])
    assert rows[0] == ("CC-BY-4.0", 2)
    _, rows = run_query(db, EXAMPLE_QUERIES["items per source"])
    assert dict(rows) == {"demo": 2, "web": 1}
    # A rebuild picks up a new batch and leaves no temp files behind.
    _write_batch(tmp_path, "web-c", [_row("web_2", "web", "fr", 60.0, "CC-BY-4.0")])
    assert build_catalog(tmp_path, db).views["media_metadata"] == 4
    assert [p.name for p in db.parent.iterdir()] == ["metadata.duckdb"]


def test_query_errors_are_clear(tmp_path):
    with pytest.raises(CatalogError, match="materialize metadata_catalog"):
        run_query(tmp_path / "none.duckdb", "SELECT 1")
    db = tmp_path / "c.duckdb"
    build_catalog(tmp_path, db)
    with pytest.raises(CatalogError, match="query failed"):
        run_query(db, "SELECT * FROM no_such_view")
    with pytest.raises(CatalogError, match="query failed"):
        run_query(db, "CREATE TABLE t (x INT)")  # read-only


def test_formats():
    cols, rows = ["a", "b"], [(1, "x,y"), (None, "z")]
    assert format_rows(cols, rows, "csv") == 'a,b\n1,"x,y"\n,z'
    assert json.loads(format_rows(cols, rows, "json")) == [{"a": 1, "b": "x,y"}, {"a": None, "b": "z"}]
    table = format_rows(cols, rows, "table").splitlines()
    assert table[0].split("|")[0].strip() == "a" and table[-1] == "(2 rows)"

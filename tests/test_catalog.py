"""The DuckDB catalog: views over Parquet in place, atomic rebuild, a query surface that cannot write, formats."""

import json
import os
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mm_assets.etl.catalog import EXAMPLE_QUERIES, CatalogError, build_catalog, format_rows, run_query
from mm_assets.etl.read_only import connect_read_only
from resources.storage import StorageResource


def catalog_of(root) -> Path:
    """Build the catalog of the storage root `root`; the database file."""
    return Path(build_catalog(StorageResource(root=str(root))).url)


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
    result = build_catalog(StorageResource(root=str(tmp_path)))
    db = tmp_path / "catalog" / "metadata.duckdb"
    assert result.url == str(db)
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
    assert build_catalog(StorageResource(root=str(tmp_path))).views["media_metadata"] == 4
    assert [p.name for p in db.parent.iterdir()] == ["metadata.duckdb"]


def test_query_errors_are_clear(tmp_path):
    with pytest.raises(CatalogError, match="materialize metadata_catalog"):
        run_query(tmp_path / "none.duckdb", "SELECT 1")
    db = catalog_of(tmp_path)
    with pytest.raises(CatalogError, match="query failed"):
        run_query(db, "SELECT * FROM no_such_view")
    with pytest.raises(CatalogError, match="refused: CREATE makes tables"):
        run_query(db, "CREATE TABLE t (x INT)")


def test_formats():
    cols, rows = ["a", "b"], [(1, "x,y"), (None, "z")]
    assert format_rows(cols, rows, "csv") == 'a,b\n1,"x,y"\n,z'
    assert json.loads(format_rows(cols, rows, "json")) == [{"a": 1, "b": "x,y"}, {"a": None, "b": "z"}]
    table = format_rows(cols, rows, "table").splitlines()
    assert table[0].split("|")[0].strip() == "a" and table[-1] == "(2 rows)"


# -- the read-only query surface ----------------------------------------------------------------------------


@pytest.fixture
def catalog(tmp_path):
    """A storage root with one batch and its catalog, and a folder outside the root holding readable files."""
    root = tmp_path / "root"
    _write_batch(root, "demo-a", [_row("demo_1", "demo", "en", 3600.0, "CC-BY-4.0")])
    db = catalog_of(root)
    outside = tmp_path / "outside"
    outside.mkdir()
    pq.write_table(pa.table({"secret": ["outside"]}), outside / "x.parquet")
    (outside / "x.csv").write_text("secret\noutside\n")
    return root, db, outside


def _tree(folder):
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


HOSTILE = {  # statement -> what the refusal says
    "COPY (SELECT 'x' AS junk) TO '{root}/metadata/demo-a/media_metadata.parquet'": "COPY writes files",
    "COPY media_metadata TO '{outside}/dump.csv'": "COPY writes files",
    "ATTACH '{root}/evil.duckdb' AS evil (READ_ONLY false)": "ATTACH opens another database",
    "DETACH metadata": "DETACH",
    "EXPORT DATABASE '{root}/export'": "EXPORT DATABASE writes files",
    "INSTALL httpfs": "INSTALL/LOAD",
    "LOAD httpfs": "INSTALL/LOAD",
    "SET threads = 1": "SET, RESET, USE",
    "RESET threads": "SET, RESET, USE",
    "USE memory": "SET, RESET, USE",
    "SET VARIABLE x = 1": "SET, RESET, USE",
    "PRAGMA profile_output = '{root}/profile.txt'": "SET, RESET, USE",
    "PRAGMA enable_profiling": "PRAGMA enable_profiling is not one that only describes the catalog",
    "CREATE TEMP TABLE t AS SELECT 1": "CREATE makes tables",
    "CREATE VIEW v AS SELECT 1": "CREATE makes tables",
    "CREATE MACRO m(x) AS x": "CREATE makes tables",
    "CREATE SECRET s (TYPE s3, KEY_ID 'k', SECRET 's')": "CREATE makes tables",
    "INSERT INTO media_metadata SELECT * FROM media_metadata": "INSERT writes data",
    "DELETE FROM media_metadata": "DELETE writes data",
    "DROP VIEW media_metadata": "DROP removes objects",
    "CALL pragma_version()": "CALL runs procedures",
    "CHECKPOINT": "CALL runs procedures",
    "BEGIN TRANSACTION": "transactions",
    "SELECT 1; COPY (SELECT 'x' AS junk) TO '{root}/metadata/demo-a/media_metadata.parquet'": "2 statements given",
    "SELECT 1; SELECT 2": "2 statements given",
    "-- only a comment": "no SQL statement given",
    "EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '{root}/explained.csv'": "EXPLAIN takes one SELECT",
    "/* hidden */ EXPLAIN ANALYZE INSERT INTO media_metadata SELECT * FROM media_metadata": "EXPLAIN takes one SELECT",
    "PIVOT media_metadata ON source USING count(*)": "expands into several",
}


@pytest.mark.parametrize("template", HOSTILE)
def test_statements_that_are_not_reads_are_refused_and_change_nothing(catalog, template):
    root, db, outside = catalog
    before = _tree(root.parent)
    with pytest.raises(CatalogError, match="refused: ") as err:
        run_query(db, template.format(root=root, outside=outside))
    assert HOSTILE[template] in str(err.value) and "runs one read-only statement" in str(err.value)
    assert _tree(root.parent) == before
    assert run_query(db, "SELECT count(*) FROM media_metadata")[1] == [(1,)]


@pytest.mark.parametrize("template", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_parquet('{outside}/x.parquet')",
    "SELECT * FROM read_csv('{root}/../outside/x.csv')",
    "SELECT * FROM read_parquet('metadata/demo-a/media_metadata.parquet')",  # relative: not under the root
    "DESCRIBE SELECT * FROM read_parquet('{outside}/x.parquet')",
])
def test_reads_outside_the_storage_root_are_refused(catalog, template):
    root, db, outside = catalog
    with pytest.raises(CatalogError, match="refused: Permission Error: Cannot access file") as err:
        run_query(db, template.format(root=root, outside=outside))
    assert f"mm query reads files under the storage root {root.resolve()} only" in str(err.value)


def test_extensions_are_neither_installed_nor_loaded(catalog):
    root, db, _ = catalog
    with pytest.raises(CatalogError, match="Loading external extensions is disabled"):
        run_query(db, f"SELECT * FROM read_xlsx('{root}/x.xlsx')")  # excel: DuckDB would download it


@pytest.mark.parametrize("sql, expected", [
    ("SELECT unique_id FROM media_metadata", [("demo_1",)]),
    ("WITH m AS (SELECT source FROM media_metadata) SELECT count(*) FROM m", [(1,)]),
    ("FROM media_metadata SELECT batch", [("demo-a",)]),
    ("VALUES (1, 'a')", [(1, "a")]),
    ("/* a comment first */ SELECT 2;", [(2,)]),
    ("SHOW TABLES", [("media_metadata",)]),
    ("PIVOT (SELECT source FROM media_metadata) ON source IN ('demo') USING count(*)", [(1,)]),
    ("SELECT count(*) FROM read_parquet('{root}/metadata/*/media_metadata.parquet')", [(1,)]),
])
def test_read_statements_run(catalog, sql, expected):
    root, db, _ = catalog
    assert run_query(db, sql.format(root=root))[1] == expected


def test_describe_summarize_explain_and_introspection_pragmas_run(catalog):
    _, db, _ = catalog
    assert ("unique_id", "VARCHAR") in [r[:2] for r in run_query(db, "DESCRIBE media_metadata")[1]]
    assert len(run_query(db, "SUMMARIZE media_metadata")[1]) == 5  # one row per column (batch included)
    assert "READ_PARQUET" in run_query(db, "EXPLAIN SELECT * FROM media_metadata")[1][0][1].upper()
    assert run_query(db, "EXPLAIN ANALYZE SELECT count(*) FROM media_metadata")[1][0][0] == "analyzed_plan"
    assert "unique_id" in [r[1] for r in run_query(db, "PRAGMA table_info('media_metadata')")[1]]
    assert run_query(db, "PRAGMA show_tables")[1] == [("media_metadata",)]


def test_the_connection_itself_cannot_write_or_leave_the_root(catalog):
    """Second line of defence, below the statement check: the locked connection refuses on its own."""
    root, db, outside = catalog
    con = connect_read_only(db, root)
    try:
        with pytest.raises(duckdb.PermissionException):
            con.execute(f"COPY (SELECT 1) TO '{outside}/out.csv'")
        with pytest.raises(duckdb.PermissionException):
            con.execute(f"EXPORT DATABASE '{outside}/export'")
        with pytest.raises(duckdb.Error):
            con.execute("INSTALL httpfs")
        with pytest.raises(duckdb.InvalidInputException, match="locked"):
            con.execute("SET enable_external_access = true")
        with pytest.raises(duckdb.InvalidInputException, match="locked"):
            con.execute("SET allowed_directories = ['/']")
        assert con.execute("SELECT count(*) FROM media_metadata").fetchone() == (1,)
    finally:
        con.close()
    assert sorted(os.listdir(outside)) == ["x.csv", "x.parquet"]

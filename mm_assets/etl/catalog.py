"""The metadata catalog: a DuckDB database of views over every batch's Parquet, for ad hoc queries.

Views read the Parquet files in place (nothing is copied), so the database stays small; it is rebuilt
whole into a temp file and published, so a reader never sees a half-built catalog. On S3 the views read
s3:// URLs through the store's fsspec filesystem (DuckDB's httpfs extension is never downloaded), the database
file is built in the scratch folder and uploaded, and `mm query` reads a verified local copy of it.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import duckdb

from mm_assets.etl.read_only import QueryRefused, connect_read_only, read_statement
from mm_assets.storage.layout import EVERY, ArtifactLayout
from mm_assets.storage.store import ArtifactStore, Storage


def views(layout: ArtifactLayout) -> dict[str, tuple[str, bool]]:
    """view name -> (the glob of its Parquet files, per batch). Per-batch files get a `batch` column from their
    folder (unless they hold one already, as the crawl ledger does)."""
    return {
        "media_metadata": (layout.metadata_file(EVERY), True),
        "quarantine": (layout.quarantine_file(EVERY), True),
        "duplicates": (layout.duplicates_file(EVERY), True),
        "crawl_items": (layout.crawl_ledger(EVERY), True),
        "experiment_records": (layout.records_table(), False),
        "eval_reports": (layout.eval_metrics(EVERY), False),
        "eval_predictions": (layout.eval_predictions(EVERY), False),
        "eval_contamination": (layout.decontamination_report(EVERY), False),
    }

# Columns a view leads with, and how files written before they existed derive them (quarantine files gained
# source_uri, title and reasons after the first release; their row_json holds the same facts).
LEADING = {
    "quarantine": {
        "unique_id": None,
        "source_uri": "json_extract_string(row_json, '$.source_uri')",
        "title": "json_extract_string(row_json, '$.metadata.title')",
        "reasons": "[reason]",
    },
}

EXAMPLE_QUERIES = {
    "licenses": "SELECT metadata.license AS license, count(*) AS items FROM media_metadata GROUP BY 1 ORDER BY 2 DESC",
    "audio hours per language": (
        "SELECT metadata.language AS language, round(sum(metadata.duration_seconds) / 3600, 4) AS audio_hours "
        "FROM media_metadata WHERE list_contains(modalities, 'audio') GROUP BY 1 ORDER BY 2 DESC"
    ),
    "items per source": "SELECT source, count(*) AS items FROM media_metadata GROUP BY 1 ORDER BY 2 DESC",
}


class CatalogError(RuntimeError):
    """The catalog is missing or a query failed; the message says what to run."""


@dataclass(frozen=True)
class CatalogResult:
    url: str
    views: dict[str, int]  # view -> row count
    files: dict[str, int]  # view -> Parquet files behind it


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _select(view: str, columns: list[str], per_batch: bool) -> str:
    """The view's select list: its leading columns (derived where older files lack them), the rest, batch."""
    lead = LEADING.get(view, {})
    items = []
    for col, derived in lead.items():
        if col in columns and derived:
            items.append(f"coalesce({col}, {derived}) AS {col}")
        else:
            items.append(col if col in columns else f"{derived} AS {col}")
    excluded = ", ".join(["filename", *(c for c in lead if c in columns)])
    items.append(f"* EXCLUDE ({excluded})")
    if per_batch and "batch" not in columns:
        items.append("regexp_extract(filename, '/([^/]+)/[^/]+$', 1) AS batch")
    return ", ".join(items)


def build_catalog(storage: Storage) -> CatalogResult:
    """(Re)create the catalog database with one view per artifact family in storage; published whole (a
    concurrent rebuild waits for this one)."""
    counts, files = {}, {}
    key = storage.layout.catalog()
    with storage.store.publish(key, wait=True) as tmp:  # duckdb must create the file itself
        con = duckdb.connect(str(tmp))
        try:
            storage.store.register_filesystem(con)
            for view, (pattern, per_batch) in views(storage.layout).items():
                paths = [storage.store.url(k) for k in storage.store.list(pattern)]
                if not paths:
                    continue
                listing = "[" + ", ".join(_sql_str(p) for p in paths) + "]"
                source = f"read_parquet({listing}, union_by_name = true, filename = true)"
                columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
                con.execute(f"CREATE VIEW {view} AS SELECT {_select(view, columns, per_batch)} FROM {source}")
                counts[view] = con.execute(f"SELECT count(*) FROM {view}").fetchone()[0]
                files[view] = len(paths)
            con.execute("CHECKPOINT")
        finally:
            con.close()
    return CatalogResult(storage.store.url(key), counts, files)


def query_catalog(store: ArtifactStore, sql: str, params: list | None = None) -> tuple[list[str], list[tuple]]:
    """`mm query`: one read statement against the store's catalog (on S3: a verified local copy of the
    database, its views reading s3:// through the store)."""
    db = store.local_path(ArtifactLayout().catalog())
    return run_query(db, sql, root=store.url_root, store=store, params=params)


def run_query(db_path: Path, sql: str, *, root: str | Path | None = None,
              store: ArtifactStore | None = None, params: list | None = None) -> tuple[list[str], list[tuple]]:
    """Run one read statement against the catalog; returns (column names, rows).

    Nothing can be written: statements other than reads are refused before they run, and the connection
    reads files under `root` only (default: the storage root the catalog belongs to), see read_only.py.
    `store` lets the views read its URLs (object storage).
    """
    if not Path(db_path).exists():
        raise CatalogError(f"no catalog at {db_path}: materialize metadata_catalog first (e.g. `mm demo`)")
    if root is None:  # the storage root the catalog file belongs to
        root = Path(db_path).resolve().parents[ArtifactLayout().catalog().count("/")]
    con = connect_read_only(Path(db_path), root, register=store.register_filesystem if store else None)
    try:
        cur = con.execute(read_statement(con, sql), params)
        cols = [d[0] for d in cur.description or []]
        return cols, cur.fetchall()
    except QueryRefused as err:
        raise CatalogError(f"refused: {err}") from None
    except duckdb.PermissionException as err:
        raise CatalogError(
            f"refused: {_first_line(err)}; mm query reads files under the storage root {root} only "
            "(query the catalog's views, or read_parquet('<absolute path under the root>'))"
        ) from None
    except duckdb.Error as err:
        raise CatalogError(f"query failed: {err}") from None
    finally:
        con.close()


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def format_rows(cols: list[str], rows: list[tuple], fmt: str = "table") -> str:
    """Render query results as an aligned text table, CSV or JSON."""
    if fmt == "json":
        return json.dumps([dict(zip(cols, r)) for r in rows], indent=2, default=str, ensure_ascii=False)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(cols)
        writer.writerows(rows)
        return buf.getvalue().rstrip("\n")
    if fmt != "table":
        raise ValueError(f"format {fmt!r}: use table, csv or json")
    cells = [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    line = lambda vals: " | ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()  # noqa: E731
    out = [line(cols), "-+-".join("-" * w for w in widths)] + [line(r) for r in cells]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)

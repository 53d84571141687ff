"""The metadata catalog: a DuckDB database of views over every batch's Parquet, for ad hoc queries.

Views read the Parquet files in place (nothing is copied), so the database stays small; it is rebuilt
whole into a temp file and renamed, so a reader never sees a half-built catalog.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import duckdb

from mm_assets.etl.read_only import QueryRefused, connect_read_only, read_statement
from mm_assets.layout import catalog_storage_root
from mm_assets.paths import atomic_path

# view name -> Parquet glob under the storage root; per-batch files get a `batch` column from their folder.
VIEWS = {
    "media_metadata": ("metadata/*/media_metadata.parquet", True),
    "quarantine": ("metadata/*/quarantine.parquet", True),
    "duplicates": ("metadata/*/duplicates.parquet", True),
    "crawl_items": ("crawl/*/items.parquet", True),
    "experiment_records": ("records/experiment_records.parquet", False),
    "eval_reports": ("eval/reports/*/report.parquet", False),
    "eval_predictions": ("eval/reports/*/predictions.parquet", False),
    "eval_contamination": ("eval/decontamination/*.parquet", False),
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
    path: Path
    views: dict[str, int]  # view -> row count
    files: dict[str, int]  # view -> Parquet files behind it


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def build_catalog(root: Path, db_path: Path) -> CatalogResult:
    """(Re)create the catalog database at `db_path` with one view per artifact family found under `root`."""
    views, files = {}, {}
    with atomic_path(db_path) as tmp:
        tmp.unlink()  # duckdb must create the file itself
        con = duckdb.connect(str(tmp))
        try:
            for view, (pattern, per_batch) in VIEWS.items():
                paths = sorted(str(p) for p in Path(root).glob(pattern))
                if not paths:
                    continue
                listing = "[" + ", ".join(_sql_str(p) for p in paths) + "]"
                batch = ", regexp_extract(filename, '/([^/]+)/[^/]+$', 1) AS batch" if per_batch else ""
                con.execute(
                    f"CREATE VIEW {view} AS SELECT * EXCLUDE (filename){batch} "
                    f"FROM read_parquet({listing}, union_by_name = true, filename = true)"
                )
                views[view] = con.execute(f"SELECT count(*) FROM {view}").fetchone()[0]
                files[view] = len(paths)
            con.execute("CHECKPOINT")
        finally:
            con.close()
    return CatalogResult(db_path, views, files)


def run_query(db_path: Path, sql: str, *, root: Path | None = None) -> tuple[list[str], list[tuple]]:
    """Run one read statement against the catalog; returns (column names, rows).

    Nothing can be written: statements other than reads are refused before they run, and the connection
    reads files under `root` only (default: the storage root the catalog belongs to), see read_only.py.
    """
    if not Path(db_path).exists():
        raise CatalogError(f"no catalog at {db_path}: materialize metadata_catalog first (e.g. `mm demo`)")
    root = Path(root) if root is not None else catalog_storage_root(db_path)
    con = connect_read_only(Path(db_path), root)
    try:
        cur = con.execute(read_statement(con, sql))
        cols = [d[0] for d in cur.description or []]
        return cols, cur.fetchall()
    except QueryRefused as err:
        raise CatalogError(f"refused: {err}") from None
    except duckdb.PermissionException as err:
        raise CatalogError(
            f"refused: {_first_line(err)}; mm query reads files under the storage root {root.resolve()} only "
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

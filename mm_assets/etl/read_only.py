"""The catalog's read-only query surface: which user statements may run, on a connection that cannot write.

DuckDB's `read_only=True` protects only the database file: `COPY … TO`, `ATTACH … (READ_ONLY false)`,
`EXPORT DATABASE` and `CREATE TEMP TABLE` still write, and `INSTALL` reaches for the network (DESIGN.md §9).
So user SQL must be one read statement (checked with DuckDB's own parser), and it runs on a connection whose
file access is confined to the storage root, with external access off and the configuration locked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import duckdb

from mm_assets.storage.s3_access import is_s3_url

READ_ONLY_HELP = (
    "`mm query` runs one read-only statement: SELECT (also WITH, FROM …, VALUES, DESCRIBE, SHOW, SUMMARIZE), "
    "EXPLAIN [ANALYZE] of a SELECT, or PRAGMA table_info/show_tables/database_list/version"
)

# Statement types that are not reads, and why (the rest get a generic reason). INSTALL parses as LOAD;
# RESET, USE, SET VARIABLE and PRAGMA x = y parse as SET; CHECKPOINT parses as CALL.
REFUSED = {
    duckdb.StatementType.COPY: "COPY writes files",
    duckdb.StatementType.COPY_DATABASE: "COPY FROM DATABASE writes a database",
    duckdb.StatementType.EXPORT: "EXPORT DATABASE writes files",
    duckdb.StatementType.ATTACH: "ATTACH opens another database, possibly for writing",
    duckdb.StatementType.DETACH: "DETACH changes the session's databases",
    duckdb.StatementType.LOAD: "INSTALL/LOAD fetch or run extensions",
    duckdb.StatementType.SET: "SET, RESET, USE and PRAGMA name = value change the session's settings",
    duckdb.StatementType.VARIABLE_SET: "SET VARIABLE changes the session's state",
    duckdb.StatementType.CREATE: "CREATE makes tables, views, macros, types or secrets (temporary ones too)",
    duckdb.StatementType.CREATE_FUNC: "CREATE FUNCTION defines functions",
    duckdb.StatementType.INSERT: "INSERT writes data",
    duckdb.StatementType.UPDATE: "UPDATE writes data",
    duckdb.StatementType.DELETE: "DELETE writes data",
    duckdb.StatementType.MERGE_INTO: "MERGE INTO writes data",
    duckdb.StatementType.DROP: "DROP removes objects",
    duckdb.StatementType.ALTER: "ALTER changes objects",
    duckdb.StatementType.CALL: "CALL runs procedures such as CHECKPOINT (read table functions with SELECT * FROM …)",
    duckdb.StatementType.MULTI: "this statement expands into several, including CREATE (for PIVOT, list the values: "
    "PIVOT … ON col IN (…))",
    duckdb.StatementType.TRANSACTION: "transactions are managed by mm query",
    duckdb.StatementType.VACUUM: "VACUUM writes the database",
    duckdb.StatementType.ANALYZE: "ANALYZE writes statistics",
}

# PRAGMAs that only describe the catalog; the others change settings (profile_output even writes a file).
INTROSPECTION_PRAGMAS = frozenset(
    {"table_info", "show", "show_tables", "show_tables_expanded", "database_list", "version", "platform"}
)


class QueryRefused(ValueError):
    """User SQL that is not exactly one read statement; the message says what was refused and why."""


def connect_read_only(db_path: Path, root: str | Path,
                      register: Callable[[duckdb.DuckDBPyConnection], None] | None = None) -> duckdb.DuckDBPyConnection:
    """Open the catalog so that it can read files under `root` (a folder, or s3://bucket/prefix whose
    filesystem `register` adds) only and nothing can change that.

    The order matters: allowed_directories cannot be set once external access is off, and nothing can be set
    once the configuration is locked.
    """
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        if register is not None:
            register(con)
        root = str(root)
        folder = (root if is_s3_url(root) else str(Path(root).resolve())).rstrip("/") + "/"
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET allowed_directories = [?]", [folder])
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def read_statement(con: duckdb.DuckDBPyConnection, sql: str) -> duckdb.Statement:
    """The one read statement in `sql`; QueryRefused naming what was refused and why otherwise.

    A syntax error is left to DuckDB (duckdb.ParserException), whose message points at it.
    """
    statements = con.extract_statements(sql)
    if len(statements) != 1:
        what = "no SQL statement" if not statements else f"{len(statements)} statements"
        raise QueryRefused(f"{what} given: {READ_ONLY_HELP}, so give exactly one")
    statement = statements[0]
    reason = _refusal(con, statement)
    if reason:
        raise QueryRefused(f"{reason}. {READ_ONLY_HELP}")
    return statement


def _refusal(con: duckdb.DuckDBPyConnection, statement: duckdb.Statement) -> str | None:
    kind = statement.type
    if kind == duckdb.StatementType.SELECT:
        return None
    if kind == duckdb.StatementType.EXPLAIN:
        return _explain_refusal(con, statement.query)
    if kind == duckdb.StatementType.PRAGMA:
        name = next((word for _, word in _words(statement.query)[1:2]), "")
        if name.lower() in INTROSPECTION_PRAGMAS:
            return None
        return f"PRAGMA {name} is not one that only describes the catalog (PRAGMAs can change settings)"
    return REFUSED.get(kind, f"{kind.name} statements are not reads")


def _explain_refusal(con: duckdb.DuckDBPyConnection, sql: str) -> str | None:
    """EXPLAIN ANALYZE runs the statement it explains (EXPLAIN ANALYZE COPY … TO writes), so it must be a SELECT."""
    words = _words(sql)
    skip = 2 if len(words) > 1 and words[1][1].upper() in ("ANALYZE", "ANALYSE") else 1
    try:
        inner = con.extract_statements(sql[words[skip][0]:]) if len(words) > skip else []
    except duckdb.Error:
        inner = []
    if len(inner) == 1 and inner[0].type == duckdb.StatementType.SELECT:
        return None
    return ("EXPLAIN takes one SELECT here (EXPLAIN ANALYZE runs what it explains; options such as (FORMAT …) "
            "are not taken)")


def _words(sql: str) -> list[tuple[int, str]]:
    """(offset, text) of each token of `sql`, comments skipped (DuckDB's own tokenizer)."""
    offsets = [off for off, kind in duckdb.tokenize(sql) if kind != duckdb.token_type.comment]
    return [(off, m.group(0) if (m := re.match(r"\w+|\S", sql[off:])) else "") for off in offsets]

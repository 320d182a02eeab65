"""``ess redshift gentable``: a category's column spec as ``CREATE TABLE``, and what a table is.

Type mapping (docs/redshift.md has the table): ``S`` -> ``VARCHAR(n)`` (n from ``n=Len``,
else 256, Redshift's default width), ``I`` (unsigned 32-bit) -> ``BIGINT``, ``IS`` ->
``INTEGER``, ``L`` (unsigned 64-bit) -> ``NUMERIC(20,0)``, ``LS`` -> ``BIGINT``, ``F`` ->
``DOUBLE PRECISION``, ``IP`` -> ``VARCHAR(45)`` (an IPv6 address in text); ``X`` columns are
skipped. ``--key "col = distkey"`` adds ``DISTKEY``/``SORTKEY``/``ENCODE x`` to a column, on
Redshift only (PostgreSQL has no such clauses; they are reported and left out there).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ess.errors import UsageError
from ess.load.target import quote_ident, quote_table

DEFAULT_WIDTH = 256
TYPE_MAP = {
    "I": "BIGINT",
    "IS": "INTEGER",
    "L": "NUMERIC(20,0)",
    "LS": "BIGINT",
    "F": "DOUBLE PRECISION",
    "IP": "VARCHAR(45)",
}
_KEY_RE = re.compile(
    r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(distkey|sortkey|encode\s+[A-Za-z0-9_]+)\s*$", re.I
)


@dataclass(frozen=True)
class Column:
    name: str
    sqltype: str
    extra: str = ""  # Redshift column attributes (DISTKEY, SORTKEY, ENCODE x)


@dataclass(frozen=True)
class TableColumn:
    """A column of an existing table, as the server describes it."""

    name: str
    type: str  # base type name, e.g. "character varying", "bigint"
    width: int | None  # character width of VARCHAR/CHAR columns


def sql_type(typ: str, width: int | None) -> str:
    if typ == "S":
        return f"VARCHAR({width or DEFAULT_WIDTH})"
    return TYPE_MAP[typ]


def columns_from_spec(columnspec: str) -> list[Column]:
    from ess.aq.colspec import parse_colspec

    cols = []
    for item in columnspec.split():
        spec = parse_colspec(item)
        if not spec.skip:
            cols.append(Column(spec.name, sql_type(spec.typ, spec.width)))
    if not cols:
        raise UsageError("the category's column spec has no column to create (all X?)")
    return cols


def apply_keys(cols: list[Column], keys: Sequence[str]) -> list[Column]:
    out = list(cols)
    names = {c.name.lower(): i for i, c in enumerate(out)}
    for key in keys:
        m = _KEY_RE.match(key)
        if m is None:
            raise UsageError(f"--key {key!r}: expected 'column = distkey|sortkey|encode TYPE'")
        name, attr = m.group(1), " ".join(m.group(2).upper().split())
        if name.lower() not in names:
            raise UsageError(f"--key {key!r}: no column {name!r} in the category's column spec")
        i = names[name.lower()]
        out[i] = Column(out[i].name, out[i].sqltype, f"{out[i].extra} {attr}".strip())
    return out


def create_table_sql(table: str, cols: Sequence[Column], *, redshift: bool) -> str:
    parts = []
    for c in cols:
        extra = f" {c.extra}" if redshift and c.extra else ""
        parts.append(f"{quote_ident(c.name)} {c.sqltype}{extra}")
    return f"CREATE TABLE {quote_table(table)} ({', '.join(parts)})"


def gentable(
    ws: Any, table: str, category: str, *, keys: Sequence[str] = (), label: str | None = None
) -> tuple[str, list[str]]:
    """Create ``table`` on the linked database; returns the statement and notes for stderr."""
    import psycopg

    from ess.datastore.api import open_catalog
    from ess.load.target import connection, server_error, server_is_redshift

    spec = open_catalog(ws, label).get(category).effective_columnspec
    if not spec.strip():
        raise UsageError(f"category {category!r} has no column spec (ess category change ...)")
    cols = apply_keys(columns_from_spec(spec), keys)
    with connection(ws, autocommit=True) as (_reg, conn):
        redshift = server_is_redshift(conn)
        sql = create_table_sql(table, cols, redshift=redshift)
        try:
            conn.execute(sql)
        except psycopg.Error as exc:
            raise server_error(exc) from None
    notes = []
    if not redshift and any(c.extra for c in cols):
        notes.append("the server is not Redshift: --key attributes (DISTKEY, ...) left out")
    return sql, notes


def table_columns(conn: Any, table: str) -> list[TableColumn]:
    """The columns of ``table`` (already quoted by :func:`quote_table`) in order; the name goes
    to the server as a parameter."""
    import psycopg

    try:
        rows = conn.execute(
            "select a.attname, t.typname, a.atttypmod from pg_attribute a "
            "join pg_type t on t.oid = a.atttypid "
            "where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped "
            "order by a.attnum",
            (table,),
        ).fetchall()
    except psycopg.errors.UndefinedTable:
        raise UsageError(
            f"table {table} does not exist (ess redshift gentable TABLE CATEGORY creates it)"
        ) from None
    cols = []
    for name, typname, typmod in rows:
        width = typmod - 4 if typname in ("varchar", "bpchar") and typmod > 4 else None
        cols.append(TableColumn(name, typname, width))
    return cols

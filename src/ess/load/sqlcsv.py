"""``ess redshift sql``: run one statement, render its result as CSV in aq conventions.

aq conventions (as aq_pp writes): a quoted header line, strings double-quoted with ``"``
doubled, numbers bare (floats like C ``%.17g``), NULL and the empty string as an empty field,
booleans bare ``true``/``false``; dates, times and anything else as quoted text.
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Iterator
from typing import Any

from ess.load.target import server_error
from ess.workspace import Workspace


def render_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format(value, ".17g")
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        text = value.isoformat(sep=" ") if isinstance(value, datetime.datetime) else str(value)
    elif isinstance(value, bytes | memoryview):
        text = "\\x" + bytes(value).hex()
    else:
        text = str(value)
    return '"' + text.replace('"', '""') + '"' if text else ""


def render_rows(names: list[str], rows: Iterator[tuple[Any, ...]]) -> Iterator[str]:
    yield ",".join('"' + n.replace('"', '""') + '"' for n in names)
    for row in rows:
        yield ",".join(render_value(v) for v in row)


def run_sql(ws: Workspace, statement: str, *, conn: Any = None) -> list[str]:
    """Run ``statement`` (autocommit) and return the CSV lines (empty for no result set).
    A server error raises :class:`~ess.load.target.LoadError`: message and position."""
    import psycopg

    from ess.load.target import connection

    if conn is None:
        with connection(ws, autocommit=True) as (_reg, c):
            return run_sql(ws, statement, conn=c)
    try:
        cur = conn.execute(statement)
        if cur.description is None:
            return []
        names = [d.name for d in cur.description]
        return list(render_rows(names, iter(cur.fetchall())))
    except psycopg.Error as exc:
        raise server_error(exc) from None

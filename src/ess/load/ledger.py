"""``ess_load_ledger`` (one row per table and file loaded) and ``ess_load_errors``.

Exactly once on PostgreSQL: a file's loader claims its ledger row *first* in the same
transaction as the COPY (``INSERT ... ON CONFLICT DO NOTHING``). The primary key makes a second
loader of the same file (a retried task, a re-run, a pipeline orphaned by a killed worker)
wait for the first transaction: if that one commits, the second finds the row and skips the
file; if it rolls back (killed mid-load), the second loads it. The COPY and the ledger row
commit together, so a file is either wholly in the table with its row, or not at all.

On Redshift (which does not enforce keys) the master takes ``LOCK ess_load_ledger`` in the one
transaction that runs the manifest COPY and inserts the ledger rows.

``ess_load_errors`` is shaped like Redshift's ``stl_load_errors`` (tbl_name, filename,
line_number, colname, type, col_length, raw_line, raw_field_value, err_reason, starttime).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

LEDGER = "ess_load_ledger"
ERRORS = "ess_load_errors"

LEDGER_DDL = (
    f"CREATE TABLE IF NOT EXISTS {LEDGER} ("
    '"table" VARCHAR(512) NOT NULL, file VARCHAR(4096) NOT NULL, size BIGINT, '
    "mtime DOUBLE PRECISION, rows BIGINT, rejected BIGINT, loads INTEGER, "
    'loaded_at TIMESTAMP, PRIMARY KEY ("table", file))'
)
ERRORS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {ERRORS} ("
    "tbl_name VARCHAR(512), filename VARCHAR(4096), line_number BIGINT, colname VARCHAR(127), "
    "type VARCHAR(64), col_length INTEGER, raw_line VARCHAR(4096), "
    "raw_field_value VARCHAR(1024), err_reason VARCHAR(512), starttime TIMESTAMP)"
)


@dataclass(frozen=True)
class FileKey:
    table: str  # the quoted table name, as the loads name it
    path: str
    size: int
    mtime: float


@dataclass(frozen=True)
class RejectedRow:
    line: int
    column: str
    type: str
    width: int | None
    raw_line: str
    value: str
    reason: str


def ensure_tables(conn: Any) -> None:
    """Create the ledger and the error table once, before any loader runs (in parallel,
    ``CREATE TABLE IF NOT EXISTS`` can race on PostgreSQL's catalog)."""
    with conn.transaction():
        conn.execute(LEDGER_DDL)
        conn.execute(ERRORS_DDL)


def claim(conn: Any, key: FileKey, *, reload: bool) -> str | None:
    """Inside the load's transaction: claim ``key``'s ledger row. None: go on and load;
    otherwise why the file is not loaded ("skipped", or "changed: ...")."""
    got = conn.execute(
        f'INSERT INTO {LEDGER} ("table", file, size, mtime, rows, rejected, loads, loaded_at) '
        "VALUES (%s, %s, %s, %s, 0, 0, 1, now()) "
        'ON CONFLICT ("table", file) DO NOTHING RETURNING 1',
        (key.table, key.path, key.size, key.mtime),
    ).fetchone()
    if got is not None:
        return None
    size, mtime, loads = conn.execute(
        f'SELECT size, mtime, loads FROM {LEDGER} WHERE "table" = %s AND file = %s FOR UPDATE',
        (key.table, key.path),
    ).fetchone()
    if reload:
        conn.execute(
            f"UPDATE {LEDGER} SET size = %s, mtime = %s, loads = %s "
            'WHERE "table" = %s AND file = %s',
            (key.size, key.mtime, loads + 1, key.table, key.path),
        )
        return None
    if size != key.size or abs(float(mtime) - key.mtime) > 1e-3:
        return "changed"
    return "skipped"


def record(conn: Any, key: FileKey, *, rows: int, rejected: int) -> None:
    conn.execute(
        f"UPDATE {LEDGER} SET rows = %s, rejected = %s, loaded_at = now() "
        'WHERE "table" = %s AND file = %s',
        (rows, rejected, key.table, key.path),
    )


def ledgered(conn: Any, table: str) -> dict[str, tuple[int, float]]:
    """The files already loaded into ``table``: path -> (size, mtime)."""
    rows = conn.execute(
        f'SELECT file, size, mtime FROM {LEDGER} WHERE "table" = %s', (table,)
    ).fetchall()
    return {path: (int(size), float(mtime)) for path, size, mtime in rows}


def insert_many(conn: Any, keys: Sequence[FileKey], rows: Sequence[int]) -> None:
    """Redshift: the ledger rows of one manifest COPY (inside its transaction)."""
    for key, n in zip(keys, rows, strict=True):
        conn.execute(
            f'DELETE FROM {LEDGER} WHERE "table" = %s AND file = %s', (key.table, key.path)
        )
        conn.execute(
            f'INSERT INTO {LEDGER} ("table", file, size, mtime, rows, rejected, loads, '
            "loaded_at) VALUES (%s, %s, %s, %s, %s, 0, 1, getdate())",
            (key.table, key.path, key.size, key.mtime, n),
        )


def record_errors(conn: Any, key: FileKey, rejected: Sequence[RejectedRow]) -> None:
    if not rejected:
        return
    with conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {ERRORS} (tbl_name, filename, line_number, colname, type, col_length, "
            "raw_line, raw_field_value, err_reason, starttime) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now())",
            [
                (
                    key.table,
                    key.path,
                    r.line,
                    r.column,
                    r.type,
                    r.width,
                    r.raw_line[:4096],
                    r.value[:1024],
                    r.reason,
                )
                for r in rejected
            ],
        )

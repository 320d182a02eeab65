"""MAXERROR and TRUNCATECOLUMNS on PostgreSQL: check a file's rows against the table, in Polars.

PostgreSQL's COPY stops at the first bad row; Redshift's skips up to MAXERROR of them and, with
TRUNCATECOLUMNS, cuts strings to the column's width. A file's output is read once into string
columns and every check is one vectorised expression per column (no per-row Python): a value
that does not convert to the column's type, an integer out of range, a string longer than its
column (unless TRUNCATECOLUMNS: then cut, in bytes as Redshift counts them, never inside a
UTF-8 character), a row with more fields than the table has columns. Rows are numbered by
record (a quoted field holding a newline is one record), after IGNOREHEADER lines.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from ess.aq import csvbytes
from ess.load.ledger import RejectedRow
from ess.load.options import CopyOptions
from ess.load.schema import TableColumn

#: Rejected rows recorded in ess_load_errors per file (the count on stderr is exact).
MAX_RECORDED = 1000
_INT_RANGE = {"int2": (-(2**15), 2**15 - 1), "int4": (-(2**31), 2**31 - 1)}
_NUMBER = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
_INTEGER = r"^\s*[+-]?\d+\s*$"
_BOOL = ["t", "f", "true", "false", "y", "n", "yes", "no", "on", "off", "1", "0"]


@dataclass(frozen=True)
class Checked:
    csv: bytes  # the good rows, as CSV for COPY
    rows: int
    rejected: list[RejectedRow]  # at most MAX_RECORDED
    bad: int  # exact number of rejected rows


def cut_bytes(df: pl.DataFrame, name: str, width: int) -> pl.DataFrame:
    """Column ``name`` cut to at most ``width`` UTF-8 bytes at a character boundary.
    Vectorised rounds over the whole column: each drops ceil(excess/4) characters from the
    values still too long, never more than needed (a character is 1..4 bytes); a value
    needs at most a few rounds."""
    col = pl.col(name)
    df = df.with_columns(
        pl.when(col.str.len_bytes() > width).then(col.str.slice(0, width)).otherwise(col)
    )
    while True:
        excess = col.str.len_bytes().cast(pl.Int64) - width
        if not df.select((excess > 0).any()).item():
            return df
        drop = (excess + 3) // 4
        df = df.with_columns(
            pl.when(excess > 0).then(col.str.slice(0, col.str.len_chars() - drop)).otherwise(col)
        )


def _problem(col: TableColumn, value: pl.Expr, truncate: bool) -> tuple[pl.Expr, pl.Expr]:
    """(the value to load, why it is bad or null)."""
    present = value.is_not_null() & (value != "")
    none = pl.lit(None, dtype=pl.String)
    t = col.type
    if t in ("int2", "int4", "int8"):
        as_int = value.str.strip_chars().cast(pl.Int64, strict=False)
        bad = present & (~value.str.contains(_INTEGER) | as_int.is_null())
        lo, hi = _INT_RANGE.get(t, (-(2**63), 2**63 - 1))
        out_of = present & ~bad & ((as_int < lo) | (as_int > hi))
        why = (
            pl.when(bad)
            .then(pl.lit("Invalid digit, Value '" + t + "'"))
            .when(out_of)
            .then(pl.lit("Overflow, value out of range for " + t))
            .otherwise(none)
        )
        return value, why
    if t in ("float4", "float8", "numeric"):
        bad = present & ~value.str.contains(_NUMBER)
        return value, pl.when(bad).then(pl.lit("Invalid digit in numeric value")).otherwise(none)
    if t == "bool":
        bad = present & ~value.str.strip_chars().str.to_lowercase().is_in(_BOOL)
        return value, pl.when(bad).then(pl.lit("Invalid boolean value")).otherwise(none)
    if t == "date":
        parsed = value.str.strip_chars().str.to_date("%Y-%m-%d", strict=False)
        bad = present & parsed.is_null()
        return value, pl.when(bad).then(pl.lit("Invalid date format")).otherwise(none)
    if col.width is not None and t in ("varchar", "bpchar"):
        if truncate:  # already cut by check_rows
            return value, none
        long = value.str.len_bytes() > col.width
        why = pl.when(long).then(pl.lit(f"String length exceeds DDL length ({col.width})"))
        return value, why.otherwise(none)
    return value, none


def check_rows(data: bytes, cols: Sequence[TableColumn], opts: CopyOptions) -> Checked:
    n = len(cols)
    names = [f"c{i}" for i in range(n + 1)]  # one more: catches rows with extra fields
    if not data.strip():
        return Checked(b"", 0, [], 0)
    data, blank = csvbytes.guarded(data)  # read as text even if it starts like gzip
    df = pl.read_csv(
        io.BytesIO(data),
        has_header=False,
        schema={name: pl.String for name in names},
        missing_columns="insert",
        truncate_ragged_lines=True,
        skip_rows=opts.ignoreheader + blank,
        null_values=[opts.null_as] if opts.null_as is not None else None,
        quote_char='"',
    )
    if opts.truncatecolumns:
        for i, col in enumerate(cols):
            if col.width is not None and col.type in ("varchar", "bpchar"):
                df = cut_bytes(df, names[i], col.width)
    values, whys = [], []
    for i, col in enumerate(cols):
        value, why = _problem(col, pl.col(names[i]), opts.truncatecolumns)
        values.append(value.alias(names[i]))
        whys.append(why.alias(f"why{i}"))
    extra = pl.when(pl.col(names[n]).is_not_null()).then(pl.lit("Extra column(s) found"))
    whys.append(extra.otherwise(pl.lit(None, dtype=pl.String)).alias(f"why{n}"))
    line = (pl.int_range(1, pl.len() + 1) + opts.ignoreheader).alias("line")
    checked = df.with_columns(*values, *whys, line)
    first_bad = pl.coalesce(
        [pl.when(pl.col(f"why{i}").is_not_null()).then(pl.lit(i)) for i in range(n + 1)]
    )
    checked = checked.with_columns(first_bad.alias("bad_col"))
    good = checked.filter(pl.col("bad_col").is_null()).select(names[:n])
    bad = checked.filter(pl.col("bad_col").is_not_null())
    out = io.BytesIO()
    good.write_csv(out, include_header=False, null_value="", quote_style="necessary")
    return Checked(out.getvalue(), good.height, _rejected(bad, cols, names), bad.height)


def _rejected(
    bad: pl.DataFrame, cols: Sequence[TableColumn], names: list[str]
) -> list[RejectedRow]:
    n = len(cols)
    if bad.is_empty():
        return []
    head = bad.head(MAX_RECORDED)
    why = pl.coalesce([pl.col(f"why{i}") for i in range(n + 1)])
    raw_line = pl.concat_str([pl.col(c).fill_null("") for c in names[:n]], separator=",")
    value = pl.coalesce(
        [pl.when(pl.col("bad_col") == i).then(pl.col(names[i])) for i in range(n + 1)]
    )
    view = head.select(
        pl.col("line"), pl.col("bad_col"), why.alias("why"), raw_line.alias("raw"), value.alias("v")
    )
    out = []
    for line, bad_col, reason, raw, val in view.iter_rows():  # at most MAX_RECORDED rows
        col = cols[bad_col] if bad_col < n else None
        out.append(
            RejectedRow(
                line=line,
                column=col.name if col else "",
                type=col.type if col else "",
                width=col.width if col else None,
                raw_line=raw or "",
                value=val or "",
                reason=reason or "",
            )
        )
    return out

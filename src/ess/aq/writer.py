"""Essentia CSV output (spec section 6), built as one Polars string expression per row.

Strings are double-quoted (embedded `"` doubled, RFC 4180 — the spec leaves it open), the empty
string is an empty field, integers and IPs are bare, floats are C `%.17g`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import BinaryIO

import polars as pl

from ess.aq.numfmt import format_float
from ess.aq.rules import OutputAttrs
from ess.errors import AqError


@dataclass(frozen=True)
class OutCol:
    name: str  # internal column name
    label: str
    typ: str


def field_expr(col: OutCol, attrs: OutputAttrs) -> pl.Expr:
    value = pl.col(col.name)
    if col.typ == "F":
        return format_float(value, 6 if attrs.fmt_g else 17)
    if col.typ == "S":
        if attrs.esc:
            text = value.str.replace_all("\\", "\\\\", literal=True)
            text = text.str.replace_all('"', '\\"', literal=True)
            if attrs.sep != '"':
                text = text.str.replace_all(attrs.sep, "\\" + attrs.sep, literal=True)
        else:
            text = value.str.replace_all('"', '""', literal=True)
        if not attrs.quoted:
            return value
        quoted = pl.concat_str([pl.lit('"'), text, pl.lit('"')])
        return pl.when(value == "").then(pl.lit("")).otherwise(quoted)
    if col.typ in ("I", "IS", "L", "LS"):
        return value  # write_csv prints integers bare, as Essentia does
    return value.cast(pl.String)


def title_line(cols: list[OutCol], attrs: OutputAttrs) -> bytes:
    return (attrs.sep.join(f'"{c.label}"' for c in cols) + "\n").encode()


@dataclass
class Sink:
    """One destination file (or stdout); shared by every output rule that names it."""

    path: str
    append: bool
    handle: BinaryIO | None = None
    owned: bool = field(default=False)

    def open(self) -> BinaryIO:
        if self.handle is None:
            if self.path == "-":
                self.handle = sys.stdout.buffer
            else:
                try:
                    self.handle = open(self.path, "ab" if self.append else "wb")  # noqa: SIM115
                except OSError as exc:
                    raise AqError(
                        f"cannot open output file {self.path!r}: {exc.strerror}"
                    ) from None
                self.owned = True
        return self.handle

    def write(self, data: bytes) -> None:
        self.open().write(data)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.flush()
            if self.owned:
                self.handle.close()
            self.handle = None


def write_rows(df: pl.DataFrame, cols: list[OutCol], attrs: OutputAttrs, sink: Sink) -> None:
    if df.height == 0:
        return
    # each field is already rendered; let write_csv join them (cheaper than concat_str)
    out = df.select([field_expr(c, attrs).alias(f"c{i}") for i, c in enumerate(cols)])
    # straight into the destination: no intermediate copy of the batch's text
    out.write_csv(sink.open(), include_header=False, quote_style="never", separator=attrs.sep)

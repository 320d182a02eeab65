"""Essentia CSV output (spec section 6), built as one Polars string expression per row.

Strings are double-quoted (embedded `"` doubled, RFC 4180 — the spec leaves it open), the empty
string is an empty field, integers and IPs are bare, floats are C `%.17g`.
"""

from __future__ import annotations

import io
import sys
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
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
    """One destination file (or stdout); shared by every output rule that names it.

    Batches are rendered to CSV bytes in a small thread pool (Polars releases the GIL, so two
    batches format at once on two cores) and written strictly in submission order.
    """

    path: str
    append: bool
    handle: BinaryIO | None = None
    owned: bool = field(default=False)
    pending: deque[Future[bytes]] = field(default_factory=deque)

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
        self.drain(0)
        self.open().write(data)

    def submit(self, render: Callable[[], bytes]) -> None:
        self.open()  # an unwritable destination fails now, not in a worker thread
        self.pending.append(_render_pool().submit(render))
        self.drain(_IN_FLIGHT)

    def drain(self, keep: int) -> None:
        while len(self.pending) > keep:
            data = self.pending.popleft().result()
            if data:
                self.open().write(data)

    def close(self) -> None:
        try:
            self.drain(0)
        finally:
            for future in self.pending:  # only after a failure: drop the rest
                future.cancel()
            self.pending.clear()
            if self.handle is not None:
                self.handle.flush()
                if self.owned:
                    self.handle.close()
                self.handle = None


_IN_FLIGHT = 2  # rendered batches waiting per sink: bounds memory, keeps both cores busy
_POOL: ThreadPoolExecutor | None = None


def _render_pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(_IN_FLIGHT, thread_name_prefix="ess-aq-writer")
    return _POOL


def write_rows(df: pl.DataFrame, cols: list[OutCol], attrs: OutputAttrs, sink: Sink) -> None:
    if df.height == 0:
        return
    sink.submit(lambda: render_rows(df, cols, attrs))


def render_rows(df: pl.DataFrame, cols: list[OutCol], attrs: OutputAttrs) -> bytes:
    """The batch as Essentia CSV bytes (no title line)."""
    # each field is rendered first; write_csv then joins them (cheaper than concat_str)
    out = df.select([field_expr(c, attrs).alias(f"c{i}") for i, c in enumerate(cols)])
    buf = io.BytesIO()
    out.write_csv(buf, include_header=False, quote_style="never", separator=attrs.sep)
    return buf.getvalue()

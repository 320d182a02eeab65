"""Essentia CSV output (spec section 6), built as one Polars string expression per row.

Strings are double-quoted (embedded `"` doubled, RFC 4180 — the spec leaves it open), the empty
string is an empty field, integers and IPs are bare, floats are C `%.17g`.
"""

from __future__ import annotations

import io
import sys
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO

import polars as pl

from ess.aq import native
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
        if not attrs.quoted:  # noq: bare strings, still escaped with esc
            return text if attrs.esc else value
        quoted = pl.concat_str([pl.lit('"'), text, pl.lit('"')])
        return pl.when(value == "").then(pl.lit("")).otherwise(quoted)
    if col.typ in ("I", "IS", "L", "LS"):
        return value  # write_csv prints integers bare, as Essentia does
    return value.cast(pl.String)


def title_line(cols: Sequence[OutCol], attrs: OutputAttrs) -> bytes:
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
    pending: deque[Future[bytes | memoryview]] = field(default_factory=deque)

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

    def submit(self, render: Callable[[], bytes | memoryview]) -> None:
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


def write_rows(df: pl.DataFrame, cols: Sequence[OutCol], attrs: OutputAttrs, sink: Sink) -> None:
    if df.height == 0:
        return
    sink.submit(lambda: render_rows(df, cols, attrs))


def render_rows(df: pl.DataFrame, cols: Sequence[OutCol], attrs: OutputAttrs) -> bytes | memoryview:
    """The batch as Essentia CSV bytes (no title line)."""
    native = _render_native(df, cols, attrs)
    return native if native is not None else _render_polars(df, cols, attrs)


def _render_polars(df: pl.DataFrame, cols: Sequence[OutCol], attrs: OutputAttrs) -> bytes:
    # each field is rendered first; write_csv then joins them (cheaper than concat_str)
    out = df.select([field_expr(c, attrs).alias(f"c{i}") for i, c in enumerate(cols)])
    buf = io.BytesIO()
    out.write_csv(buf, include_header=False, quote_style="never", separator=attrs.sep)
    return buf.getvalue()


def _native_kind(typ: str, attrs: OutputAttrs) -> tuple[pl.DataType, int]:
    if typ == "F":
        return pl.Float64(), native.K_FLOAT64
    if typ == "L":
        return pl.UInt64(), native.K_UINT64
    if typ in ("I", "IS", "LS"):
        return pl.Int64(), native.K_INT64
    quoted = typ == "S" and attrs.quoted
    return pl.String(), native.K_STR_QUOTED if quoted else native.K_STR_RAW


def _render_native(
    df: pl.DataFrame, cols: Sequence[OutCol], attrs: OutputAttrs
) -> memoryview | None:
    """The same bytes from the C helper, or None when it is unavailable or the layout unusual."""
    done = render_rows_with_ends(df, cols, attrs, want_ends=False)
    return None if done is None else done[0]


def render_rows_with_ends(
    df: pl.DataFrame, cols: Sequence[OutCol], attrs: OutputAttrs, *, want_ends: bool = True
) -> tuple[memoryview, pl.Series | None] | None:
    """The rows as CSV bytes and, with `want_ends`, the offset just past each row's newline
    (a string field may hold a newline); None without the C helper or for unusual layouts."""
    lib = native.native_library()
    sep = attrs.sep.encode()
    if lib is None or attrs.esc or len(sep) != 1 or not cols:
        return None
    import pyarrow as pa

    structs, keep, room = [], [], df.height * (1 + len(cols)) + 64
    for col in cols:
        series = df.get_column(col.name)
        dtype, kind = _native_kind(col.typ, attrs)
        if series.dtype != dtype:
            return None
        arr = series.to_arrow(compat_level=pl.CompatLevel.oldest())
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        keep.append(arr)
        bufs = arr.buffers()
        valid = bufs[0].address if bufs[0] is not None and arr.null_count else None
        if kind in (native.K_STR_QUOTED, native.K_STR_RAW):
            if arr.type != pa.large_string():
                return None
            room += 2 * df.height + 2 * bufs[2].size if bufs[2] is not None else 2 * df.height
            values = bufs[2].address if bufs[2] is not None else None
            offsets = bufs[1].address
        else:
            room += 32 * df.height  # 24 characters at most, and snprintf's final NUL
            values, offsets = bufs[1].address, None
        structs.append(native.CsvColumn(kind, values, offsets, valid, arr.offset))
    out = pa.allocate_buffer(room)
    ends = pa.allocate_buffer(8 * df.height) if want_ends else None
    table = (native.CsvColumn * len(structs))(*structs)
    precision = 6 if attrs.fmt_g else 17
    where = ends.address if ends is not None else None
    used = lib.ess_render_csv(table, len(structs), df.height, sep[0], precision, out.address, where)
    if ends is None:
        return memoryview(out)[:used], None
    offsets = pl.from_arrow(pa.Array.from_buffers(pa.int64(), df.height, [None, ends]))
    assert isinstance(offsets, pl.Series)
    return memoryview(out)[:used], offsets

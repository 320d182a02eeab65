"""Writing query results: CSV in the aq tools' conventions (the default), JSON lines, a table.

CSV is rendered by aq_pp's own writer (:mod:`ess.aq.writer`): strings double-quoted, integers
bare, floats as aq_pp prints them (``%.17g``), a title line of quoted names when the query form
has one (spec 5.3: Essentia's row queries have none).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import BinaryIO

import polars as pl

from ess.errors import UsageError

FORMATS = ("csv", "json", "table")


def _aq_type(dtype: pl.DataType) -> str:
    if dtype.is_float():
        return "F"
    if dtype == pl.UInt64:
        return "L"
    if dtype.is_integer() or dtype == pl.Boolean:
        return "I"
    return "S"


def _aq_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Columns in the types the aq writer renders: Int64/UInt64, Float64, String."""
    exprs = []
    for name, dtype in frame.schema.items():
        typ = _aq_type(dtype)
        target: pl.DataType = {"F": pl.Float64(), "L": pl.UInt64(), "I": pl.Int64()}.get(
            typ, pl.String()
        )
        exprs.append(pl.col(name) if dtype == target else pl.col(name).cast(target))
    return frame.select(exprs)


class ResultWriter:
    """Writes result frames as they come; ``header`` is the title line's names (None: none)."""

    def __init__(self, stream: BinaryIO, fmt: str, header: Sequence[str] | None) -> None:
        if fmt not in FORMATS:
            raise UsageError(f"--format {fmt}: use one of {', '.join(FORMATS)}")
        self.stream = stream
        self.fmt = fmt
        self.header = list(header) if header is not None else None
        self.titled = False
        self.table: list[pl.DataFrame] = []
        self.rows = 0

    def write(self, frame: pl.DataFrame) -> None:
        if self.header is not None and len(self.header) == frame.width:
            frame = frame.rename(dict(zip(frame.columns, self.header, strict=True)))
        self.rows += frame.height
        if self.fmt == "table":
            self.table.append(frame)
            return
        if self.fmt == "json":
            if frame.height:
                frame.write_ndjson(self.stream)
            return
        from ess.aq.rules import OutputAttrs
        from ess.aq.writer import OutCol, render_rows, title_line

        frame = _aq_frame(frame)
        cols = [OutCol(c, c, _aq_type(t)) for c, t in frame.schema.items()]
        if self.header is not None and not self.titled:
            self.stream.write(title_line(cols, OutputAttrs()))
            self.titled = True
        if frame.height:
            self.stream.write(render_rows(frame, cols, OutputAttrs()))

    def close(self, columns: Sequence[str] = ()) -> None:
        """End the output (``columns``: the names when no frame came at all)."""
        if self.fmt == "csv" and self.header is not None and not self.titled:
            names = self.header or list(columns)
            self.stream.write(("".join(f'"{n}",' for n in names)[:-1] + "\n").encode())
        if self.fmt == "table":
            frames = [f for f in self.table if f.width]
            frame = pl.concat(frames, how="vertical_relaxed") if frames else None
            self.stream.write(render_table(frame, self.header or list(columns)).encode())
        self.stream.flush()


def render_table(frame: pl.DataFrame | None, names: Sequence[str]) -> str:
    """An aligned text table: names, a rule, the rows (numbers right-aligned)."""
    if frame is not None:
        names = frame.columns
    cells = [list(names)]
    right = [False] * len(names)
    if frame is not None:
        right = [dt.is_numeric() for dt in frame.dtypes]
        for row in frame.iter_rows():
            cells.append(["" if v is None else _cell(v) for v in row])
    widths = [max(len(r[i]) for r in cells) for i in range(len(names))]
    lines = []
    for n, cells_row in enumerate(cells):
        parts = [
            v.rjust(w) if right[i] and n else v.ljust(w)
            for i, (v, w) in enumerate(zip(cells_row, widths, strict=True))
        ]
        lines.append(" | ".join(parts).rstrip())
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str) if isinstance(value, list | dict) else str(value)

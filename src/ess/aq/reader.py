"""Batches of input (ess.aq.batches) → raw string columns → typed columns.

Three parsers, cheapest first: the C parser for clean chunks, Polars' typed CSV reader, then
strings converted with the field rules. Field conversion follows spec 2.1: empty field → 0 / "",
`-` in a numeric field → 0, any other unparsable number is a conversion error (row dropped under
`eok`, fatal otherwise).
"""

from __future__ import annotations

import re
import sys

import polars as pl

from ess.aq import csvbytes, escaped, htmltab, native
from ess.aq.batches import Chunk
from ess.aq.colspec import INT_TYPES, ColSpec, polars_dtype
from ess.aq.dates import date_to_epoch
from ess.aq.native import count_byte
from ess.aq.rules import InputAttrs, Sep
from ess.aq.values import wrap_int
from ess.errors import AqDataError, AqSyntaxError


def _lines(data: bytes) -> pl.Series:
    text = data.decode("utf-8", errors="replace")
    if text.endswith("\n"):
        text = text[:-1]
    frame = pl.DataFrame({"l": [text]}).select(pl.col("l").str.split("\n"))
    return frame.explode("l").to_series()


LINE = "__line"  # hidden column of parse_chunk: the record's line offset in its chunk


def parse_chunk(chunk: Chunk, attrs: InputAttrs, items: list[ColSpec | Sep]) -> pl.DataFrame:
    """Raw string columns `f0, f1, ...` (one per non-separator item) for one chunk, and `__line`
    (the record's line offset, for error messages: blank lines are dropped here)."""
    specs = [it for it in items if isinstance(it, ColSpec)]
    names = [f"f{i}" for i in range(len(specs))]
    data = chunk.data
    if not data.strip():
        return pl.DataFrame({n: pl.Series([], dtype=pl.String) for n in names})
    if escaped.applies(attrs, specs) and chunk.has_backslash:
        return _regex_chunk(chunk, attrs, specs)
    if attrs.fmt in ("csv", "sep"):
        # extra trailing fields are ignored (Essentia's default since 1.2.3-1; the CSV reader
        # truncates them); `nox` makes such a record an input error
        data = _without_long_records(chunk, attrs, len(specs)) if attrs.nox else chunk.data
        try:
            frame = _read_strings(data, attrs, specs, names)
        except pl.exceptions.ComputeError:  # e.g. an unterminated quote
            return _regex_chunk(chunk, attrs, specs)
        # missing trailing fields are empty (a column no record reaches comes back null);
        # blank lines are skipped [AMBIGUOUS in the spec]; the CSV reader turns them into rows
        # of empty fields, so such rows go (a record of only empty fields is dropped too)
        frame = frame.with_columns(pl.all().fill_null("")).with_row_index(LINE)
        return frame.filter(~pl.all_horizontal(pl.exclude(LINE) == ""))
    if attrs.fmt in ("jsn", "xml"):
        return _keyed_chunk(chunk, attrs, specs)
    if attrs.fmt == "tab":  # missing cells are empty, as missing CSV fields are
        return htmltab.parse_rows(data, len(specs)).with_columns(pl.all().fill_null(""))
    lines = pl.DataFrame({"l": _lines(data).str.strip_chars_end("\r")}).with_row_index(LINE)
    lines = lines.filter(pl.col("l") != "")
    if attrs.fmt == "fix":
        cols, pos = [], 0
        for name, spec in zip(names, specs, strict=True):
            if spec.width is None:
                raise AqSyntaxError(f"-f,fix needs n=Len on every column ({spec.name or 'X'})")
            cols.append(pl.col("l").str.slice(pos, spec.width).alias(name))
            pos += spec.width
        return lines.select(LINE, *cols)
    if attrs.fmt == "div":
        regex = div_regex(items)
        fields = pl.col("l").str.extract_groups(regex).struct.rename_fields(names)
        return lines.select(LINE, fields.struct.unnest())
    raise AqSyntaxError(f"input format {attrs.fmt!r} is not supported")  # pragma: no cover


def _keyed_chunk(chunk: Chunk, attrs: InputAttrs, specs: list[ColSpec]) -> pl.DataFrame:
    """Rows of the JSON documents / XML document of a chunk (ess.aq.keyed); absent values and
    values not in context are empty (0 for numbers)."""
    from ess.aq import keyed

    paths = [keyed.parse_keyspec(s.key_spec, attrs.base) if not s.skip else [] for s in specs]
    rows = keyed.json_rows if attrs.fmt == "jsn" else keyed.xml_rows
    frame = rows(chunk.data, paths, source=chunk.source, first_line=chunk.first_line)
    return frame.with_columns(pl.all().fill_null(""))


def _read_strings(
    data: bytes, attrs: InputAttrs, specs: list[ColSpec], names: list[str]
) -> pl.DataFrame:
    data, drop = csvbytes.guarded(data)
    return pl.read_csv(
        data,
        columns=_kept(specs, names),
        has_header=False,
        separator=attrs.sep,
        quote_char='"' if attrs.quoted else None,
        schema=dict.fromkeys(names, pl.String),
        truncate_ragged_lines=True,
        missing_columns="insert",  # a short first record must not fail the chunk
        extra_columns="ignore",  # nor a long one (later ones are truncated)
        empty_string_is_null=False,
        encoding="utf8-lossy",
        raise_if_empty=False,
    ).slice(drop)


def _regex_chunk(chunk: Chunk, attrs: InputAttrs, specs: list[ColSpec]) -> pl.DataFrame:
    """Fields of a chunk split one line at a time by a regular expression (ess.aq.escaped): for
    `esc` input, and for a chunk the CSV reader refuses (an unterminated quote), so that the
    error names the record's line."""
    lines = _lines(chunk.data).str.strip_chars_end("\r")
    frame = escaped.split_records(lines, attrs, specs).with_row_index(LINE)
    if attrs.nox:
        long = frame.select(pl.col(escaped.TAIL).is_not_null().arg_true()).to_series()
        if len(long) and not attrs.eok:
            raise AqDataError(
                f"{chunk.source}, line {chunk.first_line + long[0]}: more fields than the "
                f"{len(specs)} columns of -d (-f,nox; add eok to skip such records)"
            )
        if len(long) and not attrs.qui:
            sys.stderr.write(
                f"aq_pp: {chunk.source}: {len(long)} record(s) with too many fields skipped\n"
            )
        frame = frame.filter(pl.col(escaped.TAIL).is_null())
    frame = frame.drop(escaped.TAIL)
    return frame.filter(~pl.all_horizontal(pl.exclude(LINE) == "").fill_null(False))


def _too_many_fields(chunk: Chunk, attrs: InputAttrs, width: int) -> list[int] | None:
    """0-based indexes of the records with more fields than the column spec, or None.

    Polars refuses such a chunk as a whole (SchemaError), so the check runs first: a cheap
    vectorised parse of one extra field rules out most chunks, and only a suspicious chunk is
    split record by record (error path only).
    """
    import csv
    import io

    if not _has_long_records(chunk.data, attrs, width):
        return None
    # a lone CR is data to Polars, but ends a line for csv (which then refuses the record)
    text = chunk.data.decode("utf-8", errors="replace").replace("\r", " ")
    quote = '"' if attrs.quoted else None
    # records have no size limit (spec: bz= is ignored); csv refuses fields over 128 KB
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    reader = csv.reader(
        io.StringIO(text),
        delimiter=attrs.sep,
        quotechar=quote or "\0",
        quoting=csv.QUOTE_MINIMAL if quote else csv.QUOTE_NONE,
    )
    long = [i for i, row in enumerate(reader) if len(row) > width]
    return long or None


def _has_long_records(data: bytes, attrs: InputAttrs, width: int) -> bool:
    """Whether any record may have more separators than the `width` fields allow."""
    if b"\x00" in data:  # the one-column read below splits on NUL: count in Python instead
        text = data.decode("utf-8", errors="replace")
        counts = pl.Series(text.split("\n")).str.count_matches(attrs.sep, literal=True)
    else:
        data, drop = csvbytes.guarded(data)
        frame = pl.read_csv(
            data,
            has_header=False,
            separator="\x00",
            quote_char=None,
            schema={"line": pl.String},
            truncate_ragged_lines=True,
            raise_if_empty=False,
            encoding="utf8-lossy",
        ).slice(drop)
        counts = frame.to_series().str.count_matches(attrs.sep, literal=True)
    most = counts.max()
    return most is not None and int(most) >= width  # type: ignore[arg-type]


def _separators_balance(data: bytes, attrs: InputAttrs, specs: list[ColSpec], rows: int) -> bool:
    """Cheap proof that none of the `rows` records parsed by the fast path is too long.

    Every record the fast path accepts has its last field, which is numeric (a short record
    would show a null there), so it holds at least (width - 1) separators; if the chunk holds
    exactly rows * (width - 1), none holds more. Blank lines add none.
    """
    sep = attrs.sep.encode()
    last = specs[-1] if specs else None
    if len(sep) != 1 or last is None or last.skip or last.typ not in ("I", "IS", "L", "LS", "F"):
        return False
    if attrs.quoted and count_byte(data, b'"'):
        return False
    return count_byte(data, sep) == rows * (len(specs) - 1)


def _without_long_records(chunk: Chunk, attrs: InputAttrs, width: int) -> bytes:
    long = _too_many_fields(chunk, attrs, width)
    if long is None:
        return chunk.data
    if not attrs.eok:
        raise AqDataError(
            f"{chunk.source}, line {chunk.first_line + long[0]}: more fields than the "
            f"{width} columns of -d (-f,nox; add eok to skip such records)"
        )
    if not attrs.qui:
        sys.stderr.write(
            f"aq_pp: {chunk.source}: {len(long)} record(s) with too many fields skipped\n"
        )
    drop = set(long)  # blanked, not removed: later records keep their line offsets
    kept = [b"" if i in drop else line for i, line in enumerate(chunk.data.split(b"\n"))]
    return b"\n".join(kept)


def _kept(specs: list[ColSpec], names: list[str]) -> list[int]:
    """Fields the CSV parser must materialise: skipped (X) fields are never built."""
    kept = [i for i, s in enumerate(specs) if not s.skip]
    return kept or [0]


def native_typed(
    chunk: Chunk, attrs: InputAttrs, items: list[ColSpec | Sep], names: list[str],
    check_only: frozenset[str] = frozenset(),
) -> pl.DataFrame | None:  # fmt: skip
    """Typed frame from the C parser for a clean chunk, or None when another path must parse it.

    Columns named in `check_only` (numeric fields nothing reads) are validated, as Essentia
    converts every declared field, but never stored.
    """
    if attrs.fmt not in ("csv", "sep"):
        return None
    specs = [it for it in items if isinstance(it, ColSpec)]
    if escaped.applies(attrs, specs) and chunk.has_backslash:
        return None
    kinds = []
    for spec, name in zip(specs, names, strict=True):
        if spec.skip:
            kinds.append(native.P_SKIP)
        elif spec.typ in ("S", "IP"):
            kinds.append(native.P_STR)
        elif spec.has("trm") or spec.has("hex") or spec.has("clf") or spec.has("tim"):
            return None
        else:
            kind = {"F": native.P_FLOAT, "L": native.P_UINT}.get(spec.typ, native.P_INT)
            kinds.append(kind | native.P_CHECK if name in check_only else kind)
    if all(k in (native.P_SKIP, native.P_STR) for k in kinds):
        return None  # nothing numeric to prove the record layout with
    sep = attrs.sep.encode()
    parsed = native.parse_delimited(chunk.raw, sep, attrs.quoted, kinds, chunk.max_records())
    if parsed is None:
        return None
    table, rows = parsed
    if not table.num_columns:  # nothing stored: the frame only carries the row count
        return row_carrier(rows)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    stored = [(i, s, n) for i, (s, n) in enumerate(zip(specs, names, strict=True))
              if f"f{i}" in frame.columns]  # fmt: skip
    return frame.select(_typed_exprs(stored))


ROWS = "__rows"  # hidden column of a frame that has rows but no columns (Polars needs one)


def row_carrier(height: int) -> pl.DataFrame:
    return pl.select(pl.repeat(0, height, dtype=pl.Int8).alias(ROWS))


def fast_typed(
    chunk: Chunk, attrs: InputAttrs, items: list[ColSpec | Sep], names: list[str]
) -> pl.DataFrame | None:
    """Typed frame straight from Polars' CSV parser, or None when the slow path is needed.

    Clean data (every numeric field parses; no blank, `-` or bad fields) is the common case;
    Polars then parses numbers natively, which is cheaper than strings + conversion. Any null
    in a numeric column means the chunk needs the field rules of `convert`, so it is re-parsed.
    """
    if attrs.fmt not in ("csv", "sep"):
        return None
    specs = [it for it in items if isinstance(it, ColSpec)]
    if escaped.applies(attrs, specs) and chunk.has_backslash:
        return None
    schema: dict[str, pl.DataType] = {}
    for i, spec in enumerate(specs):
        numeric = spec.typ in ("I", "IS", "L", "LS", "F")
        if numeric and (spec.has("trm") or spec.has("hex") or spec.has("clf") or spec.has("tim")):
            return None
        schema[f"f{i}"] = polars_dtype(spec.typ) if numeric else pl.String()
    if not any(dtype != pl.String() for dtype in schema.values()):
        return None
    if attrs.quoted and chunk.raw[-1:] == b'"':  # a quote opened at the very end makes this
        return None  # Polars reader panic (1.x-2.1); the general path reports the record
    try:
        frame = _read_typed(chunk.data, attrs, specs, schema)
    except pl.exceptions.ComputeError:  # e.g. an unterminated quote: the general path says so
        return None
    numeric_cols = [n for n, d in schema.items() if d != pl.String()]
    if frame.select(pl.any_horizontal(pl.col(numeric_cols).is_null().any())).item():
        return None
    if not _separators_balance(chunk.data, attrs, specs, frame.height):
        return None  # the slow path checks record lengths one by one
    stored = [(i, s, n) for i, (s, n) in enumerate(zip(specs, names, strict=True)) if not s.skip]
    return frame.select(_typed_exprs(stored))


def _read_typed(
    data: bytes, attrs: InputAttrs, specs: list[ColSpec], schema: dict[str, pl.DataType]
) -> pl.DataFrame:
    data, drop = csvbytes.guarded(data)
    return pl.read_csv(
        data,
        columns=_kept(specs, list(schema)),
        has_header=False,
        separator=attrs.sep,
        quote_char='"' if attrs.quoted else None,
        schema=schema,
        truncate_ragged_lines=True,
        missing_columns="insert",  # a short first record: nulls, so the general path runs
        extra_columns="ignore",  # a long one: the separator count sends it there too
        empty_string_is_null=False,
        encoding="utf8-lossy",
        raise_if_empty=False,
        ignore_errors=True,
    ).slice(drop)


def _typed_exprs(stored: list[tuple[int, ColSpec, str]]) -> list[pl.Expr]:
    """Field `f<i>` as parsed → the column's value (string attributes, integer wrap-around)."""
    exprs = []
    for i, spec, name in stored:
        col = pl.col(f"f{i}")
        if spec.typ in ("S", "IP"):
            exprs.append(convert(col, spec).alias(name))
        elif spec.typ in ("I", "IS", "L"):
            exprs.append(wrap_int(col, spec.typ).alias(name))
        else:
            exprs.append(col.alias(name))
    return exprs


def div_regex(items: list[ColSpec | Sep]) -> str:
    """`-f,div`: each column runs to the first occurrence of the following separator."""
    parts = ["^"]
    for i, item in enumerate(items):
        if isinstance(item, Sep):
            parts.append(re.escape(item.text))
            continue
        last = not any(isinstance(x, ColSpec) for x in items[i + 1 :])
        if item.width is not None:
            parts.append(f"(.{{{item.width}}})")
        elif last and not any(isinstance(x, Sep) for x in items[i + 1 :]):
            parts.append("(.*)")
        else:
            parts.append("(.*?)")
    return "(?s)" + "".join(parts)


_CLF = [("\\\\", "\x00"), ('\\"', '"'), ("\\r", "\r"), ("\\n", "\n"), ("\\t", "\t"),
        ("\\v", "\v"), ("\\f", "\f"), ("\x00", "\\")]  # fmt: skip


def convert(raw: pl.Expr, spec: ColSpec) -> pl.Expr:
    """Typed value of one raw field; null marks a conversion error."""
    value = raw
    if spec.has("clf"):
        for old, new in _CLF:
            value = value.str.replace_all(old, new, literal=True)
    if spec.has("trm"):
        value = value.str.strip_chars(" \t")
    if spec.typ == "S" or spec.typ == "IP":
        if spec.has("lo"):
            value = value.str.to_lowercase()
        if spec.has("up"):
            value = value.str.to_uppercase()
        return value
    blank = (value == "") | (value == "-")
    if spec.has("tim") and spec.typ != "F":  # logcnv's Apache time: 10/Oct/2000:13:55:36 -0700
        number = date_to_epoch(value, "d.b.Y.H.M.S.z", gm=True)
        return pl.when(blank).then(pl.lit(0)).otherwise(wrap_int(number, spec.typ))
    if spec.typ == "F":
        number = value.cast(pl.Float64, strict=False)
        return pl.when(blank).then(pl.lit(0.0)).otherwise(number)
    if spec.has("hex"):
        number = value.str.replace(r"^0[xX]", "").str.to_integer(base=16, strict=False)
    else:
        number = value.str.to_integer(strict=False)
    return pl.when(blank).then(pl.lit(0)).otherwise(wrap_int(number, spec.typ))


def typed_frame(
    raw: pl.DataFrame, items: list[ColSpec | Sep], names: list[str]
) -> tuple[pl.DataFrame, pl.Series]:
    """Convert the kept fields; returns the frame and a per-row error mask."""
    specs = [it for it in items if isinstance(it, ColSpec)]
    exprs = []
    checks = []
    for i, (spec, name) in enumerate(zip(specs, names, strict=True)):
        if spec.skip:
            continue
        exprs.append(convert(pl.col(f"f{i}"), spec).cast(polars_dtype(spec.typ)).alias(name))
        checks.append(pl.col(name).is_null())
    typed = raw.select(exprs)
    bad = typed.select(pl.any_horizontal(checks).alias("bad")).to_series() if checks else None
    if bad is None:
        bad = pl.Series("bad", [False] * raw.height, dtype=pl.Boolean)
    return typed, bad


def describe_error(
    raw: pl.DataFrame, typed: pl.DataFrame, items: list[ColSpec | Sep], names: list[str],
    row: int, chunk: Chunk,
) -> str:  # fmt: skip
    """Message for the first bad row: input, line, column and the offending text."""
    specs = [it for it in items if isinstance(it, ColSpec)]
    for i, (spec, name) in enumerate(zip(specs, names, strict=True)):
        if spec.skip or typed[name][row] is not None:
            continue
        text = raw[f"f{i}"][row]
        line = chunk.first_line + _line_offset(raw, row)
        if text is None:
            return f"{chunk.source}, line {line}: record does not match the column spec"
        kind = "integer" if spec.typ in INT_TYPES else "float"
        return (
            f"{chunk.source}, line {line}, field {i + 1} ({spec.name}, type {spec.typ}): "
            f"cannot convert {text!r} to {kind}"
        )
    line = chunk.first_line + _line_offset(raw, row)  # pragma: no cover
    return f"{chunk.source}, line {line}: bad record"  # pragma: no cover


def _line_offset(raw: pl.DataFrame, row: int) -> int:
    """The line offset of a record within its chunk (its row number when unknown: HTML)."""
    return int(raw[LINE][row]) if LINE in raw.columns else row

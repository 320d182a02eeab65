"""Builtin functions on strings, conversions and numbers (spec 8.1-8.4)."""

from __future__ import annotations

import re
from collections.abc import Callable

import polars as pl

from ess.aq.fnreg import (
    Compiling,
    Handler,
    arg_value,
    attr_list,
    check_nargs,
    const_arg,
    fn,
)  # fmt: skip
from ess.aq.syntax import Tree
from ess.aq.values import Typed, as_number, lit_int, to_i64


# ---------------------------------------------------------------- string property / conversion
@fn("SHash")
def _shash(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    check_nargs(comp, args, node, 1)
    value = arg_value(comp, args[0], "S")
    if isinstance(value.const, str):
        return lit_int(_djb2(pl.Series([value.const], dtype=pl.String)).item())
    return Typed(full_length(value.expr, _djb2, pl.Int64()), "I")


def full_length(
    value: pl.Expr, op: Callable[[pl.Series], pl.Series], dtype: pl.DataType
) -> pl.Expr:
    """`op` over each batch of `value`. A batch function over a constant (`ToS(2.5)`,
    `SHash(ToUpper("a"))`) sees one row, which the frame refuses; paired with the row index
    it sees the frame's rows."""
    pair = pl.struct(value.alias("v"), pl.int_range(pl.len()).alias("i"))
    return pair.map_batches(lambda s: op(s.struct.field("v")), return_dtype=dtype)


def _djb2(series: pl.Series) -> pl.Series:
    """djb2 over ASCII-lower-cased bytes (spec 8.1), vectorised by byte position."""
    text = series.str.to_lowercase()
    df = pl.DataFrame({"h": text.str.encode("hex"), "n": text.str.len_bytes()})
    h = pl.Series("h", [5381] * len(series), dtype=pl.Int64)
    longest = int(df.select(pl.col("n").max()).item() or 0)
    for i in range(longest):
        byte = df["h"].str.slice(2 * i, 2).str.to_integer(base=16, strict=False).fill_null(0)
        nxt = (h * 33 + byte) & 0xFFFFFFFF
        h = pl.select(pl.when(df["n"] > i).then(nxt).otherwise(h)).to_series()
    return h.alias(series.name)


@fn("SLeng")
def _sleng(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    check_nargs(comp, args, node, 1)
    return Typed(arg_value(comp, args[0], "S").expr.str.len_bytes().cast(pl.Int64), "I")


@fn("ToS")
def _tos(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    from ess.aq.numfmt import format_series

    check_nargs(comp, args, node, 1)
    value = as_number(arg_value(comp, args[0]))
    if value.kind == "F":
        floats = value.expr.cast(pl.Float64)
        return Typed(full_length(floats, lambda s: format_series(s, 17), pl.String()), "S")
    return Typed(value.expr.cast(pl.String), "S")


@fn("ToI")
def _toi(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    check_nargs(comp, args, node, 1)
    value = as_number(arg_value(comp, args[0]))
    if value.kind in ("S", "IP"):
        prefix = value.expr.str.extract(r"^\s*([+-]?[0-9]+)", 1)
        return Typed(prefix.str.to_integer(strict=False).fill_null(0), "I")
    return Typed(value.expr.cast(pl.Int64, strict=False), "I")


@fn("ToF")
def _tof(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    check_nargs(comp, args, node, 1)
    value = as_number(arg_value(comp, args[0]))
    if value.kind in ("S", "IP"):
        num = r"^\s*([+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?)"
        prefix = value.expr.str.extract(num, 1)
        return Typed(prefix.cast(pl.Float64, strict=False).fill_null(0.0), "F")
    return Typed(value.expr.cast(pl.Float64), "F")


@fn("ToIP")
def _toip(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    check_nargs(comp, args, node, 1)
    return Typed(arg_value(comp, args[0], "S").expr, "IP")


@fn("ToUpper", "ToLower")
def _case(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    check_nargs(comp, args, node, 1)
    value = arg_value(comp, args[0], "S").expr
    upper = str(node.children[0]).lower() == "toupper"
    return Typed(value.str.to_uppercase() if upper else value.str.to_lowercase(), "S")


@fn("Eval")
def _eval(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    check_nargs(comp, args, node, 1)
    return comp.compile(args[0])


@fn("SubStr")
def _substr(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    check_nargs(comp, args, node, 2, 3)
    value = arg_value(comp, args[0], "S").expr
    start = to_i64(arg_value(comp, args[1], "N").expr)
    size = value.str.len_chars().cast(pl.Int64)
    start = pl.when(start < 0).then(pl.max_horizontal(start + size, pl.lit(0))).otherwise(start)
    rest = pl.max_horizontal(size - start, pl.lit(0))
    if len(args) == 3:
        length = to_i64(arg_value(comp, args[2], "N").expr)
        length = (
            pl.when(length < 0).then(pl.max_horizontal(rest + length, pl.lit(0))).otherwise(length)
        )
    else:
        length = rest
    return Typed(value.str.slice(start, length), "S")


@fn("StrIndex")
def _strindex(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    check_nargs(comp, args, node, 2, 3)
    value = arg_value(comp, args[0], "S").expr
    needle = const_arg(comp, args[1])
    attrs = attr_list(const_arg(comp, args[2])) if len(args) == 3 else []
    if "ncas" in attrs:
        value, needle = value.str.to_lowercase(), needle.lower()
    if "back" in attrs:
        pos = value.str.reverse().str.find(needle[::-1], literal=True)
        pos = value.str.len_chars() - pos - len(needle)
    else:
        pos = value.str.find(needle, literal=True)
    return Typed(pos.cast(pl.Int64).fill_null(-1), "I")


@fn("Base64Enc", "Base64Dec")
def _b64(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    check_nargs(comp, args, node, 1)
    value = arg_value(comp, args[0], "S").expr
    if str(node.children[0]).lower() == "base64enc":
        return Typed(value.str.encode("base64"), "S")
    # non-base64 bytes (padding too) are skipped; the rest decodes as far as it goes
    clean = value.str.replace_all(r"[^A-Za-z0-9+/]", "")
    size = clean.str.len_bytes().cast(pl.Int64)
    clean = pl.when(size % 4 == 1).then(clean.str.slice(0, (size - 1).clip(0))).otherwise(clean)
    clean = clean + pl.lit("==").str.slice(0, (4 - size % 4) % 4 % 3)
    decoded = clean.str.decode("base64", strict=False)
    return Typed(full_length(decoded, _utf8_lossy, pl.String()).fill_null(""), "S")


def _utf8_lossy(raw: pl.Series) -> pl.Series:
    """Bytes as text, invalid UTF-8 replaced by U+FFFD like input fields (docs/aq_pp.md);
    Polars refuses the whole batch instead, so only such a batch is decoded row by row."""
    try:
        return raw.cast(pl.String)
    except pl.exceptions.PolarsError:
        rows = [None if b is None else b.decode("utf-8", "replace") for b in raw.to_list()]
        return pl.Series(raw.name, rows, dtype=pl.String)


_CLIP = re.compile(r"^(!?)(\d+)(-?)([<>])(.*)$", re.S)


@fn("ClipStr")
def _clipstr(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    """`[!]Num[-]Dir[Sep]` elements joined by `;`, applied one after the other (spec 8.4)."""
    check_nargs(comp, args, node, 2)
    value = arg_value(comp, args[0], "S").expr
    for element in const_arg(comp, args[1]).split(";"):
        m = _CLIP.match(element)
        if m is None:
            raise comp.error(f"ClipStr(): bad clip spec {element!r}", args[1])
        value = _clip(value, m.group(1) == "!", int(m.group(2)), m.group(3) == "-",
                      m.group(4), m.group(5))  # fmt: skip
    return Typed(value, "S")


def _clip(value: pl.Expr, rest: bool, num: int, excl: bool, direction: str, sep: str) -> pl.Expr:
    size = value.str.len_chars()
    if not sep:  # Num bytes from the start (>) or the end (<)
        if direction == ">":
            return value.str.slice(num) if rest else value.str.slice(0, num)
        cut = pl.max_horizontal(size - num, pl.lit(0))
        return value.str.slice(0, cut) if rest else value.str.slice(cut)
    # up to and including the Num-th separator from the start; `<` is the same on the
    # reversed value (lazy groups anchored at ^ stop at the first Num separators)
    if direction == ">":
        part = value.str.extract(f"^((?s:.*?{re.escape(sep)}){{{num}}})", 1)
    else:
        rev = value.str.reverse().str.extract(f"^((?s:.*?{re.escape(sep[::-1])}){{{num}}})", 1)
        part = rev.str.reverse()
    part = part.fill_null(value)  # fewer separators than Num: the whole value
    plen = part.str.len_chars()
    if rest:
        if direction == ">":
            return value.str.slice(plen)
        return value.str.slice(0, pl.max_horizontal(size - plen, pl.lit(0)))
    if excl:
        return part.str.slice(0, plen - len(sep)) if direction == ">" else part.str.slice(len(sep))
    return part


# ---------------------------------------------------------------- math
@fn("Min", "Max")
def _minmax(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    check_nargs(comp, args, node, 2, 999)
    values = [arg_value(comp, a, "N") for a in args]
    is_float = any(v.kind == "F" for v in values)
    exprs = [v.expr.cast(pl.Float64) if is_float else to_i64(v.expr) for v in values]
    horizontal = pl.min_horizontal if str(node.children[0]).lower() == "min" else pl.max_horizontal
    return Typed(horizontal(exprs), "F" if is_float else "I")


def _float_fn(op: Callable[[pl.Expr], pl.Expr]) -> Handler:
    def handler(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
        check_nargs(comp, args, node, 1)
        return Typed(op(arg_value(comp, args[0], "N").expr.cast(pl.Float64)), "F")

    return handler


for _name, _op in {
    "Ceil": lambda e: e.ceil(),
    "Floor": lambda e: e.floor(),
    "Round": lambda e: e.sign() * (e.abs() + 0.5).floor(),  # halves away from zero, like C
    "Sqrt": lambda e: e.sqrt(),
    "Cbrt": lambda e: e.cbrt(),
    "Log": lambda e: e.log(),
    "Log10": lambda e: e.log10(),
    "Exp": lambda e: e.exp(),
    "Exp10": lambda e: pl.lit(10.0).pow(e),
}.items():
    fn(_name)(_float_fn(_op))


@fn("Abs")
def _abs(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    check_nargs(comp, args, node, 1)
    value = arg_value(comp, args[0], "N")
    return Typed(value.expr.abs(), value.kind)


@fn("Pow")
def _pow(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    check_nargs(comp, args, node, 2)
    base, exp = (arg_value(comp, a, "N").expr.cast(pl.Float64) for a in args)
    return Typed(base.pow(exp), "F")


@fn("IsNaN")
def _isnan(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    check_nargs(comp, args, node, 1)
    return Typed(arg_value(comp, args[0], "N").expr.cast(pl.Float64).is_nan().cast(pl.Int64), "I")


@fn("IsInf")
def _isinf(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    check_nargs(comp, args, node, 1)
    v = arg_value(comp, args[0], "N").expr.cast(pl.Float64)
    return Typed(pl.when(v == float("inf")).then(1).when(v == float("-inf")).then(-1)
                 .otherwise(0).cast(pl.Int64), "I")  # fmt: skip


@fn("NumCmp")
def _numcmp(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    check_nargs(comp, args, node, 3)
    a, b, d = (arg_value(comp, x, "N").expr.cast(pl.Float64) for x in args)
    return Typed(((a - b).abs() <= d).cast(pl.Int64), "I")

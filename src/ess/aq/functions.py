"""Builtin functions of the expression language (spec section 8), compiled to Polars.

Each handler receives the expression compiler, the argument subtrees and the call node, and
returns a Typed value. Functions that need AuriQ data files (RTmetrics) or undocumented
algorithms raise NotSupportedError.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import polars as pl

from ess.aq.expr import Compiler, Tree, Typed, as_number
from ess.aq.regex import to_rust, wildcard_to_rust
from ess.errors import NotSupportedError

Handler = Callable[[Compiler, list[Tree], Tree], Typed]
FUNCTIONS: dict[str, Handler] = {}

_UNSUPPORTED = {
    "searchkey", "searchkey2", "iptocountry", "countryname", "countryregion", "agenttouid",
    "agentparse", "agentparse2", "agentname", "agentos", "agentdevtype", "agentdevname",
    "iscrawler", "unamehash", "keyhash", "imphash", "seghash", "maskstr", "keyenc", "keydec",
    "kdec", "iconv",
    "rowcount",
}  # fmt: skip


def fn(*names: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        for name in names:
            FUNCTIONS[name.lower()] = handler
        return handler

    return register


def call(comp: Compiler, name: str, args: list[Tree], node: Tree) -> Typed:
    key = name.lower()
    if key in _UNSUPPORTED:
        raise NotSupportedError(f"function {name}()")
    handler = FUNCTIONS.get(key)
    if handler is None:
        raise comp.error(f"unknown function {name}()", node)
    return handler(comp, args, node)


def _nargs(comp: Compiler, args: list[Tree], node: Tree, lo: int, hi: int | None = None) -> None:
    hi = lo if hi is None else hi
    if not lo <= len(args) <= hi:
        name = node.children[0]
        want = str(lo) if lo == hi else f"{lo}-{hi}" if hi < 99 else f"at least {lo}"
        raise comp.error(f"{name}() takes {want} argument(s), got {len(args)}", node)


def _val(comp: Compiler, arg: Tree, want: str | None = None) -> Typed:
    value = comp.compile(arg)
    if want == "S" and value.kind not in ("S", "IP"):
        raise comp.error(f"type mismatch: expected a string, got {value.kind}", arg)
    if want == "N":
        value = as_number(value)
        if value.kind not in ("I", "F"):
            raise comp.error(f"type mismatch: expected a number, got {value.kind}", arg)
    return value


def _const(comp: Compiler, arg: Tree) -> str:
    """A string constant or bare-word attribute list (`ncas`, `pcre|ncas`)."""
    if arg.data == "name":
        return str(arg.children[0])
    if arg.data == "arith" and all(
        isinstance(c, Tree) and c.data == "name" for c in arg.children[::2]
    ):
        return "|".join(str(c.children[0]) for c in arg.children[::2])
    value = comp.compile(arg)
    if not isinstance(value.const, str):
        raise comp.error("expected a string constant", arg)
    return value.const


def _attrs(text: str) -> list[str]:
    return [a.strip().lower() for a in re.split(r"[|,]", text) if a.strip()]


# ---------------------------------------------------------------- string property / conversion
@fn("SHash")
def _shash(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    _nargs(comp, args, node, 1)
    value = _val(comp, args[0], "S").expr
    return Typed(value.map_batches(_djb2, return_dtype=pl.Int64), "I")


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
def _sleng(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    _nargs(comp, args, node, 1)
    return Typed(_val(comp, args[0], "S").expr.str.len_bytes().cast(pl.Int64), "I")


@fn("ToS")
def _tos(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    from ess.aq.numfmt import format_float

    _nargs(comp, args, node, 1)
    value = as_number(_val(comp, args[0]))
    if value.kind == "F":
        return Typed(format_float(value.expr), "S")
    return Typed(value.expr.cast(pl.String), "S")


@fn("ToI")
def _toi(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    _nargs(comp, args, node, 1)
    value = as_number(_val(comp, args[0]))
    if value.kind in ("S", "IP"):
        prefix = value.expr.str.extract(r"^\s*([+-]?[0-9]+)", 1)
        return Typed(prefix.str.to_integer(strict=False).fill_null(0), "I")
    return Typed(value.expr.cast(pl.Int64, strict=False), "I")


@fn("ToF")
def _tof(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    _nargs(comp, args, node, 1)
    value = as_number(_val(comp, args[0]))
    if value.kind in ("S", "IP"):
        num = r"^\s*([+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?)"
        prefix = value.expr.str.extract(num, 1)
        return Typed(prefix.cast(pl.Float64, strict=False).fill_null(0.0), "F")
    return Typed(value.expr.cast(pl.Float64), "F")


@fn("ToIP")
def _toip(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    _nargs(comp, args, node, 1)
    return Typed(_val(comp, args[0], "S").expr, "IP")


@fn("ToUpper", "ToLower")
def _case(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    _nargs(comp, args, node, 1)
    value = _val(comp, args[0], "S").expr
    upper = str(node.children[0]).lower() == "toupper"
    return Typed(value.str.to_uppercase() if upper else value.str.to_lowercase(), "S")


@fn("Eval")
def _eval(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    _nargs(comp, args, node, 1)
    return comp.compile(args[0])


@fn("SubStr")
def _substr(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    _nargs(comp, args, node, 2, 3)
    value = _val(comp, args[0], "S").expr
    start = _val(comp, args[1], "N").expr.cast(pl.Int64)
    size = value.str.len_chars().cast(pl.Int64)
    start = pl.when(start < 0).then(pl.max_horizontal(start + size, pl.lit(0))).otherwise(start)
    rest = pl.max_horizontal(size - start, pl.lit(0))
    if len(args) == 3:
        length = _val(comp, args[2], "N").expr.cast(pl.Int64)
        length = (
            pl.when(length < 0).then(pl.max_horizontal(rest + length, pl.lit(0))).otherwise(length)
        )
    else:
        length = rest
    return Typed(value.str.slice(start, length), "S")


@fn("StrIndex")
def _strindex(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    _nargs(comp, args, node, 2, 3)
    value = _val(comp, args[0], "S").expr
    needle = _const(comp, args[1])
    attrs = _attrs(_const(comp, args[2])) if len(args) == 3 else []
    if "ncas" in attrs:
        value, needle = value.str.to_lowercase(), needle.lower()
    if "back" in attrs:
        pos = value.str.reverse().str.find(needle[::-1], literal=True)
        pos = value.str.len_chars() - pos - len(needle)
    else:
        pos = value.str.find(needle, literal=True)
    return Typed(pos.cast(pl.Int64).fill_null(-1), "I")


@fn("Base64Enc", "Base64Dec")
def _b64(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    _nargs(comp, args, node, 1)
    value = _val(comp, args[0], "S").expr
    if str(node.children[0]).lower() == "base64enc":
        return Typed(value.str.encode("base64"), "S")
    decoded = value.str.replace_all(r"[^A-Za-z0-9+/]", "").str.decode("base64", strict=False)
    return Typed(decoded.cast(pl.String, strict=False).fill_null(""), "S")


_CLIP = re.compile(r"^(!?)(\d+)(-?)([<>])(.*)$", re.S)


@fn("ClipStr")
def _clipstr(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    """`[!]Num[-]Dir[Sep]` elements joined by `;`, applied one after the other (spec 8.4)."""
    _nargs(comp, args, node, 2)
    value = _val(comp, args[0], "S").expr
    for element in _const(comp, args[1]).split(";"):
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
def _minmax(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    _nargs(comp, args, node, 2, 999)
    values = [_val(comp, a, "N") for a in args]
    is_float = any(v.kind == "F" for v in values)
    exprs = [v.expr.cast(pl.Float64 if is_float else pl.Int64) for v in values]
    horizontal = pl.min_horizontal if str(node.children[0]).lower() == "min" else pl.max_horizontal
    return Typed(horizontal(exprs), "F" if is_float else "I")


def _float_fn(op: Callable[[pl.Expr], pl.Expr]) -> Handler:
    def handler(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
        _nargs(comp, args, node, 1)
        return Typed(op(_val(comp, args[0], "N").expr.cast(pl.Float64)), "F")

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
def _abs(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    _nargs(comp, args, node, 1)
    value = _val(comp, args[0], "N")
    return Typed(value.expr.abs(), value.kind)


@fn("Pow")
def _pow(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    _nargs(comp, args, node, 2)
    base, exp = (_val(comp, a, "N").expr.cast(pl.Float64) for a in args)
    return Typed(base.pow(exp), "F")


@fn("IsNaN")
def _isnan(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    _nargs(comp, args, node, 1)
    return Typed(_val(comp, args[0], "N").expr.cast(pl.Float64).is_nan().cast(pl.Int64), "I")


@fn("IsInf")
def _isinf(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    _nargs(comp, args, node, 1)
    v = _val(comp, args[0], "N").expr.cast(pl.Float64)
    return Typed(pl.when(v == float("inf")).then(1).when(v == float("-inf")).then(-1)
                 .otherwise(0).cast(pl.Int64), "I")  # fmt: skip


@fn("NumCmp")
def _numcmp(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    _nargs(comp, args, node, 3)
    a, b, d = (_val(comp, x, "N").expr.cast(pl.Float64) for x in args)
    return Typed(((a - b).abs() <= d).cast(pl.Int64), "I")


# ---------------------------------------------------------------- comparison
def _flag(expr: pl.Expr) -> Typed:
    return Typed(expr.fill_null(False).cast(pl.Int64), "I")


@fn("PatCmp")
def _patcmp(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    _nargs(comp, args, node, 2, 3)
    value = _val(comp, args[0], "S").expr
    pattern = _const(comp, args[1])
    attrs = _attrs(_const(comp, args[2])) if len(args) == 3 else []
    if any(a.startswith("rx") or a == "pcre" for a in attrs):  # legacy regex form (<= 1.2.4)
        return _flag(value.str.contains(to_rust(pattern, attrs)))
    return _flag(value.str.contains(wildcard_to_rust(pattern, ncas="ncas" in attrs)))


@fn("RxCmp")
def _rxcmp(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    _nargs(comp, args, node, 2, 3)
    value = _val(comp, args[0], "S").expr
    attrs = _attrs(_const(comp, args[2])) if len(args) == 3 else []
    return _flag(value.str.contains(to_rust(_const(comp, args[1]), attrs)))


@fn("RxRep")
def _rxrep(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    _nargs(comp, args, node, 3, 4)
    value = _val(comp, args[0], "S").expr
    attrs = _attrs(_const(comp, args[3])) if len(args) == 4 else []
    regex = to_rust(_const(comp, args[1]), attrs)
    repl = re.sub(r"%%(\d+)%%", r"${\1}", _const(comp, args[2]).replace("$", "$$"))
    if "all" in attrs:
        return Typed(value.str.replace_all(regex, repl), "S")
    return Typed(value.str.replace(regex, repl), "S")


def _target_column(comp: Compiler, arg: Tree) -> str:
    """A column argument that a function writes (RxMap, RxReplace): its internal name."""
    if arg.data != "name":
        raise comp.error("expected a column name", arg)
    value = comp.compile(arg)
    if value.kind != "S":
        raise comp.error("type mismatch: the output column must be a string column", arg)
    return value.expr.meta.output_name()


@fn("RxMap")
def _rxmap(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    """Regex search; each (Col, "MapTo") pair gets MapTo with %%N%% = N-th sub-expression."""
    from ess.aq.mapping import parse_mapto

    if len(args) < 4:
        raise comp.error('RxMap() takes Val, Regex, Col, "MapTo" [, Col, "MapTo"]...', node)
    rest = args[2:]
    attrs = _attrs(_const(comp, rest.pop())) if len(rest) % 2 else []
    value = _val(comp, args[0], "S").expr
    regex = to_rust(_const(comp, args[1]), attrs or ["rx"])
    groups = value.str.extract_groups(f"({regex})")
    matched = value.str.contains(regex).fill_null(False)
    for col_arg, map_arg in zip(rest[::2], rest[1::2], strict=True):
        name = _target_column(comp, col_arg)
        parts: list[pl.Expr] = []
        for piece in parse_mapto(_const(comp, map_arg)):
            if piece.var is None:
                parts.append(pl.lit(piece.literal))
            elif piece.var.isdigit():
                field = groups.struct[int(piece.var)].fill_null("")
                if piece.start is not None or piece.length is not None:
                    field = field.str.slice(piece.start or 0, piece.length)
                parts.append(field)
            else:
                raise comp.error(
                    f"RxMap(): %%{piece.var}%% is not a sub-expression number", map_arg
                )
        rendered = pl.concat_str(parts) if parts else pl.lit("")
        comp.side_effects.append(
            (name, Typed(pl.when(matched).then(rendered).otherwise(pl.col(name)), "S"))
        )
    return _flag(matched)


@fn("RxReplace")
def _rxreplace(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    """Replace the first (or all) matches; the result always goes to Col; returns the count."""
    _nargs(comp, args, node, 4, 5)
    value = _val(comp, args[0], "S").expr
    attrs = _attrs(_const(comp, args[4])) if len(args) == 5 else []
    regex = to_rust(_const(comp, args[1]), attrs or ["rx"])
    repl = re.sub(r"%%(\d+)%%", r"${\1}", _const(comp, args[3]).replace("$", "$$"))
    name = _target_column(comp, args[2])
    count = value.str.count_matches(regex).cast(pl.Int64)
    if "all" in attrs:
        new = value.str.replace_all(regex, repl)
    else:
        new, count = value.str.replace(regex, repl), pl.min_horizontal(count, pl.lit(1))
    comp.side_effects.append((name, Typed(new, "S")))
    return Typed(count.cast(pl.Int64), "I")


def url_decode(series: pl.Series) -> pl.Series:
    """Percent-decoding, vectorised: every distinct run of %XX escapes in the batch is decoded
    once (as UTF-8) and all are replaced in one Aho-Corasick pass; `+` is a space."""
    from urllib.parse import unquote

    text = series.str.replace_all("+", " ", literal=True)
    runs = text.str.extract_all(r"(?:%[0-9A-Fa-f]{2})+").explode().drop_nulls().unique()
    if runs.len() == 0:
        return text
    old = sorted(runs.to_list(), key=len, reverse=True)  # longest run first
    new = [unquote(r, errors="replace") for r in old]
    return text.str.replace_many(old, new)


def url_encode(series: pl.Series) -> pl.Series:
    """Percent-encode every byte outside the RFC 3986 unreserved set [AMBIGUOUS set]."""
    from urllib.parse import quote

    chars = series.str.extract_all(r"[^A-Za-z0-9._~-]").explode().drop_nulls().unique()
    if chars.len() == 0:
        return series
    old = chars.to_list()
    return series.str.replace_many(old, [quote(c, safe="") for c in old])


def _per_batch(value: pl.Expr, op: Callable[[pl.Series], pl.Series]) -> pl.Expr:
    """Apply a Series → Series function; the row index keeps constants full length."""
    pair = pl.struct(value.alias("v"), pl.int_range(pl.len()).alias("i"))
    return pair.map_batches(lambda s: op(s.struct.field("v")), return_dtype=pl.String)


@fn("Set")
def _set(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    """`Set(NameStr, Val)`: assign Val to the column named at run time; 1, or 0 if no such
    column or the types do not fit. Compiled as one masked write per candidate column."""
    from ess.aq.colspec import kind as kind_of
    from ess.aq.pp import assign_value

    _nargs(comp, args, node, 2)
    name = _val(comp, args[0], "S").expr.str.to_lowercase()
    value = as_number(comp.compile(args[1]))
    columns = getattr(comp.scope, "cols", None)
    if columns is None:
        raise NotSupportedError("Set() outside aq_pp")
    hits: list[pl.Expr] = []
    targets: dict[str, tuple[str, list[str]]] = {}  # internal name → (type, names it answers to)
    for alias, col in columns.items():
        if not col.is_var:
            targets.setdefault(col.name, (col.typ, []))[1].append(alias)
    for internal, (typ, names) in targets.items():
        fits = (kind_of(typ) in ("S", "IP")) == (value.kind in ("S", "IP"))
        if not fits:
            continue
        cond = name.is_in(pl.Series(names, dtype=pl.String)).fill_null(False)
        stored = assign_value(value, typ, "Set()")
        comp.side_effects.append(
            (internal, Typed(pl.when(cond).then(stored).otherwise(pl.col(internal)), typ))
        )
        hits.append(cond)
    return _flag(pl.any_horizontal(hits)) if hits else Typed(pl.lit(0, dtype=pl.Int64), "I", 0)


@fn("UrlDec", "UrlEnc")
def _url(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    _nargs(comp, args, node, 1)
    value = _val(comp, args[0], "S").expr
    op = url_decode if str(node.children[0]).lower() == "urldec" else url_encode
    return Typed(_per_batch(value, op), "S")


def _qry_attrs(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in _attrs(text):
        name, _, value = item.partition("=")
        out[name] = value
    return out


def _is_attr_arg(comp: Compiler, arg: Tree) -> bool:
    """A per-key AtrLst: a string constant, or a bare word that is not a column (`zero`)."""
    if arg.data == "string":
        return True
    return arg.data == "name" and comp.scope.column(str(arg.children[0])) is None


QryPair = tuple[Tree, str, dict[str, str]]  # (column argument, key, per-key attributes)


@fn("QryDec")
def _qrydec(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    """URL query parameters into columns: `QryDec(Val [, AtrLst], Col, "Key" [, AtrLst] ...)`."""
    if len(args) < 3:
        raise comp.error('QryDec() takes Val [, AtrLst], Col, "Key" [, AtrLst] ...', node)
    value = _val(comp, args[0], "S").expr
    rest = list(args[1:])
    lead: dict[str, str] = {}
    if rest and rest[0].data == "string":
        lead = _qry_attrs(_const(comp, rest.pop(0)))
    pairs: list[QryPair] = []
    while rest:
        col_arg = rest.pop(0)
        if not rest:
            raise comp.error('QryDec(): a column needs a "Key"', col_arg)
        key = _const(comp, rest.pop(0))
        opts: dict[str, str] = {}
        if rest and _is_attr_arg(comp, rest[0]):
            opts = _qry_attrs(_const(comp, rest.pop(0)))
        pairs.append((col_arg, key, opts))
    return _query_decode(comp, value, lead, pairs)


@fn("QryParmExt")
def _qryparmext(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    """Legacy (<= 1.2.4) form of QryDec: `QryParmExt(Val, "beg=?,zero&k1:Col1&k2:Col2")`, the
    attributes first, then `&`-separated Key:Col pairs."""
    from lark import Token

    _nargs(comp, args, node, 2)
    value = _val(comp, args[0], "S").expr
    head, *items = _const(comp, args[1]).split("&")
    if ":" in head:  # no attributes: the first item is already a pair
        head, items = "", [head, *items]
    pairs: list[QryPair] = []
    for item in items:
        key, sep, col = item.rpartition(":")
        if not sep or not key or not col:
            raise comp.error(f"QryParmExt(): expected Key:Col, got {item!r}", args[1])
        pairs.append((Tree("name", [Token("NAME", col)]), key, {}))
    if not pairs:
        raise comp.error("QryParmExt(): no Key:Col pair", args[1])
    return _query_decode(comp, value, _qry_attrs(head) if head else {}, pairs)


def _query_decode(
    comp: Compiler, value: pl.Expr, lead: dict[str, str], pairs: list[QryPair]
) -> Typed:
    query = value
    if "beg" in lead:  # the query starts after the first `beg` character
        query = value.str.extract(f"{re.escape(lead['beg'] or '?')}(.*)$", 1).fill_null("")
    seen: dict[str, int] = {}
    found_all = []
    for col_arg, key, opts in pairs:
        name = _target_column(comp, col_arg)
        nth = seen.get(key, 0)  # the same key again fills its next occurrence
        seen[key] = nth + 1
        matches = query.str.extract_all(f"(?:^|&){re.escape(key)}=[^&]*")
        raw = matches.list.get(nth, null_on_oob=True).str.replace(f"^&?{re.escape(key)}=", "")
        found = raw.is_not_null()
        text = raw.fill_null("")
        trm = opts.get("trm", lead.get("trm"))
        if trm:
            text = text.str.strip_prefix(trm).str.strip_suffix(trm)
        for _ in range(int(opts.get("dec", lead.get("dec", "1")) or 1)):
            text = _per_batch(text, url_decode)
        zero = "zero" in opts or "zero" in lead
        fallback = pl.lit("") if zero else pl.col(name)
        comp.side_effects.append((name, Typed(pl.when(found).then(text).otherwise(fallback), "S")))
        found_all.append(found.cast(pl.Int64))
    return Typed(pl.sum_horizontal(found_all).cast(pl.Int64), "I")


def _multi(kind: str, require_all: bool) -> Handler:
    def handler(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
        _nargs(comp, args, node, 2, 999)
        value = _val(comp, args[0], "S").expr
        needles = [_const(comp, a) for a in args[1:]]
        if kind == "contain":
            needles = [s for n in needles for s in re.split(r",\r?\n", n) if s]
        tests = [_match(value, n, kind) for n in needles]
        combined = pl.all_horizontal(tests) if require_all else pl.any_horizontal(tests)
        return _flag(combined)

    return handler


def _match(value: pl.Expr, needle: str, kind: str) -> pl.Expr:
    if kind == "beg":
        return value.str.starts_with(needle)
    if kind == "end":
        return value.str.ends_with(needle)
    return value.str.contains(needle, literal=True)


fn("BegCmp")(_multi("beg", False))
fn("EndCmp")(_multi("end", False))
fn("SubCmp")(_multi("sub", False))
fn("SubCmpAll")(_multi("sub", True))
fn("Contain")(_multi("contain", False))
fn("ContainAll")(_multi("contain", True))


def _mixed(require_all: bool) -> Handler:
    def handler(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
        if len(args) < 3 or len(args) % 2 == 0:
            raise comp.error("MixedCmp() takes Val followed by (String, BEG|END|SUB) pairs", node)
        value = _val(comp, args[0], "S").expr
        tests = []
        for s_arg, t_arg in zip(args[1::2], args[2::2], strict=True):
            typ = _const(comp, t_arg).lower()
            if typ not in ("beg", "end", "sub"):
                raise comp.error(f"MixedCmp(): bad match type {typ!r}", t_arg)
            tests.append(_match(value, _const(comp, s_arg), typ))
        return _flag(pl.all_horizontal(tests) if require_all else pl.any_horizontal(tests))

    return handler


fn("MixedCmp")(_mixed(False))
fn("MixedCmpAll")(_mixed(True))


# ---------------------------------------------------------------- date / time
_MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_MONTHS = {m: i + 1 for i, m in enumerate(_MONTH_NAMES)}
_CODES = {"Y": r"(\d{1,4})", "y": r"(\d{1,2})", "m": r"(\d{1,2})", "b": r"([A-Za-z]{3})",
          "d": r"(\d{1,2})", "H": r"(\d{1,2})", "I": r"(\d{1,2})", "M": r"(\d{1,2})",
          "S": r"(\d{1,2})", "p": r"([AaPp][Mm])", "z": r"([+-]\d{4})"}  # fmt: skip


def local_tz() -> str:
    tz = os.environ.get("TZ", "").lstrip(":")
    return tz or "UTC"


def date_regex(fmt: str) -> tuple[str, list[str]]:
    """Legacy letter formats (`Y.m.d.H.M.S`) and `%` formats → regex and the field order."""
    percent = "%" in fmt
    out, fields, i = ["^"], [], 0
    while i < len(fmt):
        ch = fmt[i]
        if percent and ch == "%" and i + 1 < len(fmt):
            ch = fmt[i + 1]
            i += 2
        elif percent or ch not in _CODES:
            out.append("." if ch == "." else re.escape(ch))
            i += 1
            continue
        else:
            i += 1
        if ch == "S" and i < len(fmt) and fmt[i].isdigit():  # S0..S9: fractional seconds
            digits = int(fmt[i])
            i += 1
            out.append(r"(\d{1,2})(?:\.(\d*))?")
            fields += ["S", f"F{digits}"]
            continue
        if ch not in _CODES:
            raise NotSupportedError(f"DateToTime format code {ch!r}")
        out.append(_CODES[ch])
        fields.append(ch)
    return "".join(out), fields


@fn("DateToTime", "GmDateToTime")
def _datetotime(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    _nargs(comp, args, node, 2)
    value = _val(comp, args[0], "S").expr
    gm = str(node.children[0]).lower() == "gmdatetotime"
    return Typed(date_to_epoch(value, _const(comp, args[1]), gm=gm), "I")


def date_to_epoch(value: pl.Expr, fmt: str, *, gm: bool) -> pl.Expr:
    """Seconds since the epoch of date strings in `fmt` (null when one does not parse); local
    time (TZ) unless `gm` or the format has a zone offset."""
    regex, fields = date_regex(fmt)
    groups = value.str.extract_groups(regex)

    def part(code: str, default: int) -> pl.Expr:
        if code not in fields:
            return pl.lit(default, dtype=pl.Int64)
        raw = groups.struct[fields.index(code)]
        if code == "b":
            return raw.str.to_lowercase().replace_strict(_MONTHS, default=None,
                                                          return_dtype=pl.Int64)  # fmt: skip
        return raw.str.to_integer(strict=False)

    year = part("Y", 1970) if "Y" in fields else part("y", 70)
    if "y" in fields:
        year = pl.when(year < 69).then(year + 2000).otherwise(year + 1900)
    month = part("b", 1) if "b" in fields else part("m", 1)
    hour = part("H", 0) if "H" in fields else part("I", 0)
    if "p" in fields:
        pm = groups.struct[fields.index("p")].str.to_lowercase() == "pm"
        hour = (hour % 12) + pm.cast(pl.Int64) * 12
    tz = "UTC" if gm or "z" in fields else local_tz()
    stamp = pl.datetime(year, month, part("d", 1), hour, part("M", 0), part("S", 0),
                        time_zone=tz)  # fmt: skip
    seconds = stamp.dt.epoch("s")
    if "z" in fields:
        z = groups.struct[fields.index("z")]
        sign = pl.when(z.str.starts_with("-")).then(-1).otherwise(1)
        hh = z.str.slice(1, 2).str.to_integer(strict=False)
        mm = z.str.slice(3, 2).str.to_integer(strict=False)
        seconds = seconds - sign * (hh * 3600 + mm * 60)
    frac = [f for f in fields if f.startswith("F")]
    if frac:
        digits = int(frac[0][1:])
        raw = groups.struct[fields.index(frac[0])].fill_null("")
        scaled = (raw + "000000000").str.slice(0, digits).str.to_integer(strict=False).fill_null(0)
        seconds = seconds * (10**digits) + (scaled if digits else 0)
    return seconds.cast(pl.Int64)


@fn("TimeToDate", "TimeToGmDate")
def _timetodate(comp: Compiler, args: list[Tree], node: Tree) -> Typed:
    _nargs(comp, args, node, 2)
    value = _val(comp, args[0], "N").expr.cast(pl.Int64)
    fmt = _const(comp, args[1])
    tz = "UTC" if str(node.children[0]).lower() == "timetogmdate" else local_tz()
    stamp = pl.from_epoch(value, time_unit="s").dt.replace_time_zone("UTC")
    return Typed(stamp.dt.convert_time_zone(tz).dt.strftime(fmt), "S")

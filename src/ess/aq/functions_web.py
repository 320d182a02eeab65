"""Builtin functions on URLs and query strings: UrlDec, UrlEnc, QryDec, QryParmExt."""

from __future__ import annotations

import re
from collections.abc import Callable

import polars as pl

from ess.aq.fnreg import (
    Compiling,
    arg_value,
    attr_list,
    check_nargs,
    const_arg,
    fn,
)  # fmt: skip
from ess.aq.functions_match import target_column
from ess.aq.syntax import Token, Tree
from ess.aq.values import Typed


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


@fn("UrlDec", "UrlEnc")
def _url(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    check_nargs(comp, args, node, 1)
    value = arg_value(comp, args[0], "S").expr
    op = url_decode if str(node.children[0]).lower() == "urldec" else url_encode
    return Typed(_per_batch(value, op), "S")


def _qry_attrs(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in attr_list(text):
        name, _, value = item.partition("=")
        out[name] = value
    return out


def _is_attr_arg(comp: Compiling, arg: Tree) -> bool:
    """A per-key AtrLst: a string constant, or a bare word that is not a column (`zero`)."""
    if arg.data == "string":
        return True
    return arg.data == "name" and comp.scope.column(str(arg.children[0])) is None


QryPair = tuple[Tree, str, dict[str, str]]  # (column argument, key, per-key attributes)


@fn("QryDec")
def _qrydec(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    """URL query parameters into columns: `QryDec(Val [, AtrLst], Col, "Key" [, AtrLst] ...)`."""
    if len(args) < 3:
        raise comp.error('QryDec() takes Val [, AtrLst], Col, "Key" [, AtrLst] ...', node)
    value = arg_value(comp, args[0], "S").expr
    rest = list(args[1:])
    lead: dict[str, str] = {}
    if rest and rest[0].data == "string":
        lead = _qry_attrs(const_arg(comp, rest.pop(0)))
    pairs: list[QryPair] = []
    while rest:
        col_arg = rest.pop(0)
        if not rest:
            raise comp.error('QryDec(): a column needs a "Key"', col_arg)
        key = const_arg(comp, rest.pop(0))
        opts: dict[str, str] = {}
        if rest and _is_attr_arg(comp, rest[0]):
            opts = _qry_attrs(const_arg(comp, rest.pop(0)))
        pairs.append((col_arg, key, opts))
    return _query_decode(comp, value, lead, pairs)


@fn("QryParmExt")
def _qryparmext(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    """Legacy (<= 1.2.4) form of QryDec: `QryParmExt(Val, "beg=?,zero&k1:Col1&k2:Col2")`, the
    attributes first, then `&`-separated Key:Col pairs."""
    check_nargs(comp, args, node, 2)
    value = arg_value(comp, args[0], "S").expr
    head, *items = const_arg(comp, args[1]).split("&")
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
    comp: Compiling, value: pl.Expr, lead: dict[str, str], pairs: list[QryPair]
) -> Typed:
    query = value
    if "beg" in lead:  # the query starts after the first `beg` character
        query = value.str.extract(f"{re.escape(lead['beg'] or '?')}(.*)$", 1).fill_null("")
    seen: dict[str, int] = {}
    found_all = []
    for col_arg, key, opts in pairs:
        name = target_column(comp, col_arg)
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

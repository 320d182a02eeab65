"""Builtin functions that match patterns or write columns: PatCmp, Rx*, Set, *Cmp."""

from __future__ import annotations

import re

import polars as pl

from ess.aq.colspec import kind as kind_of
from ess.aq.fnreg import (
    Compiling,
    Handler,
    arg_value,
    attr_list,
    check_nargs,
    const_arg,
    flag,
    fn,
)  # fmt: skip
from ess.aq.regex import to_rust, wildcard_to_rust
from ess.aq.syntax import Tree
from ess.aq.values import Typed, as_number, assign_value
from ess.errors import NotSupportedError


@fn("PatCmp")
def _patcmp(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    check_nargs(comp, args, node, 2, 3)
    value = arg_value(comp, args[0], "S").expr
    pattern = const_arg(comp, args[1])
    attrs = attr_list(const_arg(comp, args[2])) if len(args) == 3 else []
    if any(a.startswith("rx") or a == "pcre" for a in attrs):  # legacy regex form (<= 1.2.4)
        return flag(value.str.contains(to_rust(pattern, attrs)))
    return flag(value.str.contains(wildcard_to_rust(pattern, ncas="ncas" in attrs)))


@fn("RxCmp")
def _rxcmp(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    check_nargs(comp, args, node, 2, 3)
    value = arg_value(comp, args[0], "S").expr
    attrs = attr_list(const_arg(comp, args[2])) if len(args) == 3 else []
    return flag(value.str.contains(to_rust(const_arg(comp, args[1]), attrs)))


@fn("RxRep")
def _rxrep(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    check_nargs(comp, args, node, 3, 4)
    value = arg_value(comp, args[0], "S").expr
    attrs = attr_list(const_arg(comp, args[3])) if len(args) == 4 else []
    regex = to_rust(const_arg(comp, args[1]), attrs)
    repl = re.sub(r"%%(\d+)%%", r"${\1}", const_arg(comp, args[2]).replace("$", "$$"))
    if "all" in attrs:
        return Typed(value.str.replace_all(regex, repl), "S")
    return Typed(value.str.replace(regex, repl), "S")


def target_column(comp: Compiling, arg: Tree) -> str:
    """A column argument that a function writes (RxMap, RxReplace): its internal name."""
    if arg.data != "name":
        raise comp.error("expected a column name", arg)
    value = comp.compile(arg)
    if value.kind != "S":
        raise comp.error("type mismatch: the output column must be a string column", arg)
    return value.expr.meta.output_name()


@fn("RxMap")
def _rxmap(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    """Regex search; each (Col, "MapTo") pair gets MapTo with %%N%% = N-th sub-expression."""
    from ess.aq.mapping import parse_mapto

    if len(args) < 4:
        raise comp.error('RxMap() takes Val, Regex, Col, "MapTo" [, Col, "MapTo"]...', node)
    rest = args[2:]
    attrs = attr_list(const_arg(comp, rest.pop())) if len(rest) % 2 else []
    value = arg_value(comp, args[0], "S").expr
    regex = to_rust(const_arg(comp, args[1]), attrs or ["rx"])
    groups = value.str.extract_groups(f"({regex})")
    matched = value.str.contains(regex).fill_null(False)
    for col_arg, map_arg in zip(rest[::2], rest[1::2], strict=True):
        name = target_column(comp, col_arg)
        parts: list[pl.Expr] = []
        for piece in parse_mapto(const_arg(comp, map_arg)):
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
    return flag(matched)


@fn("RxReplace")
def _rxreplace(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    """Replace the first (or all) matches; the result always goes to Col; returns the count."""
    check_nargs(comp, args, node, 4, 5)
    value = arg_value(comp, args[0], "S").expr
    attrs = attr_list(const_arg(comp, args[4])) if len(args) == 5 else []
    regex = to_rust(const_arg(comp, args[1]), attrs or ["rx"])
    repl = re.sub(r"%%(\d+)%%", r"${\1}", const_arg(comp, args[3]).replace("$", "$$"))
    name = target_column(comp, args[2])
    count = value.str.count_matches(regex).cast(pl.Int64)
    if "all" in attrs:
        new = value.str.replace_all(regex, repl)
    else:
        new, count = value.str.replace(regex, repl), pl.min_horizontal(count, pl.lit(1))
    comp.side_effects.append((name, Typed(new, "S")))
    return Typed(count.cast(pl.Int64), "I")


@fn("Set")
def _set(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    """`Set(NameStr, Val)`: assign Val to the column named at run time; 1, or 0 if no such
    column or the types do not fit. Compiled as one masked write per candidate column."""
    check_nargs(comp, args, node, 2)
    name = arg_value(comp, args[0], "S").expr.str.to_lowercase()
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
    return flag(pl.any_horizontal(hits)) if hits else Typed(pl.lit(0, dtype=pl.Int64), "I", 0)


def _multi(kind: str, require_all: bool) -> Handler:
    def handler(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
        check_nargs(comp, args, node, 2, 999)
        value = arg_value(comp, args[0], "S").expr
        needles = [const_arg(comp, a) for a in args[1:]]
        if kind == "contain":
            needles = [s for n in needles for s in re.split(r",\r?\n", n) if s]
        tests = [_match(value, n, kind) for n in needles]
        if not tests:  # Contain(b, ""): no substring to look for; none matches, all do
            return Typed(pl.lit(int(require_all), dtype=pl.Int64), "I", int(require_all))
        combined = pl.all_horizontal(tests) if require_all else pl.any_horizontal(tests)
        return flag(combined)

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
    def handler(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
        if len(args) < 3 or len(args) % 2 == 0:
            raise comp.error("MixedCmp() takes Val followed by (String, BEG|END|SUB) pairs", node)
        value = arg_value(comp, args[0], "S").expr
        tests = []
        for s_arg, t_arg in zip(args[1::2], args[2::2], strict=True):
            typ = const_arg(comp, t_arg).lower()
            if typ not in ("beg", "end", "sub"):
                raise comp.error(f"MixedCmp(): bad match type {typ!r}", t_arg)
            tests.append(_match(value, const_arg(comp, s_arg), typ))
        return flag(pl.all_horizontal(tests) if require_all else pl.any_horizontal(tests))

    return handler


fn("MixedCmp")(_mixed(False))
fn("MixedCmpAll")(_mixed(True))

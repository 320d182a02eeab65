"""Typed values of the aq language and the conversions every layer shares.

The lowest module of the expression side: the expression compiler, the builtin functions,
the readers and aq_pp's rule compiler all import it, and it imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import polars as pl

from ess.aq.colspec import polars_dtype
from ess.errors import AqSyntaxError

NUMERIC = frozenset({"I", "F", "B"})


@dataclass(frozen=True)
class Typed:
    """A compiled expression and its kind (S, I, F, IP or B)."""

    expr: pl.Expr
    kind: str
    const: object = None  # the Python value of a constant (strings, numbers), else None


class Scope(Protocol):
    """What an expression can see: columns/variables and the special `$` variables."""

    def column(self, name: str) -> Typed | None: ...

    def special(self, name: str) -> Typed | None: ...

    def assign(self, name: str, value: Typed) -> None: ...


def lit_int(value: int) -> Typed:
    return Typed(pl.lit(value, dtype=pl.Int64), "I", value)


def lit_float(value: float) -> Typed:
    return Typed(pl.lit(value, dtype=pl.Float64), "F", value)


def lit_str(value: str) -> Typed:
    return Typed(pl.lit(value, dtype=pl.String), "S", value)


def truthy(value: Typed) -> pl.Expr:
    """Boolean conversion of a lone operand: non-blank string, non-zero number or IP."""
    if value.kind == "B":
        return value.expr
    if value.kind == "S":
        return value.expr != ""
    if value.kind == "IP":
        return (value.expr != "") & (value.expr != "0.0.0.0")
    return value.expr != 0


def as_number(value: Typed) -> Typed:
    if value.kind == "B":
        return Typed(value.expr.cast(pl.Int64), "I")
    return value


def default_value(typ: str) -> pl.Expr:
    """What a column of type `typ` holds where nothing was assigned (0, 0.0 or "")."""
    if typ == "F":
        return pl.lit(0.0, dtype=pl.Float64)
    if typ in ("S", "IP"):
        return pl.lit("", dtype=pl.String)
    return pl.lit(0, dtype=polars_dtype(typ))


def to_i64(value: pl.Expr) -> pl.Expr:
    """An integer or float as int64_t like a C cast: an L value above 2^63 wraps, a float is
    truncated (saturated when out of range, NaN is 0); never an error on a value."""
    return value.cast(pl.Int64, wrap_numerical=True)


_BITS = {"I": (32, False), "IS": (32, True), "L": (64, False), "LS": (64, True)}


def wrap_constant(value: int, typ: str) -> int:
    """A Python integer stored in an integer column of type `typ`, wrapped like a C cast."""
    bits, signed = _BITS.get(typ.upper(), (64, True))
    value &= (1 << bits) - 1
    return value - (1 << bits) if signed and value >= 1 << (bits - 1) else value


def wrap_int(value: pl.Expr, typ: str) -> pl.Expr:
    """C-cast wrap-around into the declared integer type (values held as Int64, L as UInt64)."""
    if typ == "I":
        return to_i64(value) & 0xFFFFFFFF
    if typ == "IS":
        v = to_i64(value) & 0xFFFFFFFF
        return pl.when(v >= 2**31).then(v - 2**32).otherwise(v)
    if typ == "L":
        return value.cast(pl.UInt64, wrap_numerical=True)
    return to_i64(value)


def assign_value(value: Typed, typ: str, where: str) -> pl.Expr:
    """Convert a value for storage in a column of type `typ` (spec 1.3)."""
    k = value.kind
    if typ == "S":
        if k != "S":
            raise AqSyntaxError(f"{where}: type mismatch: cannot store {k} in a string column "
                                "(use ToS())")  # fmt: skip
        return value.expr
    if typ == "IP":
        if k not in ("IP", "S"):
            raise AqSyntaxError(f"{where}: type mismatch: cannot store {k} in an IP column")
        return value.expr
    if k in ("S", "IP"):
        raise AqSyntaxError(f"{where}: type mismatch: cannot store {k} in a {typ} column "
                            "(use ToI()/ToF())")  # fmt: skip
    expr = value.expr
    if k == "B":
        expr = expr.cast(pl.Int64)
    if typ == "F":
        return expr.cast(pl.Float64)
    if k == "F":  # C cast: truncation toward zero
        expr = expr.cast(pl.Int64, strict=False)
    return wrap_int(expr, typ).cast(polars_dtype(typ))

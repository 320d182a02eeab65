"""The registry of builtin functions (spec section 8) and the helpers every family shares.

Each handler receives the expression compiler, the argument subtrees and the call node, and
returns a Typed value. The families (functions_text, functions_match, functions_web,
functions_time) register their handlers here with `@fn`; ess.aq.functions imports them all.
Functions that need AuriQ data files (RTmetrics) or undocumented algorithms raise
NotSupportedError.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol

import polars as pl

from ess.aq.syntax import Token, Tree
from ess.aq.values import Typed, as_number
from ess.errors import AqSyntaxError, NotSupportedError


class Compiling(Protocol):
    """What a handler uses of the expression compiler (ess.aq.expr.ExprCompiling)."""

    scope: Any
    side_effects: list[tuple[str, Typed]]

    def compile(self, node: Tree | Token) -> Typed: ...

    def error(self, message: str, node: Tree | Token | None) -> AqSyntaxError: ...


Handler = Callable[[Compiling, list[Tree], Tree], Typed]
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


def call(comp: Compiling, name: str, args: list[Tree], node: Tree) -> Typed:
    key = name.lower()
    if key in _UNSUPPORTED:
        raise NotSupportedError(f"function {name}()")
    handler = FUNCTIONS.get(key)
    if handler is None:
        raise comp.error(f"unknown function {name}()", node)
    return handler(comp, args, node)


def check_nargs(
    comp: Compiling, args: list[Tree], node: Tree, lo: int, hi: int | None = None
) -> None:
    hi = lo if hi is None else hi
    if not lo <= len(args) <= hi:
        name = node.children[0]
        want = str(lo) if lo == hi else f"{lo}-{hi}" if hi < 99 else f"at least {lo}"
        raise comp.error(f"{name}() takes {want} argument(s), got {len(args)}", node)


def arg_value(comp: Compiling, arg: Tree, want: str | None = None) -> Typed:
    value = comp.compile(arg)
    if want == "S" and value.kind not in ("S", "IP"):
        raise comp.error(f"type mismatch: expected a string, got {value.kind}", arg)
    if want == "N":
        value = as_number(value)
        if value.kind not in ("I", "F"):
            raise comp.error(f"type mismatch: expected a number, got {value.kind}", arg)
    return value


def const_arg(comp: Compiling, arg: Tree) -> str:
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


def attr_list(text: str) -> list[str]:
    return [a.strip().lower() for a in re.split(r"[|,]", text) if a.strip()]


def flag(expr: pl.Expr) -> Typed:
    """A boolean result as the integer 0/1 (null counts as 0)."""
    return Typed(expr.fill_null(False).cast(pl.Int64), "I")

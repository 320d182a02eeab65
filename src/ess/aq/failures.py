"""Where a Polars or Python error on user rules or data becomes one line of the EssError tree.

aq_pp and aq_udb map such errors at a few points only: compiling one rule (a bad constant or
pattern: AqSyntaxError naming the rule), running one step over one batch (AqDataError naming
the rule and the input lines) and, in aq_udb, running the rules of a query. Everything else
that can fail on a value is fixed where the value is computed (nulls, wrap-around), so these
points are a safety net, not the way values are checked.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import polars as pl

from ess.aq.rules import Alias, Const, Eval, Filt, If, Imp, Lookup, Map, MapC, MapF, Output, VarDef

#: The errors a Polars expression raises on a value or a pattern it cannot handle. Polars
#: turns a Rust panic into PanicException (a BaseException): a panic on user data is still a
#: bad value, not a crash to show.
VALUE_ERRORS: tuple[type[BaseException], ...] = (
    pl.exceptions.PolarsError,
    pl.exceptions.PanicException,
    ArithmeticError,
    ValueError,
)

_MAX_MESSAGE = 160


def message(exc: BaseException) -> str:
    """The first line of an error, short: Polars appends the whole expression tree."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 3] + "..."
    return text


def describe(rule: object) -> str:
    """A rule as the user wrote it, for an error message: option, column, expression."""
    if isinstance(rule, Eval):
        target = rule.target if isinstance(rule.target, str) or rule.target is None else (
            rule.target.name)  # fmt: skip
        return f"-eval {target or '-'} '{rule.expr}'"
    if isinstance(rule, Filt):
        return f"-filt '{rule.expr}'"
    if isinstance(rule, Map | MapF):
        return f"-{type(rule).__name__.lower()} {rule.col} '{rule.pattern}'"
    if isinstance(rule, MapC):
        target = rule.target if isinstance(rule.target, str) else rule.target.name
        return f"-mapc {target} '{rule.template}'"
    if isinstance(rule, Lookup):
        return f"-{rule.kind} {rule.col or ''}".rstrip()
    if isinstance(rule, Output):
        return f"-o {rule.path}"
    if isinstance(rule, Imp):
        return f"-imp {rule.target}"
    if isinstance(rule, VarDef):
        return f"-var {rule.spec.name}"
    if isinstance(rule, Alias):
        return f"-{'renam' if rule.rename else 'alias'} {rule.col}"
    if isinstance(rule, Const):
        return "-true" if rule.value else "-false"
    if isinstance(rule, If):
        return "-if"
    return type(rule).__name__.lower()  # pragma: no cover - every rule type is listed


@contextlib.contextmanager
def quiet_polars() -> Iterator[None]:
    """Polars warnings (a malformed CSV chunk, performance hints) are for developers: aq_pp
    reports bad input itself, so none reaches the user's stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pl.exceptions.PolarsWarning)
        warnings.filterwarnings("ignore", category=UserWarning, message="CSV malformed")
        yield

"""Builtin date and time functions: DateToTime, GmDateToTime, TimeToDate, TimeToGmDate."""

from __future__ import annotations

import polars as pl

from ess.aq.dates import date_to_epoch, local_tz
from ess.aq.fnreg import (
    Compiling,
    arg_value,
    check_nargs,
    const_arg,
    fn,
)  # fmt: skip
from ess.aq.syntax import Tree
from ess.aq.values import Typed, to_i64


@fn("DateToTime", "GmDateToTime")
def _datetotime(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    check_nargs(comp, args, node, 2)
    value = arg_value(comp, args[0], "S").expr
    gm = str(node.children[0]).lower() == "gmdatetotime"
    return Typed(date_to_epoch(value, const_arg(comp, args[1]), gm=gm), "I")


@fn("TimeToDate", "TimeToGmDate")
def _timetodate(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    check_nargs(comp, args, node, 2)
    value = to_i64(arg_value(comp, args[0], "N").expr)
    fmt = c_strftime_format(const_arg(comp, args[1]))
    tz = "UTC" if str(node.children[0]).lower() == "timetogmdate" else local_tz()
    stamp = pl.from_epoch(value, time_unit="s").dt.replace_time_zone("UTC")
    return Typed(stamp.dt.convert_time_zone(tz).dt.strftime(fmt), "S")


#: The conversions of C (glibc) strftime that the Polars formatter spells the same way.
_C_CONVERSIONS = frozenset("aAbBcCdDeFgGhHIjklmMnpPrRsStTuUVwWxXyYzZ%")


def c_strftime_format(fmt: str) -> str:
    """`fmt` for Polars' formatter, with what C strftime copies as it is (an unknown
    conversion such as `%Q`, a lone `%` at the end) escaped instead of being an error."""
    out, i = [], 0
    while i < len(fmt):
        ch = fmt[i]
        if ch != "%":
            out.append(ch)
            i += 1
        elif i + 1 < len(fmt) and fmt[i + 1] in _C_CONVERSIONS:
            out.append(fmt[i : i + 2])
            i += 2
        else:
            out.append("%%")
            i += 1
    return "".join(out)

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
from ess.aq.values import Typed


@fn("DateToTime", "GmDateToTime")
def _datetotime(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    check_nargs(comp, args, node, 2)
    value = arg_value(comp, args[0], "S").expr
    gm = str(node.children[0]).lower() == "gmdatetotime"
    return Typed(date_to_epoch(value, const_arg(comp, args[1]), gm=gm), "I")


@fn("TimeToDate", "TimeToGmDate")
def _timetodate(comp: Compiling, args: list[Tree], node: Tree) -> Typed:
    check_nargs(comp, args, node, 2)
    value = arg_value(comp, args[0], "N").expr.cast(pl.Int64)
    fmt = const_arg(comp, args[1])
    tz = "UTC" if str(node.children[0]).lower() == "timetogmdate" else local_tz()
    stamp = pl.from_epoch(value, time_unit="s").dt.replace_time_zone("UTC")
    return Typed(stamp.dt.convert_time_zone(tz).dt.strftime(fmt), "S")

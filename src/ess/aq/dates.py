"""Date strings to epoch seconds and the formats that describe them (DateToTime, `tim`).

A low module: the reader (the `tim` column attribute) and the time functions both use it.
"""

from __future__ import annotations

import os
import re

import polars as pl

from ess.errors import NotSupportedError

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


def date_to_epoch(value: pl.Expr, fmt: str, *, gm: bool) -> pl.Expr:
    """Seconds since the epoch of date strings in `fmt` (null when one does not parse or names
    an impossible date); local time (TZ) unless `gm` or the format has a zone offset.

    Each stage adds fields to one struct, so the regex runs once per value (eager frames do
    not share common subexpressions)."""
    regex, fields = date_regex(fmt)
    names = [f"g{i}" for i in range(len(fields))]
    groups = value.str.extract_groups(regex).struct.rename_fields(names)
    field = pl.field

    def raw(code: str) -> pl.Expr:
        return field(names[fields.index(code)])

    def part(code: str, default: int) -> pl.Expr:
        if code not in fields:
            return pl.lit(default, dtype=pl.Int64)
        if code == "b":
            return raw(code).str.to_lowercase().replace_strict(_MONTHS, default=None,
                                                               return_dtype=pl.Int64)  # fmt: skip
        return raw(code).str.to_integer(strict=False)

    year = part("Y", 1970) if "Y" in fields else part("y", 70)
    if "y" in fields:
        year = pl.when(year < 69).then(year + 2000).otherwise(year + 1900)
    hour = part("H", 0) if "H" in fields else part("I", 0)
    if "p" in fields:
        hour = (hour % 12) + (raw("p").str.to_lowercase() == "pm").cast(pl.Int64) * 12
    parts = groups.struct.with_fields(
        year=year, month=part("b", 1) if "b" in fields else part("m", 1), day=part("d", 1),
        hour=hour, minute=part("M", 0), second=part("S", 0),
    )  # fmt: skip
    # an impossible date (Feb 30, hour 25) is a null, as a date that does not parse: Polars
    # would raise for the whole batch (a null part gives a null date instead)
    valid = (
        field("month").is_between(1, 12)
        & field("day").is_between(1, _days_in_month(field("year"), field("month")))
        & field("hour").is_between(0, 23) & field("minute").is_between(0, 59)
        & field("second").is_between(0, 60)
    )  # fmt: skip
    parts = parts.struct.with_fields(day=pl.when(valid).then(field("day")))
    # a leap second (S = 60) is the next minute's first, as mktime() normalises it; a local
    # time skipped by a DST change is null too, one that occurs twice is the earlier
    naive = pl.datetime(field("year"), field("month"), field("day"), field("hour"),
                        field("minute"), field("second").clip(0, 59))  # fmt: skip
    naive = naive + pl.duration(seconds=(field("second") == 60).cast(pl.Int64))
    tz = "UTC" if gm or "z" in fields else local_tz()
    stamp = naive.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
    seconds = stamp.dt.epoch("s")
    if "z" in fields:
        z = raw("z")
        sign = pl.when(z.str.starts_with("-")).then(-1).otherwise(1)
        hh = z.str.slice(1, 2).str.to_integer(strict=False)
        mm = z.str.slice(3, 2).str.to_integer(strict=False)
        seconds = seconds - sign * (hh * 3600 + mm * 60)
    frac = [f for f in fields if f.startswith("F")]
    if frac:
        digits = int(frac[0][1:])
        text = raw(frac[0]).fill_null("")
        scaled = (text + "000000000").str.slice(0, digits).str.to_integer(strict=False).fill_null(0)
        seconds = seconds * (10**digits) + (scaled if digits else 0)
    return parts.struct.with_fields(seconds=seconds).struct.field("seconds").cast(pl.Int64)


def _days_in_month(year: pl.Expr, month: pl.Expr) -> pl.Expr:
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    return (
        pl.when(month == 2).then(28 + leap.cast(pl.Int64))
        .when(month.is_in([4, 6, 9, 11])).then(30)
        .otherwise(31)
    )  # fmt: skip

"""Dates from file names: ``--dateregex`` tokens, ``auto``, ``none``, legacy ``--dateformat``.

A file's stamp is an ISO string ``YYYY-MM-DD HH:MM:SS`` (UTC when the name carries a zone) or,
for ``[:%f:{min,max}]`` rules, an integer identifier. Extraction that fails gives the ``none``
stamp 1970-01-01, as Essentia did.

Matching rule (spec 3.4): the rule is searched (not anchored) in the file's base name first and
in the whole path only when the base name has no match at all; the leftmost match is taken and
must form a valid date, otherwise the file falls back to ``none``.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from ess.errors import CategoryError

Stamp = str | int
NONE_STAMP = "1970-01-01 00:00:00"

_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})

_TOKENS = {
    "Y": r"(?P<Y>\d{4})",
    "y": r"(?P<y>\d{2})",
    "m": r"(?P<m>\d{2})",
    "b": r"(?P<b>[A-Za-z]{3})",
    "B": r"(?P<B>[A-Za-z]+)",
    "d": r"(?P<d>\d{2})",
    "H": r"(?P<H>\d{2})",
    "M": r"(?P<M>\d{2})",
    "S": r"(?P<S>\d{2})",
    "z": r"(?P<z>[+-]\d{4}|Z)",
    "p": r"(?P<p>[AaPp][Mm])",
}
# Tokens are `[:%Y:]` and `[:%f:{min,max}]` (no colon before the closing bracket of the latter).
_TOKEN = re.compile(r"\[:%(?:(?P<letter>[A-Za-z]):|f:\{(?P<min>\d*)(?P<comma>,?)(?P<max>\d*)\})\]")
# auto: a separated date may carry a separated time; a compact YYYYMMDD only a compact time
# (so `access_20140901_000123.log` is the 1st of September, not 00:01:23 on it).
_AUTO = (
    re.compile(
        r"(?<!\d)(?P<Y>19[7-9]\d|20\d\d)(?P<sep>[-_/])(?P<m>\d\d)(?P=sep)(?P<d>\d\d)"
        r"(?:[T _-](?P<H>\d\d)(?:[:-](?P<M>\d\d)(?:[:-](?P<S>\d\d))?)?)?(?!\d)"
    ),
    re.compile(
        r"(?<!\d)(?P<Y>19[7-9]\d|20\d\d)(?P<m>\d\d)(?P<d>\d\d)"
        r"(?:(?P<H>\d\d)(?P<M>\d\d)?(?P<S>\d\d)?)?(?!\d)"
    ),
)


@dataclass(frozen=True)
class DateRule:
    """A compiled date rule; ``kind`` is "auto", "none", "regex" or "number"."""

    kind: str
    text: str
    regex: re.Pattern[str] | None = None

    @property
    def explicit(self) -> bool:
        """A rule the user wrote (--dateregex / --dateformat), not auto or none."""
        return self.kind in ("regex", "number")

    def extracts(self, path: str) -> bool:
        """Whether the rule finds a date (or number) in ``path`` instead of falling back."""
        if self.kind == "none":
            return False
        if self.kind == "auto":
            base = path.rsplit("/", 1)[-1]
            return (_auto_stamp(base) or _auto_stamp(path)) is not None
        assert self.regex is not None
        found = self.regex.search(path.rsplit("/", 1)[-1]) or self.regex.search(path)
        return found is not None and (self.kind == "number" or _cached_stamp(found) is not None)

    def stamp(self, path: str) -> Stamp:
        if self.kind == "none":
            return NONE_STAMP
        base = path.rsplit("/", 1)[-1]
        if self.kind == "auto":
            return _auto_stamp(base) or _auto_stamp(path) or NONE_STAMP
        assert self.regex is not None
        found = self.regex.search(base) or self.regex.search(path)
        if found is None:
            return NONE_STAMP if self.kind == "regex" else 0
        if self.kind == "number":
            return int(found.group("f"))
        return _cached_stamp(found) or NONE_STAMP


def _auto_stamp(text: str) -> str | None:
    best: tuple[int, str] | None = None
    for regex in _AUTO:
        for found in regex.finditer(text):
            if best is not None and found.start() >= best[0]:
                break
            stamp = _cached_stamp(found)
            if stamp is not None:
                best = (found.start(), stamp)
                break
    return best[1] if best else None


_STAMP_CACHE: dict[tuple[str | None, ...], str | None] = {}


def _cached_stamp(found: re.Match[str]) -> str | None:
    """Files of one day share their date fields: build each distinct stamp once."""
    key = found.groups()
    stamp = _STAMP_CACHE.get(key, "")
    if stamp == "":
        stamp = _STAMP_CACHE[key] = _stamp_from_fields(found.groupdict())
    return stamp


def _month(fields: dict[str, str | None]) -> int | None:
    if fields.get("m"):
        return int(fields["m"] or 0)
    name = fields.get("b") or fields.get("B")
    if name:
        return _MONTHS.get(name.lower())
    return 1


def _stamp_from_fields(fields: dict[str, str | None]) -> str | None:
    """Build the stamp from captured fields; None when they do not form a valid date."""
    if fields.get("Y"):
        year = int(fields["Y"] or 0)
    elif fields.get("y"):
        two = int(fields["y"] or 0)
        year = 1900 + two if two >= 69 else 2000 + two
    else:
        year = 1970
    month = _month(fields)
    if month is None:
        return None
    hour = int(fields.get("H") or 0)
    ampm = (fields.get("p") or "").lower()
    if ampm:
        if hour > 12:
            return None
        hour = hour % 12 + (12 if ampm == "pm" else 0)
    try:
        when = datetime(
            year,
            month,
            int(fields.get("d") or 1),
            hour,
            int(fields.get("M") or 0),
            int(fields.get("S") or 0),
        )
    except ValueError:
        return None
    zone = fields.get("z")
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5])) * sign
        when = when.replace(tzinfo=timezone(offset)).astimezone(UTC).replace(tzinfo=None)
    return when.strftime("%Y-%m-%d %H:%M:%S")


def _token_regex(found: re.Match[str], seen: set[str], rule: str) -> str:
    letter = found.group("letter")
    if letter is None:
        low, high = found.group("min"), found.group("max")
        if not low:
            raise CategoryError(
                f"dateregex {rule!r}: [:%f:{{min,max}}] needs a minimum digit count"
            )
        name, regex = "f", rf"(?P<f>\d{{{low}{found.group('comma')}{high}}})"
    elif letter in _TOKENS:
        name, regex = letter, _TOKENS[letter]
    else:
        raise CategoryError(
            f"dateregex {rule!r}: unknown token [:%{letter}:] at column {found.start() + 1}"
        )
    if name in seen:
        raise CategoryError(f"dateregex {rule!r}: token [:%{name}:] appears twice")
    seen.add(name)
    return regex


def compile_dateregex(rule: str) -> DateRule:
    text = rule.strip()
    if text.lower() in ("", "auto"):
        return DateRule("auto", "auto")
    if text.lower() == "none":
        return DateRule("none", "none")
    seen: set[str] = set()
    pieces: list[str] = []
    last = 0
    for found in _TOKEN.finditer(text):
        pieces.append(text[last : found.start()])
        pieces.append(_token_regex(found, seen, rule))
        last = found.end()
    pieces.append(text[last:])
    if not seen:
        raise CategoryError(f"dateregex {rule!r}: no date token such as [:%Y:] or [:%f:{{8,}}]")
    if "f" in seen and len(seen) > 1:
        raise CategoryError(f"dateregex {rule!r}: [:%f:] cannot be combined with date tokens")
    try:
        regex = re.compile("".join(pieces))
    except re.error as exc:
        raise CategoryError(f"dateregex {rule!r}: invalid regular expression: {exc}") from exc
    return DateRule("number" if "f" in seen else "regex", text, regex)


_FORMAT_LETTERS = {
    "Y": "[:%Y:]",
    "y": "[:%y:]",
    "D": "[:%d:]",
    "h": "[:%H:]",
    "m": "[:%M:]",
    "s": "[:%S:]",
    "Z": "[:%z:]",
    "P": "[:%p:]",
    "#": "[:%f:{1,}]",
}


def dateformat_to_regex(fmt: str) -> str:
    """Translate the deprecated glob-like ``--dateformat`` (``*Y-M-D*``) into a dateregex."""
    text = fmt.strip()
    if text.lower() in ("auto", "none"):
        return text.lower()
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        run = 1
        while i + run < len(text) and text[i + run] == char and char in "YMD":
            run += 1
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "M":
            out.append("[:%m:]" if run >= 1 else "")
        elif char == "Y" and run == 2:
            out.append("[:%y:]")
        elif char in _FORMAT_LETTERS:
            out.append(_FORMAT_LETTERS[char])
        else:
            out.append(char if char in "-_/ " or char.isalnum() else re.escape(char))
        i += run if char in "YMD" else 1
    return "".join(out)


def compile_rule(dateregex: str | None, dateformat: str | None) -> DateRule:
    if dateregex:
        return compile_dateregex(dateregex)
    if dateformat:
        return compile_dateregex(dateformat_to_regex(dateformat))
    return DateRule("auto", "auto")


# ---------------------------------------------------------------- range selection

_BOUND = re.compile(
    r"^(?P<Y>\d{4})-?(?P<m>\d{2})-?(?P<d>\d{2})"
    r"(?:[T ](?P<H>\d{1,2})(?::(?P<M>\d{2})(?::(?P<S>\d{2}))?)?)?$"
)


@dataclass(frozen=True)
class DateRange:
    """Inclusive bounds; None means open (the user wrote ``*``)."""

    lower: Stamp | None
    upper: Stamp | None

    def contains(self, stamp: Stamp) -> bool:
        if isinstance(stamp, int):
            return (self.lower is None or stamp >= int(self.lower)) and (
                self.upper is None or stamp <= int(self.upper)
            )
        return (self.lower is None or stamp >= str(self.lower)) and (
            self.upper is None or stamp <= str(self.upper)
        )


def parse_bound(text: str, *, numeric: bool, which: str) -> Stamp | None:
    value = text.strip()
    if value in ("*", ""):
        return None
    if numeric:
        if not value.isdigit():
            raise CategoryError(
                f"{which} bound {text!r}: this category is numbered; give a number or *"
            )
        return int(value)
    found = _BOUND.match(value)
    if found is None:
        raise CategoryError(f"{which} bound {text!r}: expected YYYY-MM-DD[ HH[:MM[:SS]]] or *")
    stamp = _stamp_from_fields(found.groupdict())
    if stamp is None:
        raise CategoryError(f"{which} bound {text!r}: not a valid date")
    return stamp


def parse_range(lower: str, upper: str, *, numeric: bool = False) -> DateRange:
    """The inclusive range [lower, upper]. A reversed range is an error, not an empty
    selection: no file can ever match it, so it is a typo (swapped bounds) to point out."""
    low = parse_bound(lower, numeric=numeric, which="lower")
    high = parse_bound(upper, numeric=numeric, which="upper")
    if low is not None and high is not None and _after(low, high):
        raise CategoryError(
            f"date range {lower!r} .. {upper!r} is reversed (the lower bound is after the "
            "upper one), so no file can match; swap the bounds"
        )
    return DateRange(low, high)


def _after(low: Stamp, high: Stamp) -> bool:
    return int(low) > int(high) if isinstance(low, int) else str(low) > str(high)


def display_date(stamp: Stamp) -> str:
    """How a stamp shows in summaries: the day, or the number for numbered categories."""
    return str(stamp) if isinstance(stamp, int) else stamp[:10]

"""Column specifications (`-d`, `-var`, `-eval Type:Name`, lookup specs): `Type[,Attr...]:Name`.

Integer types are held as Int64 (L as UInt64) inside Polars; the declared type is kept so that
assignment can wrap/truncate the way a C cast into that type would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import polars as pl

from ess.errors import AqSyntaxError, NotSupportedError

# Type letters as the manuals spell them; lower case is accepted everywhere.
TYPES = ("S", "I", "IS", "L", "LS", "F", "IP")
INT_TYPES = frozenset({"I", "IS", "L", "LS"})
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,30}$")


def polars_dtype(typ: str) -> pl.DataType:
    if typ == "F":
        return pl.Float64()
    if typ == "L":
        return pl.UInt64()
    if typ in INT_TYPES:
        return pl.Int64()
    return pl.String()


def kind(typ: str) -> str:
    """The expression-level kind of a column type: S, I (any integer), F or IP."""
    return "I" if typ in INT_TYPES else typ


@dataclass(frozen=True)
class ColSpec:
    """One `Type[,AtrLst]:Name` item; `typ == "X"` marks a skipped input field."""

    typ: str
    name: str
    attrs: tuple[str, ...] = ()
    width: int | None = None  # n=Len
    extra: tuple[str, ...] = field(default=())  # anything after a second ':' (jsn/xml key spec)

    @property
    def skip(self) -> bool:
        return self.typ == "X"

    def has(self, attr: str) -> bool:
        return attr in self.attrs

    @property
    def key_spec(self) -> str:
        """The KeySpec of a `Type:Name:KeySpec` column (jsn/xml input), "" when none."""
        return self.extra[0] if self.extra else ""


_KNOWN_ATTRS = {"esc", "clf", "hex", "trm", "lo", "up", "key", "cmb", "noq", "tim"}


def parse_colspec(text: str, *, allow_skip: bool = True, what: str = "column spec") -> ColSpec:
    """Parse `Type[,AtrLst]:Name`; a bare `X` (or `X:name`, `XS`, `XI`) skips an input field."""
    head, sep, rest = text.partition(":")
    parts = head.split(",")
    typ = parts[0].upper()
    attrs: list[str] = []
    width: int | None = None
    for raw in parts[1:]:
        attr = raw.lower()
        if attr.startswith("n="):
            try:
                width = int(attr[2:])
            except ValueError:
                raise AqSyntaxError(f"bad n=Len attribute in {what} {text!r}") from None
        elif "@" in attr:  # `s,@98:c` or `s,trm@98:c`
            raise NotSupportedError(f"the legacy @N field index ({what} {text!r})")
        elif attr in _KNOWN_ATTRS:
            attrs.append(attr)
        else:
            raise AqSyntaxError(f"unknown column attribute {raw!r} in {what} {text!r}")
    if typ.startswith("X") and allow_skip and typ[1:] in ("", *TYPES):
        return ColSpec("X", rest.partition(":")[0] if sep else "", tuple(attrs), width)
    if typ not in TYPES:
        raise AqSyntaxError(f"unknown column type {parts[0]!r} in {what} {text!r}")
    if not sep:
        raise AqSyntaxError(f"{what} {text!r} needs the form Type:Name")
    name, _, extra = rest.partition(":")
    if not NAME_RE.match(name):
        raise AqSyntaxError(f"bad column name {name!r} in {what} {text!r}")
    return ColSpec(typ, name, tuple(attrs), width, (extra,) if extra else ())


def looks_like_colspec(text: str) -> bool:
    """True when an argv word is a column spec rather than a file name / next option."""
    if text.startswith("-"):
        return False
    head = text.partition(":")[0].split(",")[0].upper()
    if head.startswith("X") and head[1:] in ("", *TYPES):
        return True
    return head in TYPES and ":" in text

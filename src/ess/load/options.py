"""``--options``: Redshift COPY options, parsed into a typed value and rendered back.

The words are read as Redshift spells them (``TRUNCATECOLUMNS``, ``MAXERROR [AS] n``,
``IGNOREHEADER [AS] n``, ``NULL [AS] 'text'``, ``DATEFORMAT [AS] 'fmt'``, ``TIMEFORMAT [AS]
'fmt'``, ``EMPTYASNULL``, ``BLANKSASNULL``, ``ACCEPTINVCHARS [AS] 'c'``, ``TRIMBLANKS``,
``ROUNDEC``, ``COMPUPDATE ON|OFF``, ``STATUPDATE ON|OFF``). Nothing the user typed is pasted
into SQL: Redshift's COPY is rendered from the parsed values (literals quoted), and on
PostgreSQL each option is emulated or refused as not supported.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from ess.errors import NotSupportedError, UsageError

_FLAGS = {"TRUNCATECOLUMNS", "EMPTYASNULL", "BLANKSASNULL", "TRIMBLANKS", "ROUNDEC"}
_INTS = {"MAXERROR", "IGNOREHEADER"}
_TEXTS = {"NULL", "DATEFORMAT", "TIMEFORMAT", "ACCEPTINVCHARS"}
_ONOFF = {"COMPUPDATE", "STATUPDATE"}
#: What PostgreSQL's COPY already does the same way: no emulation needed.
_PG_DATE_FORMATS = {"AUTO", "YYYY-MM-DD"}
_PG_TIME_FORMATS = {"AUTO", "YYYY-MM-DD HH:MI:SS"}


@dataclass(frozen=True)
class CopyOptions:
    truncatecolumns: bool = False
    maxerror: int | None = None
    ignoreheader: int = 0
    null_as: str | None = None
    dateformat: str | None = None
    timeformat: str | None = None
    flags: tuple[str, ...] = ()  # other flag words, in the order given
    settings: tuple[tuple[str, str], ...] = field(default=())  # COMPUPDATE OFF, ...
    acceptinvchars: str | None = None

    @property
    def emulated(self) -> bool:
        """True when a PostgreSQL load must check rows itself (MAXERROR, TRUNCATECOLUMNS)."""
        return self.truncatecolumns or self.maxerror is not None

    def redshift_sql(self) -> str:
        """The options as Redshift COPY clauses (literals quoted by us)."""
        out = []
        if self.truncatecolumns:
            out.append("TRUNCATECOLUMNS")
        if self.maxerror is not None:
            out.append(f"MAXERROR {self.maxerror}")
        if self.ignoreheader:
            out.append(f"IGNOREHEADER {self.ignoreheader}")
        for word, value in (
            ("NULL AS", self.null_as),
            ("DATEFORMAT", self.dateformat),
            ("TIMEFORMAT", self.timeformat),
            ("ACCEPTINVCHARS AS", self.acceptinvchars),
        ):
            if value is not None:
                out.append(f"{word} {literal(value)}")
        out.extend(self.flags)
        out.extend(f"{k} {v}" for k, v in self.settings)
        return " ".join(out)

    def check_postgresql(self) -> None:
        """Refuse what the PostgreSQL path does not emulate (never a silent no-op)."""
        if self.dateformat and self.dateformat.upper() not in _PG_DATE_FORMATS:
            raise NotSupportedError(f"DATEFORMAT {self.dateformat!r} on PostgreSQL")
        if self.timeformat and self.timeformat.upper() not in _PG_TIME_FORMATS:
            raise NotSupportedError(f"TIMEFORMAT {self.timeformat!r} on PostgreSQL")
        if self.acceptinvchars is not None:
            raise NotSupportedError("ACCEPTINVCHARS on PostgreSQL")
        others = [f for f in self.flags if f not in ("EMPTYASNULL",)]
        if others:
            raise NotSupportedError(f"{', '.join(others)} on PostgreSQL")


def literal(text: str) -> str:
    """A SQL string literal (standard quoting: ``'`` doubled; backslash has no meaning)."""
    return "'" + text.replace("'", "''") + "'"


def parse_options(words: Sequence[str]) -> CopyOptions:
    """Parse ``--options`` words (each word may hold several, as the shell passed them)."""
    tokens: list[str] = []
    for word in words:
        try:
            tokens.extend(shlex.split(word))
        except ValueError as exc:
            raise UsageError(f"--options {word!r}: {exc}") from None
    values: dict[str, object] = {}
    flags: list[str] = []
    settings: list[tuple[str, str]] = []
    i = 0
    while i < len(tokens):
        word = tokens[i].upper()
        i += 1
        if word in _FLAGS:
            if word == "TRUNCATECOLUMNS":
                values["truncatecolumns"] = True
            elif word not in flags:
                flags.append(word)
            continue
        if word not in _INTS | _TEXTS | _ONOFF:
            raise UsageError(f"--options: unknown or unsupported COPY option {tokens[i - 1]!r}")
        if i < len(tokens) and tokens[i].upper() == "AS":
            i += 1
        if i >= len(tokens):
            raise UsageError(f"--options: {word} needs a value")
        value = tokens[i]
        i += 1
        if word in _INTS:
            if not value.isdigit():
                raise UsageError(f"--options: {word} needs a whole number, got {value!r}")
            values[word.lower()] = int(value)
        elif word in _ONOFF:
            if value.upper() not in ("ON", "OFF", "TRUE", "FALSE"):
                raise UsageError(f"--options: {word} takes ON or OFF, got {value!r}")
            settings.append((word, value.upper()))
        else:
            key = {"NULL": "null_as"}.get(word, word.lower())
            values[key] = value
    return CopyOptions(flags=tuple(flags), settings=tuple(settings), **values)  # type: ignore[arg-type]

"""`-mapf` / `-mapc` / `-map` (spec section 9): MapFrom patterns and MapTo templates.

RT MapFrom (no regex attribute) matches the whole value; it is translated into an anchored
regex with lazy extraction groups, as spec 9.1 recommends. RegEx MapFrom matches a substring.
Extracted values live in hidden columns `__mv_<name>` that MapTo templates read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

from ess.aq.regex import REGEX_ATTRS, group_count, to_rust
from ess.errors import AqSyntaxError, NotSupportedError

_CLASSES = {"n": "0-9", "a": "a-z", "b": "A-Z", "c": "\\x20-\\x7e", "x": "\\x00-\\x1f\\x7f",
            "s": "\\s", "g": "{}\\[\\]()", "q": "'\"`"}  # fmt: skip
_ESCAPES = {"\\": "\\", '"': '"', "%": "%", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
            "t": "\t", "v": "\v", "0": "\0", "\n": ""}  # fmt: skip


@dataclass
class MapFrom:
    regex: str
    names: list[str]  # capture names in group order ("" = discarded)


def is_regex(attrs: list[str]) -> bool:
    return any(a.lower() in REGEX_ATTRS for a in attrs)


def _unescape(text: str, i: int) -> tuple[str, int]:
    nxt = text[i + 1] if i + 1 < len(text) else "\\"
    if nxt in _ESCAPES:
        return _ESCAPES[nxt], i + 2
    if nxt in "xX" and re.fullmatch(r"[0-9A-Fa-f]{2}", text[i + 2 : i + 4]):
        return chr(int(text[i + 2 : i + 4], 16)), i + 4
    return "\\" + nxt, i + 2


def rt_mapfrom(pattern: str, *, ncas: bool) -> MapFrom:
    """Translate an RT MapFrom pattern into an anchored regex."""
    out: list[str] = []
    names: list[str] = []
    caseless = ncas
    i = 0
    lit: list[str] = []

    def flush() -> None:
        if lit:
            body = re.escape("".join(lit))
            out.append(f"(?i:{body})" if caseless else body)
            lit.clear()

    while i < len(pattern):
        if pattern.startswith("%%", i):
            end = pattern.find("%%", i + 2)
            if end < 0:
                raise AqSyntaxError(f"unterminated %%...%% in MapFrom {pattern!r}")
            flush()
            name, group = _rt_var(pattern[i + 2 : end], pattern)
            names.append(name)
            out.append(group)
            i = end + 2
        elif pattern.startswith("%*", i):
            flush()
            out.append("(?s:.*?)")
            i += 2
        elif pattern.startswith("%?", i):
            flush()
            out.append("(?s:.)")
            i += 2
        elif pattern.startswith("%=", i):
            flush()
            caseless = not caseless
            i += 2
        elif pattern[i] == "\\":
            text, i = _unescape(pattern, i)
            lit.append(text)
        else:
            lit.append(pattern[i])
            i += 1
    flush()
    return MapFrom("^" + "".join(out) + "$", names)


def _rt_var(spec: str, pattern: str) -> tuple[str, str]:
    """`Var[:@class][:[chars]][:min[-max]][,brks]` → (name, regex group)."""
    body, _, brks = spec.partition(",")
    parts = body.split(":")
    name = parts[0]
    allowed = ""
    have_set = False
    quant = "*"
    for part in parts[1:]:
        if part.startswith("@"):
            allowed += "".join(_CLASSES.get(c, "") for c in part[1:])
            have_set = True
        elif part.startswith("[") and part.endswith("]"):
            allowed += re.escape(part[1:-1])
            have_set = True
        elif re.fullmatch(r"\d+(-\d+)?", part):
            lo, _, hi = part.partition("-")
            quant = f"{{{lo},{hi}}}"  # no max: up to the (unbounded) rest of the value
        elif part:
            raise AqSyntaxError(f"bad %%{spec}%% in MapFrom {pattern!r}")
    if brks:
        chars = f"[^{re.escape(brks)}]" if not have_set else f"[{allowed}&&[^{re.escape(brks)}]]"
    else:
        chars = f"[{allowed}]" if have_set else "(?s:.)"
    group = f"({chars}{quant}?)"
    return ("" if name == "*" else name.lower()), group


def rx_mapfrom(pattern: str, attrs: list[str], first_index: int) -> MapFrom:
    """RegEx MapFrom: captures are numbered from `first_index` (global across -mapf,rx)."""
    regex = to_rust(pattern, attrs + (["ncas"] if "ncas" in attrs else []))
    groups = group_count(regex)
    names = [str(first_index + k) for k in range(groups + 1)]
    return MapFrom(f"({regex})", names)


@dataclass
class Piece:
    literal: str = ""
    var: str | None = None
    start: int | None = None
    length: int | None = None
    brks: str = ""


def parse_mapto(template: str) -> list[Piece]:
    pieces: list[Piece] = []
    lit: list[str] = []
    i = 0
    while i < len(template):
        if template.startswith("%%", i):
            end = template.find("%%", i + 2)
            if end < 0:
                raise AqSyntaxError(f"unterminated %%...%% in MapTo {template!r}")
            if lit:
                pieces.append(Piece(literal="".join(lit)))
                lit.clear()
            pieces.append(_mapto_var(template[i + 2 : end], template))
            i = end + 2
        elif template[i] == "\\":
            text, i = _unescape(template, i)
            lit.append(text)
        else:
            lit.append(template[i])
            i += 1
    if lit:
        pieces.append(Piece(literal="".join(lit)))
    return pieces


def _mapto_var(spec: str, template: str) -> Piece:
    body, _, brks = spec.partition(",")
    parts = body.split(":")
    piece = Piece(var=parts[0].lower(), brks=brks)
    nums = []
    for part in parts[1:]:
        if part.isdigit():
            nums.append(int(part))
        elif part in ("b64",) or part.startswith("url"):
            raise NotSupportedError(f"MapTo conversion :{part}")
        else:
            raise AqSyntaxError(f"bad %%{spec}%% in MapTo {template!r}")
    if len(nums) == 1:
        piece.length = nums[0]
    elif len(nums) == 2:
        piece.start, piece.length = nums
    return piece


def render(pieces: list[Piece], column_of: dict[str, str], template: str) -> pl.Expr:
    exprs: list[pl.Expr] = []
    for piece in pieces:
        if piece.var is None:
            exprs.append(pl.lit(piece.literal))
            continue
        col = column_of.get(piece.var)
        if col is None:
            raise AqSyntaxError(f"MapTo {template!r}: %%{piece.var}%% was not extracted")
        value = pl.col(col)
        if piece.start is not None or piece.length is not None:
            value = value.str.slice(piece.start or 0, piece.length)
        if piece.brks:
            value = value.str.extract(f"^([^{re.escape(piece.brks)}]*)", 1)
        exprs.append(value)
    if not exprs:
        return pl.lit("")
    return pl.concat_str(exprs)

"""Translate Essentia's pattern dialects into the regex syntax Polars (Rust `regex`) speaks.

Dialects: POSIX BRE (`rx`, the default regex engine), POSIX ERE (`rx_extended`), PCRE (`pcre`,
close enough to Rust syntax for the constructs it shares), and the `*`/`?` wildcards of PatCmp
and `-sub,pat` / `-grep,pat`. POSIX leftmost-longest alternation is approximated by Rust's
leftmost-first (spec 9.2 notes this is unobservable in the documented examples).
"""

from __future__ import annotations

import functools
import re

from ess.errors import AqSyntaxError, NotSupportedError

REGEX_ATTRS = {"rx", "rx_extended", "rx_icase", "rx_newline", "pcre", "caseless", "dotall",
               "multiline", "extended", "ungreedy", "utf", "ucp", "anchored"}  # fmt: skip
_META = set(".^$*+?()[]{}|\\")


def bre_to_rust(pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            out.append(nxt if nxt in "(){}|+?" else "\\" + nxt)
            i += 2
            continue
        if ch == "[":
            end = _bracket_end(pattern, i)
            out.append(_bracket(pattern[i : end + 1]))
            i = end + 1
            continue
        if ch in "(){}|+?":
            out.append("\\" + ch)
        elif ch == "*" and (not out or out[-1] in ("(", "^")):
            out.append("\\*")  # a leading * is literal in BRE
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def ere_to_rust(pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            out.append(pattern[i : i + 2])
            i += 2
        elif ch == "[":
            end = _bracket_end(pattern, i)
            out.append(_bracket(pattern[i : end + 1]))
            i = end + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _bracket_end(pattern: str, start: int) -> int:
    i = start + 1
    if i < len(pattern) and pattern[i] == "^":
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        i += 1
    while i < len(pattern):
        if pattern.startswith("[:", i):
            close = pattern.find(":]", i + 2)
            i = close + 2 if close >= 0 else i + 1
            continue
        if pattern[i] == "]":
            return i
        i += 1
    raise AqSyntaxError(f"unterminated [ in regular expression {pattern!r}")


def _bracket(text: str) -> str:
    """POSIX brackets have no escapes: a backslash inside is literal; Rust needs it escaped."""
    body = text[1:-1]
    neg = body.startswith("^")
    if neg:
        body = body[1:]
    body = body.replace("\\", "\\\\")
    if body.startswith("]"):
        body = "\\]" + body[1:]
    body = re.sub(r"\[(?!:)", r"\\[", body)
    return "[" + ("^" if neg else "") + body + "]"


def to_rust(pattern: str, attrs: set[str] | list[str] | tuple[str, ...]) -> str:
    """Regex text for Polars given Essentia regex attributes (`rx` = BRE by default)."""
    attrs = {a.lower() for a in attrs}
    if "pcre" in attrs:
        body = pattern
    elif "rx_extended" in attrs:
        body = ere_to_rust(pattern)
    else:
        body = bre_to_rust(pattern)
    flags = ""
    if attrs & {"ncas", "rx_icase", "caseless"}:
        flags += "i"
    if "dotall" in attrs:
        flags += "s"
    if attrs & {"multiline", "rx_newline"}:
        flags += "m"
    if "ungreedy" in attrs:
        flags += "U"
    if "extended" in attrs:
        flags += "x"
    body = (f"(?{flags})" if flags else "") + body
    check(body, pattern)
    return body


def check(rust: str, original: str) -> None:
    """Reject regexes Rust cannot compile (back-references, look-around) with a clear message."""
    if re.search(r"\\[1-9]", rust.replace("\\\\", "")):
        raise NotSupportedError(f"regex back-references ({original!r})")
    if any(look in rust for look in ("(?=", "(?!", "(?<=", "(?<!")):
        raise NotSupportedError(f"regex look-around ({original!r})")
    _compiles(rust, original)


@functools.lru_cache(maxsize=256)
def _compiles(rust: str, original: str) -> None:
    """A regex Rust cannot compile is the rule's syntax error, found before any row is read
    (Polars would only fail on the first non-empty batch, or never on empty input)."""
    import polars as pl

    try:
        pl.select(pl.lit("").str.contains(rust))
    except pl.exceptions.PolarsError as exc:
        lines = str(exc).splitlines()
        reason = next((ln[7:] for ln in lines if ln.startswith("error: ")), lines[0] if lines
                      else "")  # fmt: skip
        raise AqSyntaxError(f"invalid regex {original!r}: {reason}") from None


def wildcard_to_rust(pattern: str, *, ncas: bool = False) -> str:
    """PatCmp / `pat` wildcards: `*` any bytes, `?` one byte, `\\` escapes; whole value."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append("(?s:.*)" if ch == "*" else "(?s:.)" if ch == "?" else re.escape(ch))
        i += 1
    return ("(?i)" if ncas else "") + "^" + "".join(out) + "$"


def has_wildcard(pattern: str) -> bool:
    return bool(re.search(r"(?<!\\)[*?]", pattern))


def group_count(rust: str) -> int:
    """Number of capturing groups (Python's re agrees with Rust on which parens capture)."""
    py = re.sub(r"\[\[:[a-z]+:\]\]", "x", rust)
    try:
        return re.compile(py.replace("(?s:", "(?:")).groups
    except re.error:
        depth = 0
        count = 0
        i = 0
        while i < len(rust):
            if rust[i] == "\\":
                i += 2
                continue
            if rust[i] == "(" and not rust.startswith("(?", i):
                count += 1
            depth += 1
            i += 1
        return count

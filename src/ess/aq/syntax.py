"""The aq expression language's syntax: the one lark grammar, parsing, string constants.

Parsing is kept apart from compiling so that the builtin functions (which walk parse trees)
and the expression compiler (which calls them) both import it without importing each other.
"""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ess.errors import AqSyntaxError

# lark imports the `regex` package whenever it is installed, only for grammars built with
# regex=True (ours is not), and that costs ~15 ms of every aq_pp start: hide it meanwhile.
_REGEX = sys.modules.get("regex")
sys.modules["regex"] = None  # type: ignore[assignment]  # `import regex` raises ImportError
try:
    from lark import Lark, Token, Tree
    from lark.exceptions import (
        UnexpectedCharacters,
        UnexpectedEOF,
        UnexpectedInput,
        UnexpectedToken,
    )
finally:
    if _REGEX is None:
        del sys.modules["regex"]
    else:
        sys.modules["regex"] = _REGEX

GRAMMAR = Path(__file__).with_name("grammar.lark")


@functools.cache
def parser() -> Lark:
    # cache=True keeps the compiled LALR tables in the temp dir: aq_pp starts once per file
    return Lark(
        GRAMMAR.read_text(),
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        cache=True,
    )


def warm_up() -> None:
    """Load the parser and build each of its contextual lexer's scanners now: the warm service
    does this before it forks, so a command with an expression does not spend the 8 ms of CPU
    on it (lark builds a scanner on first use; without that internal it is built then)."""
    lexer = getattr(parser().parser, "lexer", None)
    for sub in {id(v): v for v in getattr(lexer, "lexers", {}).values()}.values():
        build = getattr(sub, "_build_scanner", None)
        if build is not None:
            build()


@dataclass
class Source:
    """The expression text and which option it came from, for error messages."""

    text: str
    where: str

    def error(self, message: str, column: int | None) -> AqSyntaxError:
        if column is None:
            return AqSyntaxError(f"{self.where}: {message} in {self.text!r}")
        caret = " " * len(_visible(self.text[: column - 1])) + "^"
        return AqSyntaxError(
            f"{self.where}: {message} at position {column} of the expression\n"
            f"  {_visible(self.text)}\n  {caret}"
        )


def _visible(text: str) -> str:
    """The text with control and line-breaking characters escaped, so the echo stays one line."""
    return "".join(
        ch.encode("unicode_escape").decode("ascii") if not ch.isprintable() and ch != " " else ch
        for ch in text
    )


def parse(text: str, where: str) -> Tree:
    src = Source(text, where)
    try:
        return parser().parse(text)
    except UnexpectedCharacters as exc:
        if exc.char in "\"'" and _unterminated(text, exc.column - 1):
            raise src.error("unterminated string", exc.column) from None
        raise src.error(f"unexpected character {exc.char!r}", exc.column) from None
    except UnexpectedEOF:
        raise src.error("unexpected end of expression", len(text) + 1) from None
    except UnexpectedToken as exc:
        tok = exc.token
        if tok.type == "$END":
            raise src.error("unexpected end of expression", len(text) + 1) from None
        raise src.error(f"unexpected {tok.value!r}", tok.column) from None
    except UnexpectedInput as exc:  # pragma: no cover - other lark errors
        raise src.error("syntax error", getattr(exc, "column", None)) from None


_STRING_AT = {'"': re.compile(r'"(\\[\s\S]|[^"\\])*"'), "'": re.compile(r"'[^']*'")}


def _unterminated(text: str, start: int) -> bool:
    """Whether the string constant opening at `start` has no closing quote."""
    return _STRING_AT[text[start]].match(text, start) is None


def decode_strings(token: str) -> str:
    """Adjacent string constants concatenate; escapes only inside double quotes (spec 7.1)."""
    out: list[str] = []
    i, n = 0, len(token)
    while i < n:
        ch = token[i]
        if ch.isspace():
            i += 1
            continue
        if ch == "'":
            end = token.index("'", i + 1)
            out.append(token[i + 1 : end])
            i = end + 1
            continue
        i += 1  # opening "
        while token[i] != '"':
            if token[i] == "\\":
                nxt = token[i + 1]
                simple = {"\\": "\\", '"': '"', "b": "\b", "f": "\f", "n": "\n", "r": "\r",
                          "t": "\t", "v": "\v", "0": "\0", "\n": ""}  # fmt: skip
                if nxt in simple:
                    out.append(simple[nxt])
                    i += 2
                elif nxt in "xX" and _is_hex(token[i + 2 : i + 4]):
                    out.append(chr(int(token[i + 2 : i + 4], 16)))
                    i += 4
                else:  # unknown escapes are kept verbatim
                    out.append("\\" + nxt)
                    i += 2
            else:
                out.append(token[i])
                i += 1
        i += 1
    return "".join(out)


def _is_hex(text: str) -> bool:
    return len(text) == 2 and all(c in "0123456789abcdefABCDEF" for c in text)


def node_column(node: Tree | Token | None) -> int | None:
    if node is None:
        return None
    if isinstance(node, Token):
        return node.column
    meta = node.meta
    return None if meta.empty else meta.column


__all__ = ["Source", "Token", "Tree", "decode_strings", "node_column", "parse", "parser"]

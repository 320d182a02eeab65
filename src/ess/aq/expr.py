"""The aq expression language: parse with the one lark grammar, type-check, compile to Polars.

Typing follows Essentia: a value is a string (S), an integer (I, held as Int64), a float (F),
an IP address (IP) or, for comparisons and logical operators, a boolean (B). Integer-only
arithmetic stays integral (C division and remainder); any float operand makes it double.
Strings and numbers never mix implicitly. Type errors are reported at compile time with the
position of the offending token.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import polars as pl

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
NUMERIC = frozenset({"I", "F", "B"})


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


@dataclass(frozen=True)
class Typed:
    """A compiled expression and its kind (S, I, F, IP or B)."""

    expr: pl.Expr
    kind: str
    const: object = None  # the Python value of a constant (strings, numbers), else None


class Scope(Protocol):
    """What an expression can see: columns/variables and the special `$` variables."""

    def column(self, name: str) -> Typed | None: ...

    def special(self, name: str) -> Typed | None: ...

    def assign(self, name: str, value: Typed) -> None: ...


@dataclass
class Source:
    """The expression text and which option it came from, for error messages."""

    text: str
    where: str

    def error(self, message: str, column: int | None) -> AqSyntaxError:
        if column is None:
            return AqSyntaxError(f"{self.where}: {message} in {self.text!r}")
        caret = " " * (column - 1) + "^"
        return AqSyntaxError(
            f"{self.where}: {message} at position {column} of the expression\n"
            f"  {self.text}\n  {caret}"
        )


def parse(text: str, where: str) -> Tree:
    src = Source(text, where)
    try:
        return parser().parse(text)
    except UnexpectedCharacters as exc:
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


def lit_int(value: int) -> Typed:
    return Typed(pl.lit(value, dtype=pl.Int64), "I", value)


def lit_float(value: float) -> Typed:
    return Typed(pl.lit(value, dtype=pl.Float64), "F", value)


def lit_str(value: str) -> Typed:
    return Typed(pl.lit(value, dtype=pl.String), "S", value)


def truthy(value: Typed) -> pl.Expr:
    """Boolean conversion of a lone operand: non-blank string, non-zero number or IP."""
    if value.kind == "B":
        return value.expr
    if value.kind == "S":
        return value.expr != ""
    if value.kind == "IP":
        return (value.expr != "") & (value.expr != "0.0.0.0")
    return value.expr != 0


def as_number(value: Typed) -> Typed:
    if value.kind == "B":
        return Typed(value.expr.cast(pl.Int64), "I")
    return value


def float_div(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """IEEE division. Polars rewrites `x / scalar` (a literal, or a column that holds one value
    such as a -var) as `x * (1/scalar)`, which differs from C (3 / 2.5 gives 1.2000000000000002);
    dividing two materialised Series is exact, so do that."""
    # the row index forces full-length fields even when both operands are scalars
    pair = pl.struct(a.alias("a"), b.alias("b"), pl.int_range(pl.len()).alias("i"))
    return pair.map_batches(
        lambda s: s.struct.field("a") / s.struct.field("b"), return_dtype=pl.Float64
    )


def c_div(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """C integer division (truncates toward zero); division by zero gives 0 [AMBIGUOUS]."""
    q = a // b
    fix = ((a % b) != 0) & ((a < 0) != (b < 0))
    return pl.when(b == 0).then(0).otherwise(pl.when(fix).then(q + 1).otherwise(q))


def c_mod(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    return pl.when(b == 0).then(0).otherwise(a - b * c_div(a, b))


@dataclass
class Compiler:
    """Compile one parsed expression against a scope."""

    scope: Scope
    src: Source
    side_effects: list[tuple[str, Typed]] = field(default_factory=list)

    def error(self, message: str, node: Tree | Token | None) -> AqSyntaxError:
        return self.src.error(message, _column(node))

    def compile(self, node: Tree | Token) -> Typed:
        if isinstance(node, Token):  # pragma: no cover - every token is wrapped by a rule
            raise self.error(f"unexpected {node.value!r}", node)
        method = getattr(self, f"_{node.data}", None)
        if method is None:  # pragma: no cover
            raise self.error(f"unsupported construct {node.data}", node)
        result: Typed = method(node)
        return result

    # ---------------------------------------------------------------- leaves
    def _number(self, node: Tree) -> Typed:
        text = str(node.children[0])
        if any(c in text for c in ".eE"):
            return lit_float(float(text))
        return lit_int(int(text))

    def _string(self, node: Tree) -> Typed:
        return lit_str(decode_strings(str(node.children[0])))

    def _ip(self, node: Tree) -> Typed:
        text = str(node.children[0])
        return Typed(pl.lit(text, dtype=pl.String), "IP", text)

    def _special(self, node: Tree) -> Typed:
        tok = node.children[0]
        found = self.scope.special(str(tok)[1:].lower())
        if found is None:
            raise self.error(f"unknown variable {tok}", tok)
        return found

    def _name(self, node: Tree) -> Typed:
        tok = node.children[0]
        found = self.scope.column(str(tok))
        if found is None:
            raise self.error(f"unknown column {str(tok)!r}", tok)
        return found

    # ---------------------------------------------------------------- operators
    def _neg(self, node: Tree) -> Typed:
        value = as_number(self.compile(node.children[1]))
        if value.kind not in NUMERIC:
            raise self.error("unary minus needs a number", node)
        const = -value.const if isinstance(value.const, int | float) else None
        return Typed(-value.expr, value.kind, const)

    def _not_(self, node: Tree) -> Typed:
        return Typed(~truthy(self.compile(node.children[1])), "B")

    def _conj(self, node: Tree) -> Typed:
        return self._logic(node, lambda a, b: a & b)

    def _disj(self, node: Tree) -> Typed:
        return self._logic(node, lambda a, b: a | b)

    def _logic(self, node: Tree, op: object) -> Typed:
        parts = [truthy(self.compile(c)) for c in node.children[::2]]
        result = parts[0]
        for part in parts[1:]:
            result = op(result, part)  # type: ignore[operator]
        return Typed(result, "B")

    def _arith(self, node: Tree) -> Typed:
        acc = self.compile(node.children[0])
        for i in range(1, len(node.children), 2):
            op = node.children[i]
            right = self.compile(node.children[i + 1])
            acc = self.binary(str(op), acc, right, op)
        return acc

    def binary(self, op: str, left: Typed, right: Typed, tok: Token | Tree) -> Typed:
        if left.kind == "S" or right.kind == "S":
            if op == "+" and left.kind == right.kind == "S":
                const = left.const + right.const if isinstance(left.const, str) and isinstance(
                    right.const, str) else None  # fmt: skip
                return Typed(pl.concat_str([left.expr, right.expr]), "S", const)
            raise self.error(
                f"type mismatch: {left.kind} {op} {right.kind} (strings only support + with "
                "strings; use ToS()/ToI()/ToF() to convert)",
                tok,
            )
        if left.kind == "IP" or right.kind == "IP":
            raise self.error(f"type mismatch: arithmetic {op!r} on an IP address", tok)
        left, right = as_number(left), as_number(right)
        if left.kind == "F" or right.kind == "F":
            a, b = left.expr.cast(pl.Float64), right.expr.cast(pl.Float64)
            if op in "&|^":
                raise self.error(f"type mismatch: bitwise {op!r} needs integers", tok)
            if op in "/%":
                quotient = float_div(a, b)
                if op == "/":
                    return Typed(quotient, "F")
                return Typed(a - b * quotient.cast(pl.Int64, strict=False).cast(pl.Float64), "F")
            expr = {"+": a + b, "-": a - b, "*": a * b}[op]
            return Typed(expr, "F")
        a, b = left.expr.cast(pl.Int64), right.expr.cast(pl.Int64)
        ops = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
               "/": lambda: c_div(a, b), "%": lambda: c_mod(a, b), "&": lambda: a & b,
               "|": lambda: a | b, "^": lambda: a ^ b}  # fmt: skip
        return Typed(ops[op]().cast(pl.Int64), "I")

    def _comparison(self, node: Tree) -> Typed:
        left = self.compile(node.children[0])
        tok = node.children[1]
        right = self.compile(node.children[2])
        return Typed(self.compare(str(tok), left, right, tok), "B")

    def compare(self, op: str, left: Typed, right: Typed, tok: Token | Tree) -> pl.Expr:
        kinds = {left.kind, right.kind}
        a, b = left.expr, right.expr
        if "S" in kinds or "IP" in kinds:
            if not kinds <= {"S", "IP"}:
                raise self.error(f"type mismatch: cannot compare {left.kind} with {right.kind}",
                                 tok)  # fmt: skip
            if op.startswith("~") or op == "!~=":
                a, b = a.str.to_lowercase(), b.str.to_lowercase()
                op = op.replace("~", "")
            if "&" in op:
                raise self.error(f"type mismatch: {op!r} needs numbers", tok)
        else:
            if "~" in op:
                raise self.error(f"type mismatch: {op!r} needs strings", tok)
            left, right = as_number(left), as_number(right)
            if "&" in op:
                if left.kind != "I" or right.kind != "I":
                    raise self.error(f"type mismatch: {op!r} needs integers", tok)
                masked = a.cast(pl.Int64) & b.cast(pl.Int64)
                if op == "&=":
                    return masked == b
                if op == "!&=":
                    return masked != b
                return masked == 0  # "!&"
            if left.kind != right.kind:
                a, b = a.cast(pl.Float64), b.cast(pl.Float64)
        result = {"==": lambda: a == b, "!=": lambda: a != b, ">": lambda: a > b,
                  "<": lambda: a < b, ">=": lambda: a >= b, "<=": lambda: a <= b,
                  "!=~": lambda: a != b}[op]()  # fmt: skip
        return result

    # ---------------------------------------------------------------- functions
    def _call(self, node: Tree) -> Typed:
        from ess.aq.functions import call

        name_tok = node.children[0]
        args = [c for c in node.children[1:] if c is not None]
        return call(self, str(name_tok), args, node)


def _column(node: Tree | Token | None) -> int | None:
    if node is None:
        return None
    if isinstance(node, Token):
        return node.column
    meta = node.meta
    return None if meta.empty else meta.column


def compile_expr(text: str, scope: Scope, where: str) -> tuple[Typed, list[tuple[str, Typed]]]:
    """Parse and compile; returns the value and any column writes made by functions (RxMap...)."""
    tree = parse(text, where)
    comp = Compiler(scope, Source(text, where))
    return comp.compile(tree), comp.side_effects

"""The aq expression language: parse with the one lark grammar, type-check, compile to Polars.

Typing follows Essentia: a value is a string (S), an integer (I, held as Int64), a float (F),
an IP address (IP) or, for comparisons and logical operators, a boolean (B). Integer-only
arithmetic stays integral (C division and remainder); any float operand makes it double.
Strings and numbers never mix implicitly. Type errors are reported at compile time with the
position of the offending token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from ess.aq.syntax import Source, Token, Tree, decode_strings, node_column, parse
from ess.aq.values import (
    NUMERIC,
    Scope,
    Typed,
    as_number,
    lit_float,
    lit_int,
    lit_str,
    to_i64,
    truthy,
)  # fmt: skip
from ess.errors import AqSyntaxError


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
class ExprCompiler:
    """Compile one parsed expression against a scope."""

    scope: Scope
    src: Source
    side_effects: list[tuple[str, Typed]] = field(default_factory=list)

    def error(self, message: str, node: Tree | Token | None) -> AqSyntaxError:
        return self.src.error(message, node_column(node))

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
        value = int(text)
        if value >= 2**64:
            raise self.error("integer constant out of the 64-bit range", node)
        # C: an unsigned 64-bit constant (an L value) above 2^63 is the int64_t it casts to
        return lit_int(value - 2**64 if value >= 2**63 else value)

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
        # integers negate as int64_t (an unsigned column has no `neg` in Polars)
        expr = -to_i64(value.expr) if value.kind == "I" else -value.expr
        return Typed(expr, value.kind, const)

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
        # C: 64-bit signed arithmetic; an L value above 2^63 wraps (like a C cast to int64_t)
        a, b = to_i64(left.expr), to_i64(right.expr)
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
                masked = to_i64(a) & to_i64(b)
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


def compile_expr(text: str, scope: Scope, where: str) -> tuple[Typed, list[tuple[str, Typed]]]:
    """Parse and compile; returns the value and any column writes made by functions (RxMap...)."""
    tree = parse(text, where)
    comp = ExprCompiler(scope, Source(text, where))
    return comp.compile(tree), comp.side_effects


__all__ = [
    "ExprCompiler", "Scope", "Source", "Typed", "as_number", "compile_expr", "decode_strings",
    "lit_float", "lit_int", "lit_str", "parse", "truthy",
]  # fmt: skip

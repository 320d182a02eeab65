"""Row-at-a-time reference interpreter of aq_pp rules (-eval, -filt, -if/-elif/-else, -o).

Deliberately naive and independent of the Polars compiler: it walks the same lark parse tree
with plain Python values, one row at a time. Used only as the oracle of differential tests.
"""

from __future__ import annotations

import math

from lark import Tree

from ess.aq.expr import decode_strings, parse
from ess.aq.rules import Eval, Filt, If, Output, Program, VarDef

INTS = {"I", "IS", "L", "LS"}


def c_div(a: int, b: int) -> int:
    if b == 0:
        return 0
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def evaluate(node: Tree, row: dict[str, object], types: dict[str, str]) -> object:
    kind = node.data
    if kind == "number":
        text = str(node.children[0])
        return float(text) if any(c in text for c in ".eE") else int(text)
    if kind == "string":
        return decode_strings(str(node.children[0]))
    if kind == "name":
        return row[str(node.children[0]).lower()]
    if kind == "neg":
        return -evaluate(node.children[1], row, types)  # type: ignore[operator]
    if kind == "not_":
        return not truthy(evaluate(node.children[1], row, types))
    if kind == "conj":
        return all(truthy(evaluate(c, row, types)) for c in node.children[::2])
    if kind == "disj":
        return any(truthy(evaluate(c, row, types)) for c in node.children[::2])
    if kind == "arith":
        acc = evaluate(node.children[0], row, types)
        for i in range(1, len(node.children), 2):
            acc = arith(str(node.children[i]), acc, evaluate(node.children[i + 1], row, types))
        return acc
    if kind == "comparison":
        a = evaluate(node.children[0], row, types)
        b = evaluate(node.children[2], row, types)
        op = str(node.children[1])
        if op.startswith("~") or op == "!~=":
            a, b = str(a).lower(), str(b).lower()
            op = op.replace("~", "")
        return {"==": a == b, "!=": a != b, ">": a > b, "<": a < b,  # type: ignore[operator]
                ">=": a >= b, "<=": a <= b}[op]  # type: ignore[operator]  # fmt: skip
    if kind == "call":
        name = str(node.children[0]).lower()
        args = [evaluate(c, row, types) for c in node.children[1:]]
        if name in ("min", "max"):
            if any(isinstance(a, float) for a in args):
                args = [float(a) for a in args]  # type: ignore[arg-type]
            return min(args) if name == "min" else max(args)  # type: ignore[type-var]
        if name == "tos":
            v = args[0]
            return f"{v:.17g}" if isinstance(v, float) else str(v)
        if name == "sleng":
            return len(str(args[0]).encode())
        if name == "abs":
            return abs(args[0])  # type: ignore[arg-type]
    raise NotImplementedError(kind)


def arith(op: str, a: object, b: object) -> object:
    if isinstance(a, bool):
        a = int(a)
    if isinstance(b, bool):
        b = int(b)
    if isinstance(a, str):
        return a + b  # type: ignore[operator]
    if isinstance(a, float) or isinstance(b, float):
        a, b = float(a), float(b)  # type: ignore[arg-type]
        if op == "/":
            if b == 0:
                return math.copysign(math.inf, a) * (1 if b >= 0 else -1) if a else math.nan
            return a / b
        if op == "%":
            return a - b * math.trunc(a / b) if b else math.nan
        return {"+": a + b, "-": a - b, "*": a * b}[op]
    a, b = int(a), int(b)  # type: ignore[call-overload]
    if op == "/":
        return c_div(a, b)
    if op == "%":
        return a - b * c_div(a, b) if b else 0
    return {"+": a + b, "-": a - b, "*": a * b, "&": a & b, "|": a | b, "^": a ^ b}[op]


def truthy(v: object) -> bool:
    if isinstance(v, str):
        return v != ""
    return bool(v)


def store(value: object, typ: str) -> object:
    if typ in INTS:
        v = int(value)  # type: ignore[call-overload]  # C cast truncates toward zero
        if typ == "I":
            return v & 0xFFFFFFFF
        if typ == "IS":  # 32-bit signed wrap-around, like a C cast
            v &= 0xFFFFFFFF
            return v - 2**32 if v >= 2**31 else v
        return v
    if typ == "F":
        return float(value)  # type: ignore[arg-type]
    return value


def fmt(value: object, typ: str) -> str:
    if typ == "F":
        return f"{value:.17g}"
    if typ == "S":
        return "" if value == "" else '"' + str(value).replace('"', '""') + '"'
    return str(value)


def run(prog: Program, rows: list[dict[str, object]], types: dict[str, str]) -> list[str]:
    """Process rows through the chain; returns the lines of the (single) output with title."""
    types = dict(types)
    order = list(types)
    out: list[str] = []
    defaults: dict[str, object] = {}
    variables: dict[str, object] = {}  # -var: one value for the whole run

    def declare(rules: list[object]) -> None:
        for rule in rules:
            if isinstance(rule, VarDef):
                name = rule.spec.name.lower()
                types[name] = rule.spec.typ
                variables[name] = store(float(rule.value), rule.spec.typ)
            if isinstance(rule, Eval) and not isinstance(rule.target, str) and rule.target:
                name = rule.target.name.lower()
                types[name] = rule.target.typ
                order.append(name)
                defaults[name] = "" if rule.target.typ == "S" else 0
            if isinstance(rule, If):
                for br in rule.branches:
                    declare([br.check, *br.body])
                declare(rule.orelse or [])

    declare(prog.chain)
    title = ",".join(f'"{n}"' for n in order)
    out.append(title)

    def apply(rules: list[object], row: dict[str, object]) -> bool:
        return all(step(rule, row) for rule in rules)

    def step(rule: object, row: dict[str, object]) -> bool:
        if isinstance(rule, Eval):
            name = (
                rule.target.name.lower()
                if not isinstance(rule.target, str)
                else rule.target.lower()
            )  # type: ignore[union-attr]
            value = store(evaluate(parse(rule.expr, "-eval"), {**row, **variables}, types),
                          types[name])  # fmt: skip
            (variables if name in variables else row)[name] = value
            return True
        if isinstance(rule, VarDef):
            return True
        if isinstance(rule, Filt):
            return truthy(evaluate(parse(rule.expr, "-filt"), {**row, **variables}, types))
        if isinstance(rule, If):
            for br in rule.branches:
                ok = step(br.check, row)
                if ok != br.negate:
                    return apply(br.body, row)
            return apply(rule.orelse or [], row)
        if isinstance(rule, Output):
            out.append(",".join(fmt(row[n], types[n]) for n in order))
            return True
        raise NotImplementedError(type(rule).__name__)

    chain = list(prog.chain)
    if not any(isinstance(r, Output) for r in chain):
        chain.append(Output("-", None))  # type: ignore[arg-type]
    for base in rows:
        row = {**defaults, **base}
        apply(chain, row)
    if prog.ovars:  # -ovar: one row of final variable values after the data rows
        out.append(",".join(f'"{n}"' for n in variables))
        out.append(",".join(fmt(v, types[n]) for n, v in variables.items()))
    return out

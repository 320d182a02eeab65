"""`-eval Var Expr` on a `-var` column: the running value as an ordered scan over each batch.

`Var + e`, `Var - e`, `Var * e`, `Max(Var, e)`, `Min(Var, e)` become cum_sum / cum_prod /
cum_max / cum_min of the increments, started from the value carried over from the previous
batch; `Var = e` (e without Var) holds the last assigned value. When nothing reads the per-row
values (only -ovar prints the final one), sums are totalled without building the scan.
"""

from __future__ import annotations

import polars as pl

from ess.aq import native
from ess.aq.builder import Builder
from ess.aq.colspec import polars_dtype
from ess.aq.expr import ExprCompiler, compile_expr
from ess.aq.plan import Col, RunState, Step
from ess.aq.rules import Eval
from ess.aq.syntax import Source, Tree, parse
from ess.aq.values import Typed, assign_value
from ess.errors import NotSupportedError


def var_update(b: Builder, col: Col, rule: Eval) -> None:
    if col.name in b.var_updates:
        raise NotSupportedError(f"updating variable {col.label!r} in more than one -eval")
    if col.name in b.var_reads:
        raise NotSupportedError(
            f"reading variable {col.label!r} before its -eval update in the chain"
        )
    b.var_updates.add(col.name)
    tree = parse(rule.expr, "-eval")
    scan, operand = scan_shape(tree, col.name)
    if scan is None:
        raise NotSupportedError(
            f"-eval {col.label} {rule.expr!r}: variable updates must have the form "
            "Var + Expr, Var - Expr, Var * Expr, Max(Var, Expr), Min(Var, Expr) or Expr"
        )
    value, _ = (
        compile_expr(rule.expr, b, "-eval")
        if operand is None
        else _compile_subtree(operand, b, rule.expr)
    )
    b.var_reads.discard(col.name)
    if col.typ != "F" and value.kind == "F" and scan in ("+", "-", "*"):
        raise NotSupportedError(f"float increments of integer variable {col.label!r}")
    inc = assign_value(value, col.typ, f"-eval {col.label}")
    name, typ, mask = col.name, col.typ, b.mask
    b.add_late(lambda row_reads: _scan_step(name, typ, scan, inc, mask, row_read=name in row_reads))


def _scan_step(
    name: str, typ: str, scan: str, inc: pl.Expr, mask: str | None, *, row_read: bool
) -> Step:
    dtype = polars_dtype(typ)

    def step(df: pl.DataFrame, st: RunState) -> pl.DataFrame:
        carry = st.carries[name]
        active = pl.lit(True) if mask is None else pl.col(mask)
        if scan == "=":
            ser = df.select(pl.when(active).then(inc).otherwise(None).alias(name)).to_series()
            ser = _broadcast(ser, df.height).forward_fill().fill_null(carry)
        else:
            neutral = 1 if scan == "*" else 0
            chosen = inc if mask is None else pl.when(active).then(inc).otherwise(neutral)
            incs = df.select(chosen.cast(dtype).alias(name)).to_series()
            if not row_read and scan in ("+", "-") and typ != "F":
                # only the running value is read (-ovar): integer sums need no scan
                total = int(incs.sum()) * (df.height if incs.len() == 1 else 1)
                st.carries[name] = int(carry) + (total if scan == "+" else -total)  # type: ignore[call-overload]
                return df
            incs = _broadcast(incs, df.height)
            if scan == "-":
                incs = -incs
            if not row_read and scan in ("+", "-"):
                # float total read only by -ovar: added in row order by C, no scan built
                end = native.sum_f64(incs.to_arrow(), float(carry))  # type: ignore[arg-type]
                if end is not None:
                    st.carries[name] = end
                    return df
            full = pl.concat([pl.Series(name, [carry], dtype=dtype), incs])
            ops = {"+": full.cum_sum, "-": full.cum_sum, "*": full.cum_prod,
                   "max": full.cum_max, "min": full.cum_min}  # fmt: skip
            ser = ops[scan]().slice(1)
        ser = ser.cast(dtype)
        if ser.len():
            st.carries[name] = ser[-1]
        return df.with_columns(ser.alias(name))

    return step


def _broadcast(ser: pl.Series, height: int) -> pl.Series:
    """A constant expression selects to one row; stretch it to the frame height."""
    if ser.len() == 1 and height != 1:
        return ser.new_from_index(0, height)
    return ser


def scan_shape(tree: object, var: str) -> tuple[str | None, object | None]:
    """Recognise `v + e`, `e + v`, `v - e`, `v * e`, `e * v`, `Max(v, e)`, `Min(v, e)`, `e`."""

    def is_var(node: object) -> bool:
        return (isinstance(node, Tree) and node.data == "name"
                and str(node.children[0]).lower() == var)  # fmt: skip

    def mentions(node: object) -> bool:
        if is_var(node):
            return True
        return isinstance(node, Tree) and any(mentions(c) for c in node.children)

    if not mentions(tree):
        return "=", None
    if isinstance(tree, Tree) and tree.data == "arith" and len(tree.children) == 3:
        left, op, right = tree.children
        op = str(op)
        if is_var(left) and not mentions(right) and op in "+-*":
            return op, right
        if is_var(right) and not mentions(left) and op in "+*":
            return op, left
    if isinstance(tree, Tree) and tree.data == "call" and len(tree.children) == 3:
        fname = str(tree.children[0]).lower()
        a, b = tree.children[1], tree.children[2]
        if fname in ("max", "min"):
            if is_var(a) and not mentions(b):
                return fname, b
            if is_var(b) and not mentions(a):
                return fname, a
    return None, None


def _compile_subtree(node: object, b: Builder, text: str) -> tuple[Typed, list[tuple[str, Typed]]]:
    ec = ExprCompiler(b, Source(text, "-eval"))
    return ec.compile(node), ec.side_effects  # type: ignore[arg-type]

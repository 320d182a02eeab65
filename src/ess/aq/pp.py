"""aq_pp: compile the rule list into steps over Polars frames and run them batch by batch.

Each input batch is a DataFrame; the chain of rules becomes a list of steps, each a function
frame → frame. A failing rule drops rows (`filter`); inside `-if` branches the rules run under a
boolean mask held in a hidden column, so a branch only changes the rows that took it, and
columns created in a branch hold 0 / "" elsewhere. Outputs write the frame as it is at their
position. Variables (`-var`) are per-row columns computed by ordered scans (cum_sum ...) whose
last value is carried to the next batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import polars as pl

from ess.aq import mapping, native, reader
from ess.aq.colspec import ColSpec, kind, polars_dtype
from ess.aq.expr import Typed, compile_expr, parse, truthy
from ess.aq.rules import (
    Alias,
    Const,
    Eval,
    Filt,
    If,
    Imp,
    Lookup,
    Map,
    MapC,
    MapF,
    Output,
    OutputAttrs,
    Program,
    VarDef,
)  # fmt: skip
from ess.aq.writer import OutCol, Sink, write_rows
from ess.errors import AqSyntaxError, NotSupportedError

if TYPE_CHECKING:
    from ess.aq.runner import Job

Step = Callable[[pl.DataFrame, "RunState"], pl.DataFrame]
ROWNUM = "__rownum"


@dataclass
class Col:
    name: str  # internal column name
    label: str
    typ: str
    is_var: bool = False


def default_value(typ: str) -> pl.Expr:
    if typ == "F":
        return pl.lit(0.0, dtype=pl.Float64)
    if typ in ("S", "IP"):
        return pl.lit("", dtype=pl.String)
    return pl.lit(0, dtype=polars_dtype(typ))


@dataclass
class RunState:
    carries: dict[str, object] = field(default_factory=dict)
    sinks: dict[str, Sink] = field(default_factory=dict)
    random_state: int = 1
    records: int = 0
    errors: int = 0
    out_rows: int = 0


class Compiler:
    """Turns a Program into steps; holds the column namespace as it evolves along the chain."""

    def __init__(self, prog: Program) -> None:
        self.prog = prog
        self.cols: dict[str, Col] = {}
        self.steps: list[Step] = []
        self.outputs: list[tuple[Output, list[OutCol]]] = []
        self.hidden = 0
        self.var_updates: set[str] = set()
        self.var_reads: set[str] = set()
        self.row_reads: set[str] = set()  # variables whose per-row values something reads
        self.rx_index = 0  # global capture numbering across -mapf,rx
        self.extracted: dict[str, str] = {}
        self.vars_init: dict[str, object] = {}
        self.mask_stack: list[str | None] = [None]
        self.uses_random = False
        self.uses_rownum = False  # $RowNum: the row-number column is only built when read
        # (-eval step, new column, columns it reads) of evals that may prove dead
        self.prunable: list[tuple[Step, str, set[str]]] = []
        self.used: set[str] = set()  # columns some rule or output reads (projection pushdown)

    # ------------------------------------------------------------ namespace
    def new_hidden(self, prefix: str) -> str:
        self.hidden += 1
        return f"__{prefix}{self.hidden}"

    def define(self, spec: ColSpec, *, is_var: bool = False) -> Col:
        key = spec.name.lower()
        if key in self.cols:
            raise AqSyntaxError(f"column {spec.name!r} is already defined")
        col = Col(key, spec.name, spec.typ, is_var)
        self.cols[key] = col
        return col

    def lookup(self, name: str, where: str) -> Col:
        col = self.cols.get(name.lower())
        if col is None:
            raise AqSyntaxError(f"{where}: unknown column {name!r}")
        self.used.add(col.name)
        return col

    # Scope protocol for expressions
    def column(self, name: str) -> Typed | None:
        col = self.cols.get(name.lower())
        if col is None:
            return None
        if col.is_var:
            self.var_reads.add(col.name)
            self.row_reads.add(col.name)
        self.used.add(col.name)
        return Typed(pl.col(col.name), kind(col.typ))

    def special(self, name: str) -> Typed | None:
        if name == "rownum":
            self.uses_rownum = True
            return Typed(pl.col(ROWNUM), "I")
        if name == "random":
            self.uses_random = True
            return Typed(pl.col("__random"), "I")
        if name in ("cursec", "curusec"):
            import time

            now = time.time()
            return Typed(pl.lit(int(now if name == "cursec" else now * 1e6 % 1e6)), "I")
        return None

    def assign(self, name: str, value: Typed) -> None:  # pragma: no cover - protocol only
        raise NotSupportedError("functions that write columns by name (Set)")

    @property
    def mask(self) -> str | None:
        return self.mask_stack[-1]

    # ------------------------------------------------------------ compile
    def compile(self) -> None:
        main = self.prog.main
        for item in main.columns:
            if isinstance(item, ColSpec) and not item.skip:
                self.define(item)
        for cat in self.prog.cats:
            for spec in cat.columns:
                if isinstance(spec, ColSpec) and not spec.skip:
                    existing = self.cols.get(spec.name.lower())
                    if existing is None:
                        self.define(spec)
                    elif kind(existing.typ) != kind(spec.typ):
                        raise AqSyntaxError(
                            f"-cat: column {spec.name!r} is {spec.typ} but {existing.typ} in -d"
                        )
        self.input_cols = [c for c in self.cols.values()]
        chain = list(self.prog.chain)
        has_output = bool(self.prog.ovars) or any(isinstance(r, Output | Imp) for r in _walk(chain))
        if not has_output:  # no -o, -c, -ovar or -imp: behave as if `-o -` ended the chain
            chain.append(Output("-", OutputAttrs()))
        for rule in chain:
            self.rule(rule)
        # dead columns: a new column that nothing reads or prints, computed by an expression
        # that cannot fail (no function call), has no effect on the output — skip computing it,
        # and the columns only it reads are not read at all
        live: set[int] = set()
        grown = True
        while grown:  # a live column keeps alive the prunable columns it reads
            grown = False
            for step, name, reads in self.prunable:
                if id(step) not in live and name in self.used:
                    live.add(id(step))
                    self.used |= reads
                    grown = True
        dead = {id(step) for step, _, _ in self.prunable} - live
        self.steps = [step for step in self.steps if id(step) not in dead]

    def rule(self, rule: object) -> None:
        if isinstance(rule, VarDef):
            col = self.define(rule.spec, is_var=True)
            self.vars_init[col.name] = _var_value(rule)
            typ = col.typ
            name = col.name
            self.steps.append(
                lambda df, st: df.with_columns(
                    pl.lit(st.carries[name], dtype=polars_dtype(typ)).alias(name)
                )
            )
        elif isinstance(rule, Eval):
            self.eval_rule(rule)
        elif isinstance(rule, Filt):
            cond = self.condition(rule)
            self.drop_unless(cond)
        elif isinstance(rule, Const):
            self.drop_unless(pl.lit(rule.value))
        elif isinstance(rule, If):
            self.if_rule(rule)
        elif isinstance(rule, Output):
            self.output_rule(rule)
        elif isinstance(rule, (MapF, Map, MapC)):
            ok = self.map_rule(rule)
            if ok is not None:
                self.drop_unless(ok)
        elif isinstance(rule, Lookup):
            ok = self.lookup_rule(rule)
            if ok is not None:
                self.drop_unless(ok)
        elif isinstance(rule, Alias):
            col = self.lookup(rule.col, "-renam" if rule.rename else "-alias")
            if rule.alt.lower() in self.cols:
                raise AqSyntaxError(f"-alias/-renam: name {rule.alt!r} is already in use")
            if rule.rename:
                del self.cols[rule.col.lower()]
                col.label = rule.alt
            self.cols[rule.alt.lower()] = col
        elif isinstance(rule, Imp):
            self.used.update(c.name for c in self.cols.values())
            self.row_reads.update(c.name for c in self.cols.values() if c.is_var)
            self.steps.append(_imp_step(self, rule))
        else:  # pragma: no cover
            raise NotSupportedError(f"aq_pp rule {type(rule).__name__}")

    def active(self) -> pl.Expr:
        return pl.lit(True) if self.mask is None else pl.col(self.mask)

    def drop_unless(self, ok: pl.Expr) -> None:
        keep = ok if self.mask is None else (~pl.col(self.mask) | ok)
        self.steps.append(lambda df, st: df.filter(keep.fill_null(False)))

    def condition(self, rule: Filt) -> pl.Expr:
        value, effects = compile_expr(rule.expr, self, "-filt")
        if effects:
            raise NotSupportedError("column-writing functions inside -filt")
        return truthy(value)

    # ------------------------------------------------------------ -eval and variables
    def eval_rule(self, rule: Eval) -> None:
        where = "-eval"
        if rule.target is None:  # only the column writes of functions (RxMap ...) matter
            self.apply_effects(compile_expr(rule.expr, self, where)[1])
            return
        reads: set[str] = set()
        if isinstance(rule.target, ColSpec):
            if rule.target.name.lower() in self.cols:
                raise AqSyntaxError(f"-eval: column {rule.target.name!r} is already defined")
            # what the expression reads is kept aside: if the new column turns out dead, its
            # inputs need not be read either (see compile)
            outer, self.used = self.used, set()
            try:
                value, effects = compile_expr(rule.expr, self, where)
            finally:
                reads, self.used = self.used, outer
            self.apply_effects(effects)
            col = self.define(rule.target)
            new = True
        else:
            col = self.lookup(rule.target, where)
            if col.is_var:
                self.var_update(col, rule)
                return
            value, effects = compile_expr(rule.expr, self, where)
            self.apply_effects(effects)
            new = False
        converted = assign_value(value, col.typ, f"-eval {col.label}")
        name, mask = col.name, self.mask
        if mask is None:

            def step(df: pl.DataFrame, st: RunState) -> pl.DataFrame:
                # a null is a processing error (e.g. DateToTime on a bad date): row dropped
                out = df.with_columns(converted.alias(name))
                if out.get_column(name).null_count():  # O(1): most batches copy nothing
                    out = out.filter(pl.col(name).is_not_null())
                return out

            self.steps.append(step)
            if new and not effects and _no_call(rule.expr):
                self.prunable.append((step, name, reads))
            else:
                self.used |= reads
            return
        self.used |= reads
        fallback = default_value(col.typ) if new else pl.col(name)
        expr = pl.when(pl.col(mask)).then(converted).otherwise(fallback)
        expr = expr.fill_null(default_value(col.typ))
        self.steps.append(lambda df, st: df.with_columns(expr.alias(name)))

    def apply_effects(self, effects: list[tuple[str, Typed]]) -> None:
        """Columns written by functions, under the current branch mask."""
        for name, value in effects:
            col = next(c for c in self.cols.values() if c.name == name)
            self.used.add(col.name)
            self.set_masked(col, value.expr, False)

    def var_update(self, col: Col, rule: Eval) -> None:
        if col.name in self.var_updates:
            raise NotSupportedError(f"updating variable {col.label!r} in more than one -eval")
        if col.name in self.var_reads:
            raise NotSupportedError(
                f"reading variable {col.label!r} before its -eval update in the chain"
            )
        self.var_updates.add(col.name)
        tree = parse(rule.expr, "-eval")
        scan, operand = _scan_shape(tree, col.name)
        if scan is None:
            raise NotSupportedError(
                f"-eval {col.label} {rule.expr!r}: variable updates must have the form "
                "Var + Expr, Var - Expr, Var * Expr, Max(Var, Expr), Min(Var, Expr) or Expr"
            )
        value, _ = (
            compile_expr(rule.expr, self, "-eval")
            if operand is None
            else _compile_subtree(operand, self, rule.expr)
        )
        self.var_reads.discard(col.name)
        if col.typ != "F" and value.kind == "F" and scan in ("+", "-", "*"):
            raise NotSupportedError(f"float increments of integer variable {col.label!r}")
        inc = assign_value(value, col.typ, f"-eval {col.label}")
        name, typ, mask = col.name, col.typ, self.mask

        def step(df: pl.DataFrame, st: RunState) -> pl.DataFrame:
            carry = st.carries[name]
            active = pl.lit(True) if mask is None else pl.col(mask)
            dtype = polars_dtype(typ)
            if scan == "=":
                ser = df.select(pl.when(active).then(inc).otherwise(None).alias(name)).to_series()
                ser = _broadcast(ser, df.height).forward_fill().fill_null(carry)
            else:
                neutral = 1 if scan == "*" else 0
                chosen = inc if mask is None else pl.when(active).then(inc).otherwise(neutral)
                incs = df.select(chosen.cast(dtype).alias(name)).to_series()
                if name not in self.row_reads and scan in ("+", "-") and typ != "F":
                    # only the running value is read (-ovar): integer sums need no scan
                    total = int(incs.sum()) * (df.height if incs.len() == 1 else 1)
                    st.carries[name] = int(carry) + (total if scan == "+" else -total)  # type: ignore[call-overload]
                    return df
                incs = _broadcast(incs, df.height)
                if scan == "-":
                    incs = -incs
                if name not in self.row_reads and scan in ("+", "-"):
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

        self.steps.append(step)

    # ------------------------------------------------------------ -if / -elif / -else
    def if_rule(self, rule: If) -> None:
        outer = self.mask
        taken = self.new_hidden("taken")
        self.steps.append(lambda df, st: df.with_columns(pl.lit(False).alias(taken)))
        for branch in rule.branches:
            ok = self.check(branch.check)
            if branch.negate:
                ok = ~ok
            bmask = self.new_hidden("branch")
            base = ~pl.col(taken) if outer is None else (pl.col(outer) & ~pl.col(taken))
            cond = base & ok.fill_null(False)
            self.steps.append(_branch_step(cond, bmask, taken))
            self.mask_stack.append(bmask)
            for sub in branch.body:
                self.rule(sub)
            self.mask_stack.pop()
        if rule.orelse is not None:
            emask = self.new_hidden("else")
            base = ~pl.col(taken) if outer is None else (pl.col(outer) & ~pl.col(taken))
            self.steps.append(lambda df, st: df.with_columns(base.alias(emask)))
            self.mask_stack.append(emask)
            for sub in rule.orelse:
                self.rule(sub)
            self.mask_stack.pop()

    def check(self, rule: object) -> pl.Expr:
        """Success of a rule in -if/-elif position; it never drops rows."""
        if isinstance(rule, Filt):
            return self.condition(rule)
        if isinstance(rule, Const):
            return pl.lit(rule.value)
        if isinstance(rule, (MapF, Map, MapC)):
            ok = self.map_rule(rule)
            return pl.lit(True) if ok is None else ok
        if isinstance(rule, Lookup):
            ok = self.lookup_rule(rule)
            return pl.lit(True) if ok is None else ok
        self.rule(rule)
        return pl.lit(True)

    # ------------------------------------------------------------ outputs
    def out_columns(self, names: list[str] | None, where: str, *, variables: bool) -> list[OutCol]:
        seen: list[Col] = []
        for c in self.cols.values():
            if c.is_var == variables and c not in seen:
                seen.append(c)
        if names is None or "*" in names or any(n.startswith(("~", "!")) for n in names):
            self.used.update(c.name for c in seen)
        if names is None:
            return [OutCol(c.name, c.label, c.typ) for c in seen]
        out: list[OutCol] = []
        for raw in names:
            if raw == "*":
                out.extend(OutCol(c.name, c.label, c.typ) for c in seen)
                continue
            if raw.startswith(("~", "!")):
                if not out:
                    out.extend(OutCol(c.name, c.label, c.typ) for c in seen)
                drop = self.lookup(raw[1:], where).name
                out = [o for o in out if o.name != drop]
                continue
            if "+" in raw or raw.startswith("^"):
                raise NotSupportedError(f"{where}: output format modifiers ({raw!r})")
            name, _, label = raw.partition(":")
            col = self.lookup(name, where)
            if col.is_var and not variables:
                self.row_reads.add(col.name)
            out.append(OutCol(col.name, label or (col.label if name.lower() == col.name else
                                                  name), col.typ))  # fmt: skip
        return out

    def output_rule(self, rule: Output) -> None:
        cols = self.out_columns(rule.columns, f"-o {rule.path}", variables=False)
        self.outputs.append((rule, cols))
        mask = self.mask

        def step(df: pl.DataFrame, st: RunState) -> pl.DataFrame:
            rows = df if mask is None else df.filter(pl.col(mask))
            write_rows(rows, cols, rule.attrs, st.sinks[rule.path])
            st.out_rows += rows.height
            return df

        self.steps.append(step)

    # ------------------------------------------------------------ mapping
    def map_rule(self, rule: MapF | Map | MapC) -> pl.Expr | None:
        if isinstance(rule, MapC):
            pieces = mapping.parse_mapto(rule.template)
            value = mapping.render(pieces, self.extracted, rule.template)
            target = rule.target
            if isinstance(target, ColSpec):
                col = self.define(target)
                new = True
            else:
                col, new = self.lookup(target, "-mapc"), False
            if col.typ != "S":
                raise AqSyntaxError(f"-mapc: target {col.label!r} must be a string column")
            self.set_masked(col, value, new)
            return None
        col = self.lookup(rule.col, f"-{type(rule).__name__.lower()}")
        if col.typ != "S":
            raise AqSyntaxError(f"-map/-mapf: column {col.label!r} must be a string column")
        ncas = any(a.lower() == "ncas" for a in rule.attrs)
        if mapping.is_regex(rule.attrs):
            first = self.rx_index if isinstance(rule, MapF) else 0
            mf = mapping.rx_mapfrom(rule.pattern, rule.attrs, first)
            if isinstance(rule, MapF):
                self.rx_index += len(mf.names)
        else:
            mf = mapping.rt_mapfrom(rule.pattern, ncas=ncas)
        groups = pl.col(col.name).str.extract_groups(mf.regex)
        hit = self.new_hidden("hit")
        local: dict[str, str] = {}
        exprs = [pl.col(col.name).str.contains(mf.regex).alias(hit)]
        for i, name in enumerate(mf.names):
            if not name:
                continue
            hidden = f"__mv_{name}" if isinstance(rule, MapF) else self.new_hidden("mv")
            local[name] = hidden
            exprs.append(groups.struct[i].fill_null("").alias(hidden))
        mask = self.mask
        self.steps.append(lambda df, st: df.with_columns(exprs))
        if isinstance(rule, MapF):
            self.extracted.update(local)
        else:
            value = mapping.render(mapping.parse_mapto(rule.template), local, rule.template)
            name = col.name
            active = pl.col(hit) if mask is None else (pl.col(hit) & pl.col(mask))
            self.steps.append(
                lambda df, st: df.with_columns(
                    pl.when(active).then(value).otherwise(pl.col(name)).alias(name)
                )
            )
        return pl.col(hit)

    def set_masked(self, col: Col, value: pl.Expr, new: bool) -> None:
        mask, name = self.mask, col.name
        if mask is not None:
            fallback = default_value(col.typ) if new else pl.col(name)
            value = pl.when(pl.col(mask)).then(value).otherwise(fallback)
        self.steps.append(lambda df, st: df.with_columns(value.alias(name)))

    # ------------------------------------------------------------ lookups
    def lookup_rule(self, rule: Lookup) -> pl.Expr | None:
        from ess.aq.lookup import compile_lookup

        return compile_lookup(self, rule)


def _no_call(text: str) -> bool:
    """True when an expression calls no function (so it cannot fail at run time)."""
    tree = parse(text, "-eval")
    return not any(True for _ in tree.find_data("call"))


def _branch_step(cond: pl.Expr, bmask: str, taken: str) -> Step:
    def step(df: pl.DataFrame, st: RunState) -> pl.DataFrame:
        df = df.with_columns(cond.alias(bmask))
        return df.with_columns((pl.col(taken) | pl.col(bmask)).alias(taken))

    return step


def _broadcast(ser: pl.Series, height: int) -> pl.Series:
    """A constant expression selects to one row; stretch it to the frame height."""
    if ser.len() == 1 and height != 1:
        return ser.new_from_index(0, height)
    return ser


def _walk(rules: list[object]) -> Iterator[object]:
    for rule in rules:
        yield rule
        if isinstance(rule, If):
            for br in rule.branches:
                yield br.check
                yield from _walk(br.body)
            yield from _walk(rule.orelse or [])


def _imp_step(comp: Compiler, rule: Imp) -> Step:
    """`-imp`: hand the visible columns (by current name) to the UDB (ess.udb.imp)."""
    from ess.udb.imp import imp_step

    cols = {name: col.name for name, col in comp.cols.items()}
    return imp_step(rule.target, rule.attrs, cols, ddef=comp.prog.ddef, mask=comp.mask)


def _var_value(rule: VarDef) -> object:
    text = rule.value
    typ = rule.spec.typ
    if typ in ("S", "IP"):
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
            from ess.aq.expr import decode_strings

            return decode_strings(text)
        return text
    try:
        return float(text) if typ == "F" else int(float(text)) if "." in text else int(text)
    except ValueError:
        raise AqSyntaxError(f"-var {rule.spec.name}: bad initial value {text!r}") from None


def _scan_shape(tree: object, var: str) -> tuple[str | None, object | None]:
    """Recognise `v + e`, `e + v`, `v - e`, `v * e`, `e * v`, `Max(v, e)`, `Min(v, e)`, `e`."""
    from lark import Tree

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


def _compile_subtree(
    node: object, comp: Compiler, text: str
) -> tuple[Typed, list[tuple[str, Typed]]]:
    from ess.aq.expr import Compiler as ExprCompiler
    from ess.aq.expr import Source

    ec = ExprCompiler(comp, Source(text, "-eval"))
    return ec.compile(node), ec.side_effects  # type: ignore[arg-type]


def assign_value(value: Typed, typ: str, where: str) -> pl.Expr:
    """Convert a value for storage in a column of type `typ` (spec 1.3)."""
    k = value.kind
    if typ == "S":
        if k != "S":
            raise AqSyntaxError(f"{where}: type mismatch: cannot store {k} in a string column "
                                "(use ToS())")  # fmt: skip
        return value.expr
    if typ == "IP":
        if k not in ("IP", "S"):
            raise AqSyntaxError(f"{where}: type mismatch: cannot store {k} in an IP column")
        return value.expr
    if k in ("S", "IP"):
        raise AqSyntaxError(f"{where}: type mismatch: cannot store {k} in a {typ} column "
                            "(use ToI()/ToF())")  # fmt: skip
    expr = value.expr
    if k == "B":
        expr = expr.cast(pl.Int64)
    if typ == "F":
        return expr.cast(pl.Float64)
    if k == "F":  # C cast: truncation toward zero
        expr = expr.cast(pl.Int64, strict=False)
    return reader.wrap_int(expr, typ).cast(polars_dtype(typ))


# ---------------------------------------------------------------- running


def compile_program(prog: Program) -> Job:
    from ess.aq.runner import Job

    comp = Compiler(prog)
    comp.compile()
    return Job(prog, comp)

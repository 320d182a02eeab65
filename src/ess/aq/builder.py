"""Compile-time state of aq_pp's rule compiler: the column namespace and the steps so far.

The Builder is what rule handlers (ess.aq.pp, ess.aq.lookup, ess.aq.varscan) extend, and the
scope expressions are compiled against. `finish()` freezes it into a Plan: after that the
steps never look back at the Builder.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import polars as pl

from ess.aq.colspec import ColSpec, kind
from ess.aq.plan import ROWNUM, Col, Plan, Step
from ess.aq.rules import Output, Program
from ess.aq.values import Typed, default_value
from ess.aq.writer import OutCol
from ess.errors import AqSyntaxError, NotSupportedError

#: a step whose shape depends on what the rest of the chain reads: built by finish()
LateStep = Callable[[frozenset[str]], Step]


class Builder:
    """The column namespace as it evolves along the chain, and the steps built so far."""

    def __init__(self, prog: Program) -> None:
        self.prog = prog
        self.cols: dict[str, Col] = {}
        self.input_cols: list[Col] = []
        self.steps: list[Step] = []
        self.labels: list[str] = []  # the rule of each step, for run-time errors
        self.late: dict[int, LateStep] = {}  # step index -> builder given the final row_reads
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
        self.uses_rownum = False
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

    def declare_inputs(self) -> None:
        """The columns of -d and -cat (the same name in both must have the same kind)."""
        for item in self.prog.main.columns:
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
        self.input_cols = list(self.cols.values())

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
            now = time.time()
            return Typed(pl.lit(int(now if name == "cursec" else now * 1e6 % 1e6)), "I")
        return None

    def assign(self, name: str, value: Typed) -> None:  # pragma: no cover - protocol only
        raise NotSupportedError("functions that write columns by name (Set)")

    # ------------------------------------------------------------ masks and writes
    @property
    def mask(self) -> str | None:
        return self.mask_stack[-1]

    def drop_unless(self, ok: pl.Expr) -> None:
        keep = ok if self.mask is None else (~pl.col(self.mask) | ok)
        self.steps.append(lambda df, st: df.filter(keep.fill_null(False)))

    def set_masked(self, col: Col, value: pl.Expr, new: bool) -> None:
        mask, name = self.mask, col.name
        if mask is not None:
            fallback = default_value(col.typ) if new else pl.col(name)
            value = pl.when(pl.col(mask)).then(value).otherwise(fallback)
        self.steps.append(lambda df, st: df.with_columns(value.alias(name)))

    def apply_effects(self, effects: list[tuple[str, Typed]]) -> None:
        """Columns written by functions, under the current branch mask."""
        for name, value in effects:
            col = next(c for c in self.cols.values() if c.name == name)
            self.used.add(col.name)
            self.set_masked(col, value.expr, False)

    def add_late(self, build: LateStep) -> None:
        """A step that needs the final `row_reads` (known only once the chain is compiled)."""
        self.late[len(self.steps)] = build
        self.steps.append(_placeholder)

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
            if variables and not col.is_var:  # -ovar prints the values at the end of the run
                raise AqSyntaxError(f"{where}: column {name!r} is not a -var variable")
            if col.is_var and not variables:
                self.row_reads.add(col.name)
            out.append(OutCol(col.name, label or (col.label if name.lower() == col.name else
                                                  name), col.typ))  # fmt: skip
        return out

    def label_steps(self, label: str) -> None:
        """Name the rule of the steps added since the last call."""
        self.labels.extend([label] * (len(self.steps) - len(self.labels)))

    # ------------------------------------------------------------ the end
    def finish(self) -> Plan:
        """Build the late steps, drop dead columns, and freeze everything into a Plan."""
        row_reads = frozenset(self.row_reads)
        for index, build in self.late.items():
            self.steps[index] = build(row_reads)
        self.prune()
        used = frozenset(self.used)  # before -ovar's columns: those are not input to read
        ovars = tuple(
            (rule, tuple(self.out_columns(rule.columns, "-ovar", variables=True)))
            for rule in self.prog.ovars
        )
        return Plan(
            prog=self.prog,
            steps=tuple(self.steps),
            labels=tuple(self.labels),
            outputs=tuple((rule, tuple(cols)) for rule, cols in self.outputs),
            ovars=ovars,
            input_cols=tuple(self.input_cols),
            used=used,
            vars_init=dict(self.vars_init),
            uses_rownum=self.uses_rownum,
            uses_random=self.uses_random,
        )

    def prune(self) -> None:
        """Dead columns: a new column that nothing reads or prints, computed by an expression
        that cannot fail (no function call), has no effect on the output — skip computing it,
        and the columns only it reads are not read at all."""
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
        self.label_steps("")
        kept = [(s, label) for s, label in zip(self.steps, self.labels, strict=True)
                if id(s) not in dead]  # fmt: skip
        self.steps = [s for s, _ in kept]
        self.labels = [label for _, label in kept]


def _placeholder(df: pl.DataFrame, st: object) -> pl.DataFrame:  # pragma: no cover
    raise AssertionError("a late step was not built")

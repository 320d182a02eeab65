"""aq_pp: compile the rule list into a Plan of steps over Polars frames.

Each input batch is a DataFrame; the chain of rules becomes a list of steps, each a function
frame → frame. A failing rule drops rows (`filter`); inside `-if` branches the rules run under a
boolean mask held in a hidden column, so a branch only changes the rows that took it, and
columns created in a branch hold 0 / "" elsewhere. Outputs write the frame as it is at their
position. Variables (`-var`) are per-row columns computed by ordered scans (cum_sum ...) whose
last value is carried to the next batch (ess.aq.varscan).

`compile(prog)` dispatches on the rule types (`compile_rule`, and `check_rule` for a rule in
`-if` position); the runner (ess.aq.runner) only sees the resulting Plan.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import polars as pl

from ess.aq import failures, mapping, sinks
from ess.aq.builder import Builder
from ess.aq.colspec import ColSpec, polars_dtype
from ess.aq.expr import compile_expr
from ess.aq.plan import Plan, RunState, Step
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
from ess.aq.runner import Job
from ess.aq.syntax import decode_strings, parse
from ess.aq.values import assign_value, default_value, truthy, wrap_constant
from ess.aq.varscan import var_update
from ess.aq.writer import write_rows
from ess.errors import AqSyntaxError, NotSupportedError


def compile(prog: Program) -> Plan:
    """The Plan of an aq_pp command line."""
    b = Builder(prog)
    b.declare_inputs()
    chain = list(prog.chain)
    if not (prog.ovars or any(isinstance(r, Output | Imp) for r in walk(chain))):
        chain.append(Output("-", OutputAttrs()))  # no -o, -c, -ovar or -imp: as if `-o -`
    for rule in chain:
        compile_checked(rule, b)
    return b.finish()


def compile_checked(rule: object, b: Builder) -> None:
    """`compile_rule`, with a Polars error on a constant or pattern of the rule (an integer
    too large, a bad regex) reported as the rule's syntax error, and its steps labelled with
    the rule for the errors they may raise at run time (ess.aq.runner)."""
    label = failures.describe(rule)
    try:
        compile_rule(rule, b)
    except failures.VALUE_ERRORS as exc:
        raise AqSyntaxError(f"{label}: {failures.message(exc)}") from None
    except AqSyntaxError as exc:
        if str(exc).startswith("-"):  # names its option already (expression errors)
            raise
        raise AqSyntaxError(f"{label}: {exc}") from None
    b.label_steps(label)


# ---------------------------------------------------------------- rules in the chain


@functools.singledispatch
def compile_rule(rule: object, b: Builder) -> None:  # pragma: no cover
    raise NotSupportedError(f"aq_pp rule {type(rule).__name__}")


@compile_rule.register
def _(rule: VarDef, b: Builder) -> None:
    col = b.define(rule.spec, is_var=True)
    b.vars_init[col.name] = _var_value(rule)
    name, dtype = col.name, polars_dtype(col.typ)
    b.steps.append(
        lambda df, st: df.with_columns(pl.lit(st.carries[name], dtype=dtype).alias(name))
    )


@compile_rule.register
def _(rule: Filt, b: Builder) -> None:
    b.drop_unless(condition(rule, b))


@compile_rule.register
def _(rule: Const, b: Builder) -> None:
    b.drop_unless(pl.lit(rule.value))


@compile_rule.register(Map)
@compile_rule.register(MapF)
@compile_rule.register(MapC)
@compile_rule.register(Lookup)
def _(rule: Map | MapF | MapC | Lookup, b: Builder) -> None:
    ok = check_rule(rule, b)
    if ok is not None:
        b.drop_unless(ok)


@compile_rule.register
def _(rule: Alias, b: Builder) -> None:
    col = b.lookup(rule.col, "-renam" if rule.rename else "-alias")
    if rule.alt.lower() in b.cols:
        raise AqSyntaxError(f"-alias/-renam: name {rule.alt!r} is already in use")
    if rule.rename:
        del b.cols[rule.col.lower()]
        col.label = rule.alt
    b.cols[rule.alt.lower()] = col


@compile_rule.register
def _(rule: Imp, b: Builder) -> None:
    """`-imp`: hand the visible columns (by current name) to the import sink (ess.aq.sinks)."""
    b.used.update(c.name for c in b.cols.values())
    b.row_reads.update(c.name for c in b.cols.values() if c.is_var)
    cols = {name: col.name for name, col in b.cols.items()}
    b.steps.append(
        sinks.import_step(sinks.UDB, rule.target, rule.attrs, cols, ddef=b.prog.ddef, mask=b.mask)
    )


@compile_rule.register
def _(rule: Output, b: Builder) -> None:
    cols = b.out_columns(rule.columns, f"-o {rule.path}", variables=False)
    b.outputs.append((rule, cols))
    mask = b.mask

    def step(df: pl.DataFrame, st: RunState) -> pl.DataFrame:
        rows = df if mask is None else df.filter(pl.col(mask))
        write_rows(rows, cols, rule.attrs, st.sinks[rule.path])
        st.out_rows += rows.height
        return df

    b.steps.append(step)


# ---------------------------------------------------------------- rules checked by -if


@functools.singledispatch
def check_rule(rule: object, b: Builder) -> pl.Expr | None:
    """Success of a rule in -if/-elif position (None: always); it never drops rows."""
    compile_rule(rule, b)
    return None


@check_rule.register
def _(rule: Filt, b: Builder) -> pl.Expr | None:
    return condition(rule, b)


@check_rule.register
def _(rule: Const, b: Builder) -> pl.Expr | None:
    return pl.lit(rule.value)


@check_rule.register(Map)
@check_rule.register(MapF)
@check_rule.register(MapC)
def _(rule: Map | MapF | MapC, b: Builder) -> pl.Expr | None:
    return map_rule(rule, b)


@check_rule.register
def _(rule: Lookup, b: Builder) -> pl.Expr | None:
    from ess.aq.lookup import compile_lookup  # reads lookup files: only when one is used

    return compile_lookup(b, rule)


def condition(rule: Filt, b: Builder) -> pl.Expr:
    value, effects = compile_expr(rule.expr, b, "-filt")
    if effects:
        raise NotSupportedError("column-writing functions inside -filt")
    return truthy(value)


# ---------------------------------------------------------------- -eval
@compile_rule.register
def _(rule: Eval, b: Builder) -> None:
    where = "-eval"
    if rule.target is None:  # only the column writes of functions (RxMap ...) matter
        b.apply_effects(compile_expr(rule.expr, b, where)[1])
        return
    reads: set[str] = set()
    if isinstance(rule.target, ColSpec):
        if rule.target.name.lower() in b.cols:
            raise AqSyntaxError(f"-eval: column {rule.target.name!r} is already defined")
        # what the expression reads is kept aside: if the new column turns out dead, its
        # inputs need not be read either (see Builder.prune)
        outer, b.used = b.used, set()
        try:
            value, effects = compile_expr(rule.expr, b, where)
        finally:
            reads, b.used = b.used, outer
        b.apply_effects(effects)
        col = b.define(rule.target)
        new = True
    else:
        col = b.lookup(rule.target, where)
        if col.is_var:
            var_update(b, col, rule)
            return
        value, effects = compile_expr(rule.expr, b, where)
        b.apply_effects(effects)
        new = False
    converted = assign_value(value, col.typ, f"-eval {col.label}")
    name, mask = col.name, b.mask
    if mask is None:
        step = _eval_step(converted, name)
        b.steps.append(step)
        if new and not effects and _no_call(rule.expr):
            b.prunable.append((step, name, reads))
        else:
            b.used |= reads
        return
    b.used |= reads
    fallback = default_value(col.typ) if new else pl.col(name)
    expr = pl.when(pl.col(mask)).then(converted).otherwise(fallback)
    expr = expr.fill_null(default_value(col.typ))
    b.steps.append(lambda df, st: df.with_columns(expr.alias(name)))


def _eval_step(converted: pl.Expr, name: str) -> Step:
    def step(df: pl.DataFrame, st: RunState) -> pl.DataFrame:
        # a null is a processing error (e.g. DateToTime on a bad date): row dropped
        out = df.with_columns(converted.alias(name))
        if out.get_column(name).null_count():  # O(1): most batches copy nothing
            out = out.filter(pl.col(name).is_not_null())
        return out

    return step


def _no_call(text: str) -> bool:
    """True when an expression calls no function (so it cannot fail at run time)."""
    tree = parse(text, "-eval")
    return not any(True for _ in tree.find_data("call"))


# ---------------------------------------------------------------- -if / -elif / -else
@compile_rule.register
def _(rule: If, b: Builder) -> None:
    outer = b.mask
    taken = b.new_hidden("taken")
    b.steps.append(lambda df, st: df.with_columns(pl.lit(False).alias(taken)))
    for branch in rule.branches:
        ok = check_rule(branch.check, b)
        ok = pl.lit(True) if ok is None else ok
        if branch.negate:
            ok = ~ok
        bmask = b.new_hidden("branch")
        base = ~pl.col(taken) if outer is None else (pl.col(outer) & ~pl.col(taken))
        b.steps.append(_branch_step(base & ok.fill_null(False), bmask, taken))
        _body(branch.body, bmask, b)
    if rule.orelse is not None:
        emask = b.new_hidden("else")
        base = ~pl.col(taken) if outer is None else (pl.col(outer) & ~pl.col(taken))
        b.steps.append(lambda df, st: df.with_columns(base.alias(emask)))
        _body(rule.orelse, emask, b)


def _body(rules: list[object], mask: str, b: Builder) -> None:
    b.label_steps("-if")  # the branch's mask steps
    b.mask_stack.append(mask)
    for sub in rules:
        compile_checked(sub, b)
    b.mask_stack.pop()


def _branch_step(cond: pl.Expr, bmask: str, taken: str) -> Step:
    def step(df: pl.DataFrame, st: RunState) -> pl.DataFrame:
        df = df.with_columns(cond.alias(bmask))
        return df.with_columns((pl.col(taken) | pl.col(bmask)).alias(taken))

    return step


def walk(rules: list[object]) -> Iterator[object]:
    """Every rule of a chain, those inside -if blocks included."""
    for rule in rules:
        yield rule
        if isinstance(rule, If):
            for br in rule.branches:
                yield br.check
                yield from walk(br.body)
            yield from walk(rule.orelse or [])


# ---------------------------------------------------------------- mapping
def map_rule(rule: MapF | Map | MapC, b: Builder) -> pl.Expr | None:
    if isinstance(rule, MapC):
        _mapc(rule, b)
        return None
    col = b.lookup(rule.col, f"-{type(rule).__name__.lower()}")
    if col.typ != "S":
        raise AqSyntaxError(f"-map/-mapf: column {col.label!r} must be a string column")
    ncas = any(a.lower() == "ncas" for a in rule.attrs)
    if mapping.is_regex(rule.attrs):
        first = b.rx_index if isinstance(rule, MapF) else 0
        mf = mapping.rx_mapfrom(rule.pattern, rule.attrs, first)
        if isinstance(rule, MapF):
            b.rx_index += len(mf.names)
    else:
        mf = mapping.rt_mapfrom(rule.pattern, ncas=ncas)
    groups = pl.col(col.name).str.extract_groups(mf.regex)
    hit = b.new_hidden("hit")
    local: dict[str, str] = {}
    exprs = [pl.col(col.name).str.contains(mf.regex).alias(hit)]
    for i, name in enumerate(mf.names):
        if not name:
            continue
        hidden = f"__mv_{name}" if isinstance(rule, MapF) else b.new_hidden("mv")
        local[name] = hidden
        exprs.append(groups.struct[i].fill_null("").alias(hidden))
    mask = b.mask
    b.steps.append(lambda df, st: df.with_columns(exprs))
    if isinstance(rule, MapF):
        b.extracted.update(local)
    else:
        value = mapping.render(mapping.parse_mapto(rule.template), local, rule.template)
        name = col.name
        active = pl.col(hit) if mask is None else (pl.col(hit) & pl.col(mask))
        b.steps.append(
            lambda df, st: df.with_columns(
                pl.when(active).then(value).otherwise(pl.col(name)).alias(name)
            )
        )
    return pl.col(hit)


def _mapc(rule: MapC, b: Builder) -> None:
    pieces = mapping.parse_mapto(rule.template)
    value = mapping.render(pieces, b.extracted, rule.template)
    if isinstance(rule.target, ColSpec):
        col, new = b.define(rule.target), True
    else:
        col, new = b.lookup(rule.target, "-mapc"), False
    if col.typ != "S":
        raise AqSyntaxError(f"-mapc: target {col.label!r} must be a string column")
    b.set_masked(col, value, new)


def _var_value(rule: VarDef) -> object:
    text = rule.value
    typ = rule.spec.typ
    if typ in ("S", "IP"):
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
            return decode_strings(text)
        return text
    try:
        if typ == "F":
            return float(text)
        return wrap_constant(int(float(text)) if "." in text else int(text), typ)
    except (ValueError, OverflowError):
        raise AqSyntaxError(f"-var {rule.spec.name}: bad initial value {text!r}") from None


def uses_imports(prog: Program) -> bool:
    """Whether the command has `-imp` rules (their sink must be registered before compile)."""
    return any(isinstance(rule, Imp) for rule in walk(prog.chain))


def compile_program(prog: Program) -> Job:
    """`compile` wrapped in a Job, ready to run."""
    return Job(compile(prog))

"""aq_udb processing rules (spec 11.3) compiled to Polars over a frame of one target's rows.

A frame holds the rows of the target table (or vector, or key set) for some keys, sorted by
``(__k, __r)``. Rules run left to right over whole columns: ``-eval`` of a column is a masked
update, ``-filt`` narrows the set of live rows, ``-if`` branches narrow it for their body.
Var columns are row-dependent state: ``-eval v 'v + X'`` is a running sum of X over the rows
(per key after ``-bvar``, over the whole export otherwise), ``-eval v X`` (X without v) holds the
last assigned value. Other self-referencing forms raise NotSupportedError.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from ess.aq import failures
from ess.aq.colspec import kind as kind_of
from ess.aq.expr import compile_expr
from ess.aq.syntax import parse
from ess.aq.values import Typed, lit_float, lit_int, lit_str, truthy, wrap_constant
from ess.errors import AqDataError, AqSyntaxError, NotSupportedError
from ess.udb.merge import K, R, key_order
from ess.udb.spec import Column, DbSpec, Target

ALIVE, DEL, DELKEY = "__alive", "__del", "__delkey"


@dataclass
class Rule:
    op: str  # eval filt goto del_row del_key if bvar
    args: tuple[str, ...] = ()
    branches: list[tuple[Rule, bool, list[Rule]]] = field(default_factory=list)
    orelse: list[Rule] | None = None


@dataclass
class PPGroup:
    table: str
    rules: list[Rule]
    bvars: list[tuple[str, str]]


@dataclass
class RulePlan:
    """Picklable: parsed rules plus the Var values they start from."""

    target: str
    pp: list[PPGroup]
    rules: list[Rule]
    bvars: list[tuple[str, str]]
    var_init: dict[str, Any]
    persist: bool = True  # -eval writes go back to the database

    @property
    def empty(self) -> bool:
        return not (self.pp or self.rules or self.bvars)

    def global_vars(self) -> bool:
        """True when a Var column is changed row by row and not reset per key (-bvar): the
        rules then need every key in export order, so they run on the client."""
        for rules, bvars in [(g.rules, g.bvars) for g in self.pp] + [(self.rules, self.bvars)]:
            reset = {b[0].lower() for b in bvars}
            for name in _evaluated(rules):
                if name.lower() in self.var_init and name.lower() not in reset:
                    return True
        return False

    def run_partition(
        self,
        frame: pl.DataFrame,
        part: Any,
        spec: DbSpec,
        *,
        writer: Callable[[str, pl.DataFrame], None] | None,
        drop_keys: Callable[[pl.Series], None] | None = None,
    ) -> pl.DataFrame:
        """Run on a worker over one partition; persist writes with `writer`."""
        frame = key_order(frame)  # export order (see server.w_query)
        return self.run(frame, spec, writer=writer, others=_others(part), drop_keys=drop_keys)

    def run(
        self,
        frame: pl.DataFrame,
        spec: DbSpec,
        *,
        writer: Callable[[str, pl.DataFrame], None] | None,
        others: Callable[[str], pl.DataFrame | None] | None = None,
        drop_keys: Callable[[pl.Series], None] | None = None,
    ) -> pl.DataFrame:
        target = _target_of(spec, self.target)
        var = spec.var
        var_cols = list(var.columns) if var is not None else []
        frame = frame.with_columns(
            *(_const(c, self.var_init.get(c.key)).alias(_v(c)) for c in var_cols),
            pl.lit(True).alias(ALIVE),
            pl.lit(False).alias(DEL),
            pl.lit(False).alias(DELKEY),
        )
        for group in self.pp:
            if (target is not None and group.table.lower() == target.key) or (
                group.table == "." and self.target == "."
            ):
                frame = _Runner(spec, target, var_cols, group.bvars, pp=True).run(
                    frame, group.rules
                )
                frame = frame.with_columns(pl.lit(True).alias(ALIVE))
            else:
                frame = self._pp_other(frame, group, spec, var_cols, writer, others)
        runner = _Runner(spec, target, var_cols, self.bvars, pp=False)
        frame = runner.run(frame, self.rules)
        changed = runner.changed or any(g.rules for g in self.pp)
        if writer is not None and target is not None and self.persist:
            deleted = frame.get_column(DEL).any()
            if changed or deleted:
                stored = frame.filter(~pl.col(DEL)).select(
                    [c.name for c in (*spec.pkey, *target.columns)]
                    + _stamps(target)
                    + [c for c in ("__p",) if c in frame.columns]
                )
                writer(target.key, stored)
        if drop_keys is not None and self.persist:
            gone = frame.filter(pl.col(DELKEY)).get_column(K).unique()
            if gone.len():
                drop_keys(gone)  # the key and all its data (-del_key)
        return frame.filter(pl.col(ALIVE) & ~pl.col(DEL))

    def _pp_other(
        self,
        frame: pl.DataFrame,
        group: PPGroup,
        spec: DbSpec,
        var_cols: list[Column],
        writer: Callable[[str, pl.DataFrame], None] | None,
        others: Callable[[str], pl.DataFrame | None] | None,
    ) -> pl.DataFrame:
        """`-pp Tab` on another table of the same keys: run the group over Tab's rows, then
        each key's Var values after its last row carry over to the exported rows."""
        if others is None or group.table in (".", "var"):
            raise NotSupportedError(
                f"aq_udb -pp {group.table} with a Var that runs across keys (use -bvar)"
            )
        other_target = spec.require(group.table)
        other = others(other_target.key)
        if other is None or other.height == 0:
            return frame
        other = other.sort(K, maintain_order=True).with_columns(
            *(pl.lit(None, dtype=c.dtype).alias(_v(c)) for c in var_cols),
            pl.lit(True).alias(ALIVE),
            pl.lit(False).alias(DEL),
            pl.lit(False).alias(DELKEY),
        )
        # start every key from the exported rows' current Var values (first row of the key)
        start = frame.group_by(K).agg(pl.col(_v(c)).first() for c in var_cols)
        other = other.drop([_v(c) for c in var_cols]).join(start, on=K, how="left")
        other = other.with_columns(
            pl.col(_v(c)).fill_null(_const(c, self.var_init.get(c.key))) for c in var_cols
        )
        runner = _Runner(spec, other_target, var_cols, group.bvars, pp=True)
        other = runner.run(other, group.rules)
        if writer is not None and self.persist and (runner.changed or other[DEL].any()):
            kept = other.filter(~pl.col(DEL)).select(
                [c.name for c in (*spec.pkey, *other_target.columns)] + _stamps(other_target)
            )
            writer(other_target.key, kept)
        last = other.group_by(K).agg(pl.col(_v(c)).last().alias(f"__n{c.key}") for c in var_cols)
        frame = frame.join(last, on=K, how="left", maintain_order="left")
        return frame.with_columns(
            pl.coalesce(f"__n{c.key}", _v(c)).alias(_v(c)) for c in var_cols
        ).drop([f"__n{c.key}" for c in var_cols])


def _stamps(target: Target) -> list[str]:
    return [K, R] if target.kind == "table" else [K]


def _others(part: Any) -> Callable[[str], pl.DataFrame | None]:
    def get(name: str) -> pl.DataFrame | None:
        low = name.lower()
        found = part.tables.get(low)
        if found is None and low in part.vectors:
            found = part.vectors[low].with_columns(pl.col(K).alias(R))
        return found

    return get


def _target_of(spec: DbSpec, name: str) -> Target | None:
    if name in (".", "var"):
        return None
    return spec.require(name)


def _v(col: Column) -> str:
    return f"__v_{col.key}"


def _const(col: Column, value: Any) -> pl.Expr:
    if value is None:
        value = "" if col.typ in ("S", "IP") else 0
    return pl.lit(value, dtype=col.dtype)


def _evaluated(rules: list[Rule]) -> list[str]:
    out = []
    for r in rules:
        if r.op == "eval":
            out.append(r.args[0])
        for check, _, body in r.branches:
            out += _evaluated([check, *body])
        if r.orelse:
            out += _evaluated(r.orelse)
    return out


class _Scope:
    def __init__(self, runner: _Runner) -> None:
        self.runner = runner
        self.writes: list[tuple[str, Typed]] = []

    def column(self, name: str) -> Typed | None:
        return self.runner.lookup(name)

    def special(self, name: str) -> Typed | None:
        if name == "rownum":
            return Typed((pl.int_range(pl.len()).over(K) + 1).cast(pl.Int64), "I")
        return None

    def assign(self, name: str, value: Typed) -> None:
        self.writes.append((name, value))


class _Runner:
    def __init__(self, spec: DbSpec, target: Target | None, var_cols: list[Column],
                 bvars: list[tuple[str, str]], *, pp: bool) -> None:  # fmt: skip
        self.spec = spec
        self.target = target
        self.var_cols = {c.key: c for c in var_cols}
        self.cols = {c.key: c for c in (*spec.pkey, *(target.columns if target else ()))}
        self.bvars = {b[0].lower(): b[1] for b in bvars}
        self.pp = pp
        self.changed = False

    def lookup(self, name: str) -> Typed | None:
        low = name.lower()
        if low in self.cols:
            c = self.cols[low]
            return Typed(pl.col(c.name), kind_of(c.typ))
        if low in self.var_cols:
            c = self.var_cols[low]
            return Typed(pl.col(_v(c)), kind_of(c.typ))
        return None

    def compile(self, text: str, where: str) -> Typed:
        value, _writes = compile_expr(text, _Scope(self), where)
        return value

    def run(self, frame: pl.DataFrame, rules: list[Rule]) -> pl.DataFrame:
        for name, text in self.bvars.items():  # reset at the start of every key
            col = self.var_cols.get(name)
            if col is None:
                raise AqSyntaxError(f"-bvar: {name!r} is not a Var column")
            frame = frame.with_columns(_const(col, _literal(text, col)).alias(_v(col)))
        return self._rules(frame, rules, pl.lit(True))

    def _rules(self, frame: pl.DataFrame, rules: list[Rule], cond: pl.Expr) -> pl.DataFrame:
        for rule in rules:
            live = pl.col(ALIVE) & ~pl.col(DEL) & cond
            try:  # the one mapping point of aq_udb's rules (ess.aq.failures)
                frame = self._rule(frame, rule, live)
            except failures.VALUE_ERRORS as exc:
                raise AqDataError(f"{describe(rule)}: {failures.message(exc)}") from None
        return frame

    def _rule(self, frame: pl.DataFrame, rule: Rule, live: pl.Expr) -> pl.DataFrame:
        op = rule.op
        if op == "eval":
            return self._eval(frame, rule.args[0], rule.args[1], live)
        if op == "filt":
            ok = truthy(self.compile(rule.args[0], "-filt"))
            if self.pp:
                return frame.with_columns(pl.when(live & ~ok).then(False).otherwise(pl.col(ALIVE))
                                          .alias(ALIVE))  # fmt: skip
            return frame.with_columns((pl.col(ALIVE) & ~(live & ~ok)).alias(ALIVE))
        if op == "del_row":
            self.changed = True
            return frame.with_columns((pl.col(DEL) | live).alias(DEL))
        if op == "del_key":
            self.changed = True
            gone = live.any().over(K)
            return frame.with_columns((pl.col(DEL) | gone).alias(DEL),
                                      (pl.col(DELKEY) | gone).alias(DELKEY))  # fmt: skip
        if op == "goto":
            dest = rule.args[0].lower()
            if dest == "next_key":
                stop = live.cast(pl.Int8).cum_max().over(K).cast(pl.Boolean)
                return frame.with_columns((pl.col(ALIVE) & ~stop).alias(ALIVE))
            if dest in ("next_row",):
                return frame.with_columns((pl.col(ALIVE) & ~live).alias(ALIVE))
            raise NotSupportedError(f"aq_udb -goto {rule.args[0]}")
        if op == "if":
            taken = pl.lit(False)
            for check, negate, body in rule.branches:
                frame, ok = self._check(frame, check, live & ~taken)
                ok = ~ok if negate else ok
                frame = frame.with_columns((live & ~taken & ok).alias("__c"))
                branch = pl.col("__c")
                frame = frame.with_columns(branch.alias(f"__c{id(body)}"))
                frame = self._rules(frame, body, pl.col(f"__c{id(body)}"))
                taken = taken | pl.col(f"__c{id(body)}")
            if rule.orelse is not None:
                frame = frame.with_columns((live & ~taken).alias("__celse"))
                frame = self._rules(frame, rule.orelse, pl.col("__celse"))
            return frame
        raise NotSupportedError(f"aq_udb {op}")  # pragma: no cover

    def _check(
        self, frame: pl.DataFrame, rule: Rule, live: pl.Expr
    ) -> tuple[pl.DataFrame, pl.Expr]:
        if rule.op == "filt":
            ok = truthy(self.compile(rule.args[0], "-filt"))
            frame = frame.with_columns(ok.alias("__ok"))
            return frame, pl.col("__ok")
        if rule.op == "eval":
            return self._eval(frame, rule.args[0], rule.args[1], live), pl.lit(True)
        raise AqSyntaxError(f"-if cannot check -{rule.op}")

    def _eval(self, frame: pl.DataFrame, name: str, text: str, live: pl.Expr) -> pl.DataFrame:
        low = name.partition(":")[2].lower() if ":" in name else name.lower()
        where = f"-eval {name}"
        if low in self.var_cols:
            return self._eval_var(frame, self.var_cols[low], text, live, where)
        col = self.cols.get(low)
        if col is None:
            raise AqSyntaxError(f"{where}: no column {name!r} in the target or the Var vector")
        if any(col is p for p in self.spec.pkey):
            raise AqSyntaxError(f"{where}: the pkey column cannot be changed")
        value = _convert(self.compile(text, where), col, where)
        self.changed = True
        return frame.with_columns(pl.when(live).then(value).otherwise(pl.col(col.name))
                                  .alias(col.name))  # fmt: skip

    def _eval_var(self, frame: pl.DataFrame, col: Column, text: str, live: pl.Expr,
                  where: str) -> pl.DataFrame:  # fmt: skip
        tree = parse(text, where)
        group = [K] if col.key in self.bvars else None
        names = {str(t) for t in tree.scan_values(lambda v: getattr(v, "type", "") == "NAME")}
        selfref = any(n.lower() == col.key for n in names)
        cur = pl.col(_v(col))
        if not selfref:
            value = _convert(self.compile(text, where), col, where)
            held = pl.when(live).then(value).otherwise(None)
            filled = held.forward_fill().over(group) if group else held.forward_fill()
            return frame.with_columns(filled.fill_null(cur).alias(_v(col)))
        increment = _increment(text, col.name)
        if increment is None:
            raise NotSupportedError(
                f"{where}: a Var update other than 'Var + Expr' or an expression without the Var"
            )
        step = _convert(self.compile(increment, where), col, where)
        add = pl.when(live).then(step).otherwise(pl.lit(0, dtype=col.dtype))
        total = add.cum_sum().over(group) if group else add.cum_sum()
        return frame.with_columns((cur + total).cast(col.dtype).alias(_v(col)))


def describe(rule: Rule) -> str:
    """A rule as the user wrote it, for an error message."""
    if rule.op in ("eval", "filt"):
        *names, text = rule.args
        return " ".join([f"-{rule.op}", *names, f"'{text}'"])
    return " ".join([f"-{rule.op}", *rule.args])


def _increment(text: str, var: str) -> str | None:
    """`var + X` / `X + var` → X (textually), when X does not mention var."""
    import re

    pat = re.compile(rf"^\s*{re.escape(var)}\s*\+(.*)$|^(.*)\+\s*{re.escape(var)}\s*$", re.I)
    m = pat.match(text)
    if not m:
        return None
    rest = m.group(1) if m.group(1) is not None else m.group(2)
    if re.search(rf"\b{re.escape(var)}\b", rest, re.I):
        return None
    return rest


def _literal(text: str, col: Column) -> Any:
    if col.typ in ("S", "IP"):
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            return text[1:-1]
        return text
    try:
        if col.typ == "F":
            return float(text)
        return wrap_constant(int(text) if text.lstrip("+-").isdigit() else int(float(text)),
                             col.typ)  # fmt: skip
    except (ValueError, OverflowError):
        raise AqSyntaxError(f"bad value {text!r} for {col.text()}") from None


def _convert(value: Typed, col: Column, where: str) -> pl.Expr:
    target = kind_of(col.typ)
    if target in ("S", "IP"):
        if value.kind not in ("S", "IP"):
            raise AqSyntaxError(f"{where}: a number cannot be stored in string column {col.name}")
        return value.expr
    if value.kind in ("S", "IP"):
        raise AqSyntaxError(f"{where}: a string cannot be stored in numeric column {col.name}")
    if col.typ == "F":
        return value.expr.cast(pl.Float64)
    return value.expr.cast(pl.Int64, strict=False, wrap_numerical=True).cast(
        col.dtype, wrap_numerical=True
    )


def literal_value(text: str, col: Column) -> Any:
    return _literal(text, col)


__all__ = ["PPGroup", "Rule", "RulePlan", "lit_float", "lit_int", "lit_str", "literal_value"]

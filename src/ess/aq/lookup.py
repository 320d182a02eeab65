"""`-sub`, `-grep` and `-cmb`: lookups against a data set loaded fully into memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl

from ess.aq import batches, reader
from ess.aq.builder import Builder
from ess.aq.colspec import ColSpec, kind, polars_dtype
from ess.aq.regex import has_wildcard, wildcard_to_rust
from ess.aq.rules import Lookup
from ess.aq.values import default_value
from ess.errors import AqDataError, AqSyntaxError, NotSupportedError


def load(rule: Lookup, specs: list[ColSpec]) -> pl.DataFrame:
    """Read every lookup file with its spec; rows failing conversion follow the eok rule."""
    names = [s.name.lower() if not s.skip else "" for s in specs]
    frames = []
    for path in rule.files:
        for chunk in batches.read_chunks(path, rule.attrs):
            raw = reader.parse_chunk(chunk, rule.attrs, list(specs))
            typed, bad = reader.typed_frame(raw, list(specs), names)
            if bad.any():
                if not rule.attrs.eok:
                    row = bad.arg_true()[0]
                    msg = reader.describe_error(raw, typed, list(specs), names, row, chunk)
                    raise AqDataError(f"-{rule.kind} lookup: {msg}")
                typed = typed.filter(~bad)
            frames.append(typed)
    if not frames:
        return pl.DataFrame({n: [] for n in names if n})
    return pl.concat(frames)


def compile_lookup(comp: Builder, rule: Lookup) -> pl.Expr | None:
    if rule.kind == "cmb":
        return _cmb(comp, rule)
    col = comp.lookup(rule.col or "", f"-{rule.kind}")
    if col.typ != "S":
        raise AqSyntaxError(f"-{rule.kind}: column {col.label!r} must be a string column")
    specs = rule.specs or (
        [ColSpec("S", "from"), ColSpec("S", "to")] if rule.kind == "sub" else [ColSpec("S", "from")]
    )
    names = {s.name.lower() for s in specs if not s.skip}
    need = {"from", "to"} if rule.kind == "sub" else {"from"}
    if not need <= names:
        raise AqSyntaxError(f"-{rule.kind}: lookup spec needs columns {sorted(need)}")
    table = load(rule, specs)
    froms = table["from"].to_list()
    tos = table["to"].to_list() if rule.kind == "sub" else [None] * len(froms)
    value = pl.col(col.name)
    key = value.str.to_lowercase() if rule.attrs.ncas else value
    exact: dict[str, str | None] = {}
    patterns: list[tuple[str, str | None]] = []
    for frm, to in zip(froms, tos, strict=True):
        if rule.attrs.pat and has_wildcard(frm):
            patterns.append((wildcard_to_rust(frm, ncas=rule.attrs.ncas), to))
        else:
            k = frm.lower() if rule.attrs.ncas else frm.replace("\\", "") if rule.attrs.pat else frm
            exact.setdefault(k, to)
    if rule.attrs.all:
        raise NotSupportedError(f"-{rule.kind},all")
    if rule.kind == "grep":
        hit = key.is_in(pl.Series(list(exact), dtype=pl.String))
        if patterns:
            hit = hit | value.str.contains("|".join(f"(?:{p})" for p, _ in patterns))
        return ~hit if rule.attrs.rev else hit
    old = pl.Series(list(exact), dtype=pl.String)
    new = pl.Series(list(exact.values()), dtype=pl.String)
    result = key.replace_strict(old, new, default=None, return_dtype=pl.String)
    if patterns:
        chain: Any = pl.when(value.str.contains(patterns[0][0])).then(pl.lit(patterns[0][1]))
        for regex, to in patterns[1:]:
            chain = chain.when(value.str.contains(regex)).then(pl.lit(to))
        result = pl.coalesce(result, chain.otherwise(pl.lit(None, dtype=pl.String)))
    hitcol = comp.new_hidden("hit")
    comp.steps.append(lambda df, st: df.with_columns(result.alias(hitcol)))
    new_value = pl.coalesce(pl.col(hitcol), value)
    comp.set_masked(col, new_value, False)
    return pl.col(hitcol).is_not_null() if rule.attrs.req else None


def _cmb(comp: Builder, rule: Lookup) -> pl.Expr | None:
    specs = rule.specs
    explicit = any(s.has("key") or s.has("cmb") for s in specs)
    keys: list[ColSpec] = []
    combine: list[ColSpec] = []
    for spec in specs:
        if spec.skip:
            continue
        common = spec.name.lower() in comp.cols
        if spec.has("key") or (not explicit and common) or (explicit and common and not
                                                             spec.has("cmb")):  # fmt: skip
            keys.append(spec)
        else:
            combine.append(spec)
    if not keys:
        raise AqSyntaxError("-cmb: no key column (no column in common and none marked key)")
    if rule.attrs.all and comp.mask is not None:
        raise NotSupportedError("-cmb,all inside -if branches")
    table = load(rule, specs)
    key_cols = [comp.lookup(k.name, "-cmb") for k in keys]
    for spec, col in zip(keys, key_cols, strict=True):
        if kind(spec.typ) != kind(col.typ):
            raise AqSyntaxError(f"-cmb: key {spec.name!r} is {spec.typ} but {col.typ} in the data")
    tmp_keys = [comp.new_hidden("k") for _ in keys]
    right_cols = {}
    for spec in combine:
        right_cols[spec.name.lower()] = comp.new_hidden("c")
    hit = comp.new_hidden("hit")

    def norm(expr: pl.Expr, spec: ColSpec) -> pl.Expr:
        return expr.str.to_lowercase() if rule.attrs.ncas and spec.typ == "S" else expr

    right = table.select(
        *[
            norm(pl.col(k.name.lower()), k).cast(c_dtype(c)).alias(t)
            for k, c, t in zip(keys, key_cols, tmp_keys, strict=True)
        ],
        *[pl.col(n).alias(h) for n, h in right_cols.items()],
        pl.lit(True).alias(hit),
    )
    if not rule.attrs.all:  # default: the first match in file order; `all`: one row per match
        right = right.unique(subset=tmp_keys, keep="first", maintain_order=True)  # fmt: skip
    left_keys = [norm(pl.col(c.name), k).alias(t)
                 for k, c, t in zip(keys, key_cols, tmp_keys, strict=True)]  # fmt: skip

    def step(df: pl.DataFrame, st: object) -> pl.DataFrame:
        joined = df.with_columns(left_keys).join(
            right, on=tmp_keys, how="left", maintain_order="left"
        )
        return joined.drop(tmp_keys).with_columns(pl.col(hit).fill_null(False))

    comp.steps.append(step)
    active = pl.col(hit) if comp.mask is None else (pl.col(hit) & pl.col(comp.mask))
    for spec in combine:
        hidden = right_cols[spec.name.lower()]
        existing = comp.cols.get(spec.name.lower())
        if existing is None:
            col = comp.define(spec)
            fallback = default_value(col.typ)
        else:
            col = existing
            fallback = pl.col(col.name)
        value = pl.when(active).then(pl.col(hidden)).otherwise(fallback)
        comp.steps.append(_set_step(value, col.name))
    return pl.col(hit) if rule.attrs.req else None


def _set_step(value: pl.Expr, name: str) -> Callable[[pl.DataFrame, object], pl.DataFrame]:
    def step(df: pl.DataFrame, st: object) -> pl.DataFrame:
        return df.with_columns(value.alias(name))

    return step


def c_dtype(col: object) -> pl.DataType:
    return polars_dtype(col.typ)  # type: ignore[attr-defined]

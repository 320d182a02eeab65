"""Import and merge rules on Polars frames (spec 10.3), independent of where data is held.

Every stored row carries two hidden stamps, unique over the whole cluster: ``__r`` the import
sequence number of the row and ``__k`` the sequence number of the row that first created its
key. Export order is ``(__k, __r)``: keys in order of first insertion, rows of a key in insertion
order, whichever partitions and workers hold them.

Group-bys here do not ask for `maintain_order`: Polars always keeps the order of rows within
a group (what `+first`, `+last` and the sequential float `+add` need); only the order of the
groups themselves is free, and the stamps carry that.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from ess.udb.spec import Column, Target

K, R, S = "__k", "__r", "__s"


def empty_frame(pkey: Sequence[Column], columns: Sequence[Column], *, rows: bool) -> pl.DataFrame:
    schema: dict[str, pl.DataType] = {c.name: c.dtype for c in (*pkey, *columns)}
    schema[K] = pl.Int64()
    if rows:
        schema[R] = pl.Int64()
    return pl.DataFrame(schema=schema)


def zero_of(col: Column) -> pl.Expr:
    if col.typ in ("S", "IP"):
        return pl.lit("", dtype=pl.String)
    return pl.lit(0, dtype=col.dtype)


def assign_keys(
    keys: pl.DataFrame, batch: pl.DataFrame, pkey: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Add the batch's new keys to the key set; return (keys, batch with __k, number of new).

    A new key's stamp is the row stamp of its first row in the batch. One join finds the known
    keys; only the rows of new keys (usually few) are grouped."""
    out = batch.join(keys, on=pkey, how="left", nulls_equal=True, maintain_order="left")
    stamps = out.get_column(K)
    if stamps.null_count() == 0:
        return keys, out, 0
    where = stamps.is_null().arg_true()
    rows = out[where].select(*pkey, R)
    firsts = rows.select(pl.col(R).min().over(pkey)).to_series()
    new = rows.with_columns(firsts.alias(K)).filter(pl.col(R) == pl.col(K)).select(*pkey, K)
    keys = pl.concat([keys, new], how="vertical", rechunk=False)
    out = out.with_columns(stamps.scatter(where, firsts))
    return keys, out, new.height


def _merge_expr(col: Column) -> pl.Expr:
    c = pl.col(col.name)
    later = ~pl.col(S)
    if col.nozero:
        later = later & (c != zero_of(col))
    action = col.action
    if action == "+first":
        return c.first()
    if action == "+last":
        return c.filter(later).last().fill_null(c.first())
    if action == "+add":
        if col.typ == "F":  # sequential IEEE additions in import order (spec 10.3 point 6)
            return c.cum_sum().last()
        return c.sum().cast(col.dtype, wrap_numerical=True)
    values = c.filter(later | pl.col(S))
    if action in ("+min", "+max"):
        return extreme(values, action, col.typ)
    if action == "+bor":
        return values.bitwise_or()
    raise AssertionError(action)  # pragma: no cover - spec.parse_column checks actions


def extreme(values: pl.Expr, action: str, typ: str) -> pl.Expr:
    """`+min`/`+max` of `values` in import order. A float extreme that is zero keeps the sign
    of the first zero, as a sequential ``if (v < cur) cur = v`` does (-0.0 and 0.0 tie);
    Polars' min and max return either (docs/udb.md, "Signed zeros")."""
    m = values.min() if action == "+min" else values.max()
    if typ != "F":
        return m
    return pl.when(m == 0).then(values.filter(values == 0).first()).otherwise(m)


def merge_rows(
    existing: pl.DataFrame, batch: pl.DataFrame, group: list[str], columns: Sequence[Column]
) -> pl.DataFrame:
    """Vector / `+key` table merge: one row per `group`, merged with each column's action.

    The first row of a group (the stored row, or the first imported row of a new group)
    initialises it; later rows merge into it in import order. Stamps of the first row are kept,
    so a merged row stays at its original position.
    """
    wanted = batch.select(group).unique()
    touched = existing.join(wanted, on=group, how="semi", nulls_equal=True)
    kept = existing.join(wanted, on=group, how="anti", nulls_equal=True)
    stamps = [s for s in (K, R) if s in existing.columns]
    both = pl.concat(
        [touched, batch.select(existing.columns)], how="vertical", rechunk=False
    ).with_columns(pl.struct(group).is_first_distinct().alias(S))
    aggs = [_merge_expr(c).alias(c.name) for c in columns]
    merged = both.group_by(group).agg(*aggs, *(pl.col(s).first() for s in stamps))
    return pl.concat([kept, merged.select(existing.columns)], how="vertical", rechunk=False)


def merge_unique(
    existing: pl.DataFrame, batch: pl.DataFrame, group: list[str], columns: Sequence[Column]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`merge_rows` for a batch with one row per group (pre-merged by `combine`) and
    `combinable` columns: one full join instead of a group-by over stored and new rows.

    Same result as `merge_rows` (row order aside, which the stamps carry): a group found in
    `existing` merges its stored row (first) with the batch row (later); a new group is the
    batch row. Also returns the new groups with their stamps (``group`` + ``__k``)."""
    assert R not in existing.columns  # vectors: the key stamp is the row's only stamp
    new_k = K + "__n"
    joined = existing.join(
        batch.select(*group, *(c.name for c in columns), pl.col(K).alias(new_k)),
        on=group, how="full", coalesce=True, suffix="__n", nulls_equal=True,
    )  # fmt: skip
    old_row, new_row = pl.col(K).is_not_null(), pl.col(new_k).is_not_null()
    values = []
    for col in columns:
        old, new = pl.col(col.name), pl.col(col.name + "__n")
        both = _combine_pair(col, old, new)
        values.append(
            pl.when(old_row & new_row).then(both).when(new_row).then(new).otherwise(old)
            .alias(col.name)
        )  # fmt: skip
    merged = joined.select(*group, *values, pl.coalesce(K, new_k).alias(K))
    fresh = joined.filter(~old_row).select(*group, pl.col(new_k).alias(K))
    return merged.select(existing.columns), fresh


def _combine_pair(col: Column, old: pl.Expr, new: pl.Expr) -> pl.Expr:
    """The stored value `old` merged with one later value `new` (as `_merge_expr` does)."""
    action = col.action
    if action == "+first":
        return old
    if action == "+last":
        return pl.coalesce(new, old)
    if action == "+add":  # integers only (combinable); nulls count as nothing, as in sum()
        return pl.sum_horizontal(old, new).cast(col.dtype, wrap_numerical=True)
    if action in ("+min", "+max"):  # a tie keeps the stored value (signed zeros: `extreme`)
        either = pl.min_horizontal(old, new) if action == "+min" else pl.max_horizontal(old, new)
        return pl.when(old == new).then(old).otherwise(either)
    if action == "+bor":
        return pl.when(old.is_null()).then(new).when(new.is_null()).then(old).otherwise(old | new)
    raise AssertionError(action)  # pragma: no cover - spec.parse_column checks actions


def conform(
    frame: pl.DataFrame,
    pkey: Sequence[Column],
    target: Target,
    *,
    ddef: bool,
    where: str,
) -> pl.DataFrame:
    """The import columns of `target` from `frame`: matched by name (case-insensitive), cast to
    the target's types; missing ones are 0/blank with `ddef`, else an error."""
    by_low = {name.lower(): name for name in frame.columns}
    exprs: list[pl.Expr] = []
    for col in (*pkey, *target.columns):
        src = by_low.get(col.key)
        is_pkey = col in pkey
        if src is None:
            if is_pkey:
                raise _err(f"{where}: the row has no pkey column {col.name!r}")
            if not ddef:
                have = ", ".join(frame.columns)
                raise _err(
                    f"{where}: column {col.name!r} of {target.name} is missing from the row "
                    f"(row columns: {have}); add it, or use -ddef / -imp,ddef for 0/blank"
                )
            exprs.append(zero_of(col).alias(col.name))
            continue
        dtype = frame.schema[src]
        if (col.typ in ("S", "IP")) != (dtype == pl.String):
            raise _err(
                f"{where}: column {src!r} ({'string' if dtype == pl.String else 'number'}) "
                f"does not match {target.name} column {col.text()}"
            )
        exprs.append(pl.col(src).cast(col.dtype, wrap_numerical=True).alias(col.name))
    return frame.select(exprs)


def _err(message: str) -> Exception:
    from ess.errors import UdbError

    return UdbError(message)


def conform_keys(frame: pl.DataFrame, pkey: Sequence[Column], *, where: str) -> pl.DataFrame:
    """Key-only import (`-imp Db`): just the pkey columns."""
    target = Target("vector", ".", ())
    return conform(frame, pkey, target, ddef=False, where=where)


def combinable(target: Target) -> bool:
    """Whether a batch for this vector may be pre-merged on the client (one row per key) with
    exactly the result of merging its rows one by one: true when every column's action is
    associative and needs no "first row initialises" special case — integer `+add`, `+first`,
    `+last`, `+min`, `+max`, `+bor`, none with `+nozero`. Float `+add` is excluded: its sum
    must run in import order starting from the stored value."""
    for col in target.columns:
        if col.nozero or (col.action == "+add" and col.typ == "F"):
            return False
    return True


def combine(batch: pl.DataFrame, group: list[str], columns: Sequence[Column]) -> pl.DataFrame:
    """Pre-merge a batch (in import order) to one row per key; the row keeps the first stamp."""
    aggs = []
    for col in columns:
        c = pl.col(col.name)
        agg = {"+first": c.first(), "+last": c.last(), "+min": extreme(c, "+min", col.typ),
               "+max": extreme(c, "+max", col.typ), "+bor": c.bitwise_or(),
               "+add": c.sum()}[col.action]  # fmt: skip
        aggs.append(agg.cast(col.dtype, wrap_numerical=True).alias(col.name))
    # lazily: the optimised plan is cheaper than the eager group-by (same rows, same order
    # within groups)
    out = batch.lazy().group_by(group).agg(*aggs, pl.col(R).min()).select(batch.columns)
    return out.collect()


def key_order(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame stably sorted on the key stamp ``__k`` (export order within one partition or
    worker: a key's rows keep their stored order).

    A stable multi-column sort is the slow kind in Polars; instead one Int64 column
    ``(stamp - min) * 2**b + row index`` (b bits hold the row index) is sorted, which is a plain
    unstable sort of distinct values, and its low bits are the stable permutation. Stamps are
    microseconds, so this applies while one frame's stamps span less than 2**(62-b) µs (days
    to years); wider spans fall back to the stable sort."""
    n = frame.height
    if n < 2:
        return frame
    stamps = frame.get_column(K)
    low, high = stamps.min(), stamps.max()
    assert isinstance(low, int) and isinstance(high, int)
    bits = (n - 1).bit_length()
    if high - low >= 1 << (62 - bits):
        return frame.sort(K, maintain_order=True)
    packed = (pl.col(K) - low) * (1 << bits) + pl.int_range(0, pl.len(), dtype=pl.Int64)
    order = frame.select((packed.sort() % (1 << bits)).alias("i")).get_column("i")
    return frame[order]


def sort_result(frame: pl.DataFrame, cols: list[str], dec: bool) -> pl.DataFrame:
    """Stable ascending sort of a frame in export order; `dec` is that result reversed (so
    ties come out in reverse export order, spec 11.4)."""
    out = frame.sort(cols, maintain_order=True)
    return out.reverse() if dec else out

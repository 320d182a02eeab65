"""The vector merge as one in-order fold: what `merge.merge_rows` computes for a vector, without
a group-by over the stored and new rows.

A batch for a vector that holds a row for every key of its partition is merged by finding, with
one join, the stored row of each batch row (or a new row, numbered in order of first
appearance), then folding the batch's values into the stored columns in row order with NumPy's
unbuffered ``ufunc.at``: ``np.add.at(acc, idx, v)`` performs ``acc[idx[i]] += v[i]`` for i in
order, so float ``+add`` is the sequential IEEE sum in import order that the spec asks for
(10.3 point 6) and `merge_rows` gets from ``cum_sum().last()``, bit for bit. A new key's row is
initialised by its first batch row (10.3 point 4); the rest of its rows fold into it.

It covers the common vectors: numeric columns with any action, string columns with
``+first``/``+last``, ``+nozero`` anywhere. :func:`can_fold` says no (and the caller merges
with `merge_rows`) for nulls in the batch, NaN under ``+min``/``+max`` (Polars and NumPy
disagree on them) and string ``+min``/``+max``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from ess.udb.keyset import key_rows
from ess.udb.merge import K, R, zero_of
from ess.udb.spec import Column

_UFUNC = {"+add": np.add, "+min": np.minimum, "+max": np.maximum, "+bor": np.bitwise_or}
_I = "__i"


def can_fold(batch: pl.DataFrame, columns: Sequence[Column]) -> bool:
    """Whether `fold_vector` gives exactly `merge_rows`'s result for this batch."""
    for col in columns:
        values = batch.get_column(col.name)
        if values.null_count():
            return False
        if col.typ in ("S", "IP"):
            if col.action not in ("+first", "+last"):
                return False
        elif col.typ == "F" and col.action in ("+min", "+max") and values.is_nan().any():
            return False
    return True


def fold_vector(
    current: pl.DataFrame, batch: pl.DataFrame, pkey: list[str], columns: Sequence[Column]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the merged vector: stored rows in place, then new ones; the new keys with their
    stamps and first batch row: pkey + ``__k`` + ``__at``).

    `current` holds one row per key (pkey, columns, ``__k``), without nulls in the columns
    (what merges leave); `batch` the rows in import order with their row stamps ``__r``."""
    idx, fresh = _row_index(current, batch, pkey)
    first = np.zeros(batch.height, dtype=bool)  # rows initialising a new key's row
    first[fresh.get_column("__at").to_numpy()] = True
    later = ~first
    out: dict[str, pl.Series] = {}
    for col in columns:
        stored = current.get_column(col.name)
        values = batch.get_column(col.name)
        init = values.gather(fresh.get_column("__at"))
        if col.typ == "F" and col.action == "+add":  # as cum_sum: 0.0 + first (-0.0 -> 0.0)
            init = pl.Series(col.name, np.add(0.0, init.to_numpy()), dtype=col.dtype)
        start = pl.concat([stored, init], rechunk=True)
        mask = later if not col.nozero else later & _nonzero(values, col)
        out[col.name] = _fold(start, values, idx, mask, col)
    new_keys = fresh.select(*pkey, pl.col(R).alias(K), "__at")
    keys = pl.concat([current.select(pkey), new_keys.select(pkey)], rechunk=True)
    stamps = pl.concat([current.get_column(K), new_keys.get_column(K)], rechunk=True)
    merged = pl.DataFrame([*keys.get_columns(), *out.values(), stamps])
    return merged.select(current.columns), new_keys


def fold_partitions(
    currents: dict[int, pl.DataFrame],
    batch: pl.DataFrame,
    sizes: dict[int, int],
    pkey: list[str],
    columns: Sequence[Column],
) -> dict[int, tuple[pl.DataFrame, pl.DataFrame]]:
    """`fold_vector` for several partitions at once: {pid: (merged, new keys)}.

    `batch` holds the rows of each partition of `currents`, partition after partition in
    ascending pid order (`sizes` rows each), each in import order. A key belongs to one
    partition, so one join and one fold over the partitions laid end to end give each its
    own result, at the Polars overhead of one partition instead of one per partition."""
    pids = sorted(currents)
    stored = [currents[p].height for p in pids]
    whole, fresh = fold_vector(pl.concat([currents[p] for p in pids], rechunk=True), batch,
                               pkey, columns)  # fmt: skip
    # the partition of each new key's first row: the batch holds the partitions end to end
    ends = np.cumsum([sizes.get(p, 0) for p in pids])
    at = fresh.get_column("__at").to_numpy()
    new_pid = np.asarray(pids, dtype=np.int64)[np.searchsorted(ends, at, side="right")]
    tail = whole.slice(sum(stored))
    out: dict[int, tuple[pl.DataFrame, pl.DataFrame]] = {}
    offset = 0
    for pid, height in zip(pids, stored, strict=True):
        mine = np.flatnonzero(new_pid == pid)
        merged = whole.slice(offset, height)
        new = fresh[mine].drop("__at")
        if len(mine):
            merged = pl.concat([merged, tail[mine]], rechunk=False)
        out[pid] = (merged, new)
        offset += height
    return out


def _row_index(
    current: pl.DataFrame, batch: pl.DataFrame, pkey: list[str]
) -> tuple[np.ndarray, pl.DataFrame]:
    """The merged-frame row of each batch row, and the new keys (their first row's stamp and
    position ``__at``) in order of first appearance; new rows follow the stored ones."""
    if len(pkey) == 1:
        native = key_rows(current, batch, pkey[0])
        if native is not None:
            rows, first = native
            at = pl.Series("__at", first, dtype=pl.UInt32)
            return rows, batch[at].select(*pkey, R).with_columns(at)
    n_cur = current.height
    found = (
        batch.select(pkey)
        .join(
            current.select(pkey).with_row_index(_I),
            on=pkey,
            how="left",
            nulls_equal=True,
            maintain_order="left",
        )
        .get_column(_I)
    )
    if found.null_count() == 0:
        empty = batch.head(0).select(*pkey, R).with_columns(pl.lit(0, pl.UInt32).alias("__at"))
        return found.to_numpy().astype(np.int64), empty
    at = found.is_null().arg_true()
    misses = batch[at].select(*pkey, R).with_columns(at.alias("__at"))
    fresh = misses.unique(subset=pkey, keep="first", maintain_order=True)
    numbered = fresh.select(pkey).with_row_index(_I, offset=n_cur)
    new_rows = (
        misses.select(pkey)
        .join(numbered, on=pkey, how="left", nulls_equal=True, maintain_order="left")
        .get_column(_I)
    )
    idx = found.scatter(at, new_rows).to_numpy().astype(np.int64)
    return idx, fresh


def _nonzero(values: pl.Series, col: Column) -> np.ndarray:
    zero = pl.select(zero_of(col)).to_series()[0]
    return (values != zero).to_numpy()


def _fold(start: pl.Series, values: pl.Series, idx: np.ndarray, mask: np.ndarray,
          col: Column) -> pl.Series:  # fmt: skip
    """`start` (stored rows, then new rows' first values) with the `mask`ed batch rows folded
    in, in order, by the column's action."""
    action = col.action
    if action == "+first":
        return start
    # every row folds (no new key's first row, no +nozero zero: all groups after the first
    # on the benchmark): no masked copies of the batch, whose fresh pages cost more than the fold
    whole = bool(mask.all())
    where = idx if whole else idx[mask]
    if action == "+last":  # the last masked row of each target row wins
        if not len(where):
            return start
        rev = where[::-1]
        targets, pos = np.unique(rev, return_index=True)
        rows = np.flatnonzero(mask)[len(where) - 1 - pos]
        return start.scatter(targets, values.gather(rows))
    acc = start.to_numpy().copy()  # writable, the column's own dtype
    folded = values.to_numpy() if whole else values.to_numpy()[mask]
    with np.errstate(all="ignore"):  # ints wrap, inf - inf is NaN: as in the group-by
        _UFUNC[action].at(acc, where, folded)
    if col.typ == "F" and action in ("+min", "+max"):
        _first_zero_wins(acc, start.to_numpy(), where, folded)
    return pl.Series(col.name, acc, dtype=col.dtype)


def _first_zero_wins(acc: np.ndarray, start: np.ndarray, where: np.ndarray,
                     folded: np.ndarray) -> None:  # fmt: skip
    """The sign of a float ``+min``/``+max`` that ends at zero, as a sequential ``if (v < cur)
    cur = v`` leaves it: -0.0 and 0.0 tie, so the first zero of the row's sequence (its
    stored or first value, then its rows in order) stays, where NumPy's minimum and maximum
    take the later one."""
    ends_zero = acc == 0
    if not ends_zero.any():
        return
    zero_rows = np.flatnonzero(folded == 0)
    targets, first = np.unique(where[zero_rows], return_index=True)
    firsts = folded[zero_rows[first]]  # the first zero folded into each row
    mine = ends_zero[targets]
    acc[targets[mine]] = firsts[mine]
    kept = ends_zero & (start == 0)  # a zero a row starts with comes before every folded one
    acc[kept] = start[kept]

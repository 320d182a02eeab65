"""The in-order vector fold (ess.udb.fold) gives exactly what the group-by merge gives."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ess.udb import fold, merge
from ess.udb.merge import K, R
from ess.udb.spec import Column

I64 = (-(2**63), 2**63 - 1)


@pytest.fixture(autouse=True, params=["native", "polars"])
def joiner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every test runs with the C helper's key set (ess.udb.keyset) and with Polars' joins."""
    from ess.aq.native import native_library

    monkeypatch.setenv("ESS_NATIVE", "1" if request.param == "native" else "0")
    native_library.cache_clear()
    assert (native_library() is not None) == (request.param == "native")
    yield request.param
    native_library.cache_clear()


U64 = (0, 2**64 - 1)


def reference(current: pl.DataFrame, batch: pl.DataFrame, keys: pl.DataFrame,
              pk: list[str], cols: list[Column]) -> tuple[pl.DataFrame, pl.DataFrame]:  # fmt: skip
    """What import_into did before the fold: assign_keys, then merge_rows."""
    keys2, stamped, _ = merge.assign_keys(keys, batch, pk)
    merged = merge.merge_rows(current, stamped.select(current.columns), pk, cols)
    return merged, keys2


def same(a: pl.DataFrame, b: pl.DataFrame) -> None:
    a, b = a.sort(K), b.sort(K)
    assert a.columns == b.columns
    for name in a.columns:
        for x, y in zip(a.get_column(name).to_list(), b.get_column(name).to_list(), strict=True):
            if isinstance(x, float):  # bit for bit, NaN and -0.0 included
                if math.isnan(x):
                    assert math.isnan(y), name
                else:
                    assert x == y and math.copysign(1, x) == math.copysign(1, y), name
            else:
                assert x == y, name


def run(cols: list[Column], batches: list[dict[str, Any]]) -> None:
    pk = ["k"]
    current = merge.empty_frame([Column("S", "k")], cols, rows=False)
    ref, keys = current, current.select(*pk, K)
    stamp = 1000
    for data in batches:
        n = len(data["k"])
        schema: dict[str, Any] = {"k": pl.String, **{c.name: c.dtype for c in cols}}
        batch = pl.DataFrame(data, schema=schema).with_columns(
            (pl.int_range(0, n, dtype=pl.Int64) + stamp).alias(R)
        )
        stamp += n
        if not fold.can_fold(batch, cols):
            continue
        ref, keys = reference(ref, batch, keys, pk, cols)
        current, new = fold.fold_vector(current, batch, pk, cols)
        same(current, ref)
        assert set(new.get_column("k").to_list()) <= set(keys.get_column("k").to_list())


def test_float_add_is_sequential_in_import_order() -> None:
    cols = [Column("F", "f", ("+add",))]
    # a pairwise sum of these differs from the sequential one in the last digits
    vals = [0.1, 0.2, 0.3, 1e16, -1e16, 0.7, 65.27, -0.0, 1e-300]
    run(cols, [{"k": ["a"] * len(vals), "f": vals}, {"k": ["a", "b"], "f": [-0.0, -0.0]}])


def test_first_row_initialises_nozero_and_strings() -> None:
    cols = [
        Column("I", "lo", ("+min",)),
        Column("F", "hi", ("+max", "+nozero")),
        Column("S", "s_first", ("+first",)),
        Column("S", "s_last", ("+last", "+nozero")),
        Column("L", "bits", ("+bor",)),
        Column("I", "n", ("+add", "+nozero")),
    ]
    b1 = {"k": ["x", "y", "x", "z"], "lo": [5, 0, -3, 7], "hi": [0.0, -1.0, 0.0, 2.5],
          "s_first": ["a", "", "b", "c"], "s_last": ["p", "q", "", "r"],
          "bits": [1, 2, 4, 2**63], "n": [0, 1, 2, 3]}  # fmt: skip
    b2 = {"k": ["z", "x", "w"], "lo": [9, -9, 1], "hi": [0.0, 3.0, 0.0],
          "s_first": ["d", "e", ""], "s_last": ["", "t", ""],
          "bits": [1, 8, 0], "n": [0, -2, 0]}  # fmt: skip
    run(cols, [b1, b2, b1])


def test_refuses_what_it_cannot_match() -> None:
    batch = pl.DataFrame({"k": ["a"], "f": [float("nan")], "s": ["x"]})
    assert not fold.can_fold(batch, [Column("F", "f", ("+min",))])
    assert fold.can_fold(batch, [Column("F", "f", ("+add",))])
    assert not fold.can_fold(batch, [Column("S", "s", ("+max",))])
    nulls = pl.DataFrame({"k": ["a"], "f": [None]}, schema={"k": pl.String, "f": pl.Float64})
    assert not fold.can_fold(nulls, [Column("F", "f", ("+add",))])


floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1e308])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(
                st.sampled_from(["a", "b", "c", "", "\x00\xff"]),
                st.integers(*I64),
                st.integers(*U64),
                floats,
                st.text(max_size=3),
            ),
            min_size=1,
            max_size=12,
        ),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from(["+add", "+min", "+max", "+first", "+last", "+bor"]),
    st.booleans(),
)
def test_fold_matches_group_by_merge(rows: list[list[tuple]], action: str, nozero: bool) -> None:
    attrs = (action, "+nozero") if nozero else (action,)
    cols = [Column("I", "i", attrs), Column("L", "u", attrs)]
    if action != "+bor":
        cols.append(Column("F", "f", attrs))
    if action in ("+first", "+last"):
        cols.append(Column("S", "s", attrs))
    batches = []
    for chunk in rows:
        data: dict[str, list[object]] = {"k": [r[0] for r in chunk], "i": [r[1] for r in chunk],
                                         "u": [r[2] for r in chunk]}  # fmt: skip
        if action != "+bor":
            data["f"] = [r[3] for r in chunk]
        if action in ("+first", "+last"):
            data["s"] = [r[4] for r in chunk]
        batches.append(data)
    run(cols, batches)


@pytest.mark.parametrize("n", [0, 1])
def test_empty_and_single(n: int) -> None:
    cols = [Column("F", "f", ("+add",))]
    run(cols, [{"k": ["a"] * n, "f": [1.5] * n}] if n else [{"k": ["a"], "f": [2.0]}])


def test_key_rows_number_stored_then_new_keys_in_order_of_first_appearance(joiner: str) -> None:
    """Thousands of keys (the set grows and rehashes), inline and long ones, stored and batch
    keys in several chunks each: every row gets its key's number."""
    from ess.udb.keyset import key_rows

    def keys(lo: int, hi: int) -> list[str]:
        return [f"k{i}" if i % 3 else f"a key longer than twelve bytes {i}" for i in range(lo, hi)]

    stored = pl.concat([pl.DataFrame({"k": keys(0, 3000)}), pl.DataFrame({"k": keys(3000, 4000)})],
                       rechunk=False)  # fmt: skip
    rows = [f"k{(i * 7919) % 9000}" if i % 5 else f"a key longer than twelve bytes {i % 4500}"
            for i in range(12000)]  # fmt: skip
    batch = pl.concat([pl.DataFrame({"k": rows[:5000]}), pl.DataFrame({"k": rows[5000:]})],
                      rechunk=False)  # fmt: skip
    got = key_rows(stored, batch, "k")
    if joiner == "polars":
        assert got is None
        return
    assert got is not None and stored.n_chunks() == 2 and batch.n_chunks() == 2
    number = {k: i for i, k in enumerate(stored.get_column("k").to_list())}
    want, first = [], []
    for i, k in enumerate(rows):
        if k not in number:
            number[k] = len(number)
            first.append(i)
        want.append(number[k])
    assert got[0].tolist() == want and got[1].tolist() == first


@pytest.mark.parametrize("with_new", [True, False])
def test_partitions_folded_together_equal_each_folded_alone(with_new: bool) -> None:
    """`fold_partitions` (one join and one fold over a worker's partitions end to end) gives
    each partition what `fold_vector` gives it alone: stored rows, new keys in its own order,
    a partition the batch does not touch unchanged."""
    cols = [Column("I", "n", ("+add",)), Column("F", "f", ("+min",))]
    stored = {
        pid: pl.DataFrame({"k": [f"p{pid}k{i}" for i in range(5)], "n": [1] * 5,
                           "f": [float(i) for i in range(5)], K: [pid * 100 + i for i in range(5)]})
        for pid in (2, 5, 9)
    }  # fmt: skip
    parts = {}
    for pid in (2, 9):  # 5 gets no rows
        # a new key on the first row of a partition (its first row in the batch is the end of
        # the partition before)
        keys = [f"p{pid}k{(i + 5) % 7 if with_new else i % 5}" for i in range(12)]
        parts[pid] = pl.DataFrame({"k": keys, "n": list(range(12)),
                                   "f": [float(-i) for i in range(12)]})  # fmt: skip
    stamp, batches = 1000, {}
    for pid, rows in parts.items():
        batches[pid] = rows.with_columns((pl.int_range(0, rows.height) + stamp).alias(R))
        stamp += rows.height
    batch = pl.concat([batches[p] for p in sorted(batches)])
    sizes = {p: b.height for p, b in batches.items()}
    got = fold.fold_partitions(stored, batch, sizes, ["k"], cols)
    for pid, current in stored.items():
        if pid in batches:
            want = fold.fold_vector(current, batches[pid], ["k"], cols)
        else:
            want = (current, pl.DataFrame())
        assert got[pid][0].equals(want[0])
        assert got[pid][1].height == want[1].height
        if want[1].height:
            assert got[pid][1].equals(want[1].drop("__at"))

"""Import merge rules (spec 10.3) on frames, against a straightforward per-row model."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ess.errors import UdbError
from ess.udb.merge import K, R, assign_keys, conform, empty_frame, merge_rows
from ess.udb.spec import Target, parse_column

PK = [parse_column("s:k", where="t")]


def cols(*texts: str) -> list:
    return [parse_column(t, where="t") for t in texts]


def run_import(columns: list, batches: list[pl.DataFrame]) -> pl.DataFrame:
    """Rows merged one batch at a time, without the client's pre-merge (the reference)."""

    def merge(vec: pl.DataFrame, batch: pl.DataFrame) -> pl.DataFrame:
        return merge_rows(vec, batch, ["k"], columns)

    return fed_vector(batches, tuple(columns), merge, premerge=False).sort(K)


def fed_vector(
    batches: list[pl.DataFrame],
    columns: tuple,
    merge: Callable[[pl.DataFrame, pl.DataFrame], pl.DataFrame],
    *,
    premerge: bool,
) -> pl.DataFrame:
    """A vector fed batch by batch: each batch stamped, optionally pre-merged as the client
    does, keys assigned, then merged."""
    from ess.udb.merge import combine

    keys = empty_frame(PK, (), rows=False)
    vec = empty_frame(PK, columns, rows=False)
    stamp = 0
    for batch in batches:
        batch = batch.with_columns((pl.int_range(0, pl.len()) + stamp).alias(R))
        stamp += batch.height
        if premerge:
            batch = combine(batch, ["k"], columns)
        keys, batch, _ = assign_keys(keys, batch, ["k"])
        vec = merge(vec, batch.select(vec.columns))
    return vec


def model(columns: list, rows: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for row in rows:
        cur = out.get(row["k"])
        if cur is None:
            out[row["k"]] = dict(row)
            continue
        for c in columns:
            p, e = row[c.name], cur[c.name]
            if c.nozero and p in (0, ""):
                continue
            cur[c.name] = _apply(c.action, e, p)
    return out


def _apply(action: str, e: object, p: object) -> object:
    if action == "+first":
        return e
    if action == "+last":
        return p
    if action == "+add":
        return e + p  # type: ignore[operator]
    if action == "+min":
        return min(e, p)  # type: ignore[type-var]
    if action == "+max":
        return max(e, p)  # type: ignore[type-var]
    return e | p  # type: ignore[operator]


COLUMNS = cols(
    "i,+add:a",
    "f,+add:fa",
    "i,+min:mi",
    "i,+max,+nozero:mx",
    "i,+first:fi",
    "s:la",
    "s,+last,+nozero:ln",
    "i,+bor:bo",
)

row_st = st.fixed_dictionaries(
    {
        "k": st.sampled_from(["x", "y", "z", ""]),
        "a": st.integers(-5, 5),
        "fa": st.sampled_from([0.1, 0.2, 0.3, 1e16, -1.5]),
        "mi": st.integers(-3, 3),
        "mx": st.integers(-3, 3),
        "fi": st.integers(0, 9),
        "la": st.sampled_from(["p", "q", ""]),
        "ln": st.sampled_from(["p", "q", ""]),
        "bo": st.integers(0, 15),
    }
)


@settings(max_examples=60, deadline=None)
@given(st.lists(row_st, min_size=1, max_size=30), st.integers(1, 30))
def test_vector_merge_matches_row_model(rows: list[dict], size: int) -> None:
    frame = pl.DataFrame(
        rows,
        schema={
            "k": pl.String,
            "a": pl.Int64,
            "fa": pl.Float64,
            "mi": pl.Int64,
            "mx": pl.Int64,
            "fi": pl.Int64,
            "la": pl.String,
            "ln": pl.String,
            "bo": pl.Int64,
        },
    )
    batches = [frame.slice(i, size) for i in range(0, frame.height, size)]
    got = run_import(COLUMNS, batches)
    want = model(COLUMNS, rows)
    # keys in order of first insertion
    assert got.get_column("k").to_list() == list(dict.fromkeys(r["k"] for r in rows))
    for row in got.iter_rows(named=True):
        exp = want[row["k"]]
        for c in COLUMNS:
            assert row[c.name] == exp[c.name], (c.name, row, exp)  # floats: exact, in order


def test_float_add_is_sequential_in_import_order() -> None:
    values = [0.1] * 10 + [1e16, 1.0, -1e16]
    seq = 0.0
    for v in values:
        seq += v
    got = run_import(cols("f,+add:t"), [pl.DataFrame({"k": ["u"] * 13, "t": values})])
    assert got.get_column("t").to_list() == [seq]


def test_plus_key_table_merges_in_place() -> None:
    columns = cols("s,+key:user", "s,+first:start", "s,+last:end", "i,+add:pay")
    table = empty_frame(PK, columns, rows=True)
    batch = pl.DataFrame(
        {
            "k": ["c", "c", "d", "c"],
            "user": ["u1", "u2", "u1", "u1"],
            "start": ["a", "b", "c", "d"],
            "end": ["a", "b", "c", "d"],
            "pay": [1, 2, 3, 4],
            R: [1, 2, 3, 4],
            K: [1, 1, 3, 1],
        }
    )
    merged = merge_rows(table, batch.select(table.columns), ["k", "user"], columns[1:])
    rows = merged.sort(R).select("k", "user", "start", "end", "pay").rows()
    assert rows == [("c", "u1", "a", "d", 5), ("c", "u2", "b", "b", 2), ("d", "u1", "c", "c", 3)]


def test_conform_ddef_and_mismatch() -> None:
    target = Target("table", "t", tuple(cols("i:n", "s:name")))
    frame = pl.DataFrame({"K": ["a"], "N": [1.7]})
    with pytest.raises(UdbError, match="missing from the row"):
        conform(frame, PK, target, ddef=False, where="imp")
    out = conform(frame, PK, target, ddef=True, where="imp")
    assert out.rows() == [("a", 1, "")]
    with pytest.raises(UdbError, match="does not match"):
        conform(
            pl.DataFrame({"k": ["a"], "n": ["x"], "name": ["y"]}),
            PK,
            target,
            ddef=False,
            where="imp",
        )
    with pytest.raises(UdbError, match="no pkey column"):
        conform(pl.DataFrame({"n": [1]}), PK, target, ddef=True, where="imp")


COMBINABLE = cols("i,+add:a", "i,+min:mi", "i,+max:mx", "i,+first:fi", "s:la", "i,+bor:bo")


@settings(max_examples=60, deadline=None)
@given(st.lists(row_st, min_size=1, max_size=30), st.integers(1, 30))
def test_client_combine_then_merge_equals_merging_rows(rows: list[dict], size: int) -> None:
    from ess.udb.merge import combinable

    assert combinable(Target("vector", "v", tuple(COMBINABLE)))
    assert not combinable(Target("vector", "v", tuple(COLUMNS)))
    batches = row_batches(rows, COMBINABLE, size)
    vec = premerged_import(
        batches, COMBINABLE, lambda vec, b: merge_rows(vec, b, ["k"], COMBINABLE)
    )
    assert vec.sort(K).equals(run_import(COMBINABLE, batches))


def row_batches(rows: list[dict], columns: tuple, size: int) -> list[pl.DataFrame]:
    names = [c.name for c in columns]
    frame = pl.DataFrame([{k: r[k] for k in ["k", *names]} for r in rows])
    return [frame.slice(i, size) for i in range(0, frame.height, size)]


def premerged_import(
    batches: list[pl.DataFrame],
    columns: tuple,
    merge: Callable[[pl.DataFrame, pl.DataFrame], pl.DataFrame],
) -> pl.DataFrame:
    """A vector fed as the client feeds it: each batch stamped, pre-merged, keys assigned."""
    return fed_vector(batches, columns, merge, premerge=True)


def test_large_batch_keeps_row_order_within_keys() -> None:
    """Big enough for Polars' parallel group-by: +first/+last/float +add still follow rows."""
    n = 300_000
    i = pl.int_range(0, n, eager=True)
    frame = pl.DataFrame(
        {
            "k": "k" + (i * 7919 % 5_000).cast(pl.String),
            "fi": i,
            "la": i,
            "t": (i % 13).cast(pl.Float64) / 10 + 1e-3,
        }
    )
    got = run_import(cols("i,+first:fi", "i,+last:la", "f,+add:t"), [frame])
    want: dict[str, list] = {}
    for k, v, t in zip(frame["k"], frame["fi"], frame["t"], strict=True):
        if k in want:
            want[k][1] = v
            want[k][2] += t
        else:
            want[k] = [v, v, t]
    assert got.select("fi", "la", "t").rows() == [tuple(want[k]) for k in got["k"]]


UNIQUE_COLS = cols("i,+add:a", "i,+min:mi", "i,+max:mx", "i,+first:fi", "s:la", "i,+bor:bo",
                   "s,+min:ln")  # fmt: skip


@settings(max_examples=80, deadline=None)
@given(st.lists(row_st, min_size=1, max_size=30), st.integers(1, 30))
def test_merge_unique_equals_merging_rows(rows: list[dict], size: int) -> None:
    """The worker's one-join merge of pre-merged batches gives what merging rows one by one
    gives (strings, +first/+last, wrapping integer +add, +bor)."""
    from ess.udb.merge import merge_unique

    batches = row_batches(rows, UNIQUE_COLS, size)
    vec = premerged_import(
        batches, UNIQUE_COLS, lambda vec, b: merge_unique(vec, b, ["k"], UNIQUE_COLS)[0]
    )
    assert vec.sort(K).equals(run_import(UNIQUE_COLS, batches))


def test_assign_keys_known_and_new_keys() -> None:
    keys = pl.DataFrame({"k": ["a", "b"], K: [10, 20]})
    batch = pl.DataFrame({"k": ["b", "c", "a", "c"], R: [30, 31, 32, 33]})
    keys2, out, nnew = assign_keys(keys, batch, ["k"])
    assert nnew == 1 and keys2.sort(K).rows() == [("a", 10), ("b", 20), ("c", 31)]
    assert out.rows() == [("b", 30, 20), ("c", 31, 31), ("a", 32, 10), ("c", 33, 31)]
    keys3, out, nnew = assign_keys(keys2, batch.slice(2, 1), ["k"])
    assert nnew == 0 and keys3.height == 3 and out.rows() == [("a", 32, 10)]


def test_combine_large_batch_follows_row_order() -> None:
    """Big enough for a parallel group-by: the pre-merge keeps +first/+last in row order."""
    from ess.udb.merge import combine

    n = 400_000
    i = pl.int_range(0, n, eager=True)
    frame = pl.DataFrame({"k": "k" + (i * 7919 % 3_001).cast(pl.String), "fi": i, "la": i,
                          "a": i % 7, R: i + 10**15})  # fmt: skip
    columns = cols("i,+first:fi", "i,+last:la", "i,+add:a")
    got = combine(frame, ["k"], columns).sort("k")
    want = (
        frame.group_by("k", maintain_order=True)
        .agg(pl.col("fi").first(), pl.col("la").last(), pl.col("a").sum(), pl.col(R).min())
        .sort("k")
    )
    assert got.equals(want.select(frame.columns))


ZEROS = cols("f,+min:lo", "f,+max:hi")
zero_rows = st.fixed_dictionaries({
    "k": st.sampled_from(["x", "y"]),
    "lo": st.sampled_from([0.0, -0.0, 1.0]),
    "hi": st.sampled_from([0.0, -0.0, -1.0]),
})  # fmt: skip


def _signs(frame: pl.DataFrame) -> dict[str, tuple[str, str]]:
    return {k: (repr(lo), repr(hi)) for k, lo, hi in frame.select("k", "lo", "hi").iter_rows()}


@settings(max_examples=80, deadline=None)
@given(st.lists(zero_rows, min_size=1, max_size=12), st.integers(1, 12))
def test_a_float_min_or_max_at_zero_keeps_the_first_zeros_sign(rows: list[dict],
                                                               size: int) -> None:  # fmt: skip
    """-0.0 and 0.0 tie: a sequential `if (v < cur) cur = v` keeps the first zero, and so do
    the group-by merge, the client's pre-merge then the one-join merge, and the fold, on any
    batch sizes (Polars' and NumPy's min and max return either zero)."""
    from ess.udb import fold
    from ess.udb.merge import merge_unique

    want = {k: (repr(r["lo"]), repr(r["hi"])) for k, r in model(ZEROS, rows).items()}
    batches = row_batches(rows, ZEROS, size)
    assert _signs(run_import(ZEROS, batches)) == want
    unique = premerged_import(batches, ZEROS,
                              lambda vec, b: merge_unique(vec, b, ["k"], ZEROS)[0])  # fmt: skip
    assert _signs(unique) == want

    def folded(vec: pl.DataFrame, batch: pl.DataFrame) -> pl.DataFrame:
        if vec.height == 0:  # the fold needs every key's row: the first batch makes them
            return merge_rows(vec, batch, ["k"], ZEROS)
        # a new key's stamp is its first row's: the fold takes it from that row's stamp
        return fold.fold_vector(vec, batch.rename({K: R}), ["k"], ZEROS)[0]

    assert _signs(fed_vector(batches, tuple(ZEROS), folded, premerge=False)) == want

"""The partition hash is ours and stable: fixed values, independent of batch boundaries."""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ess.aq.native import native_library
from ess.udb.hashing import B, M, cut_by_partition, key_hash, partition_of


@pytest.fixture(autouse=True, params=["native", "polars"])
def hasher(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every test runs with the C helper's string hash and with the pure-Polars one."""
    monkeypatch.setenv("ESS_NATIVE", "1" if request.param == "native" else "0")
    native_library.cache_clear()
    assert (native_library() is not None) == (request.param == "native")
    yield request.param
    native_library.cache_clear()


def reference(text: str) -> int:
    return sum(b * pow(B, j, M) for j, b in enumerate(text.encode())) % M


def test_fixed_values() -> None:
    frame = pl.DataFrame({"k": ["a", "", None, "abc", "é"]})
    assert key_hash(frame, ["k"]).to_list() == [97, 0, 0, 12858457, 1138661714]


@settings(
    deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=50), st.integers(0, 49))
def test_matches_reference_and_slicing(values: list[str], cut: int) -> None:
    frame = pl.DataFrame({"k": values})
    whole = key_hash(frame, ["k"]).to_list()
    assert whole == [reference(v) for v in values]
    cut = min(cut, len(values))
    assert key_hash(frame.slice(cut), ["k"]).to_list() == whole[cut:]


def test_numeric_and_composite_keys() -> None:
    frame = pl.DataFrame({"i": [1, -1, 2**40], "s": ["x", "x", "y"], "f": [0.5, 1.0, 2.0]})
    assert key_hash(frame, ["i"]).to_list() == [1, M - 1, 2**40 % M]
    both = key_hash(frame, ["i", "s"]).to_list()
    assert both[0] == (1 * 131 + 120) % M
    parts = partition_of(frame, ["s", "f"], 32).to_list()
    assert all(0 <= p < 32 for p in parts)


def test_long_keys_and_many_rows() -> None:
    """Keys longer than the power table's period and a batch of 200,000 rows."""
    long = ["x" * 50_000 + str(i) for i in range(3)]
    assert key_hash(pl.DataFrame({"k": long}), ["k"]).to_list() == [reference(v) for v in long]
    many = [f"w{i * 7919 % 100_003}" for i in range(200_000)]
    got = key_hash(pl.DataFrame({"k": many}), ["k"])
    assert got.gather([0, 1, 199_999]).to_list() == [reference(many[i]) for i in (0, 1, 199_999)]
    assert got.to_list()[::997] == [reference(v) for v in many[::997]]


def test_import_path_does_not_load_pyarrow_compute() -> None:
    """Loading pyarrow.compute costs ~0.2 CPU s per process (each aq_pp -imp, each worker's
    first export): hashing keys, the worker-side export module and the client's block sort
    must not need it."""
    import subprocess
    import sys

    code = """
import sys
import polars as pl
from ess.udb import export
from ess.udb.hashing import key_hash
frame = pl.DataFrame({"s": ["a", None, "bcd"], "f": [1.5, None, -2.0], "i": [1, 2, None]})
assert key_hash(frame, ["s", "f", "i"]).len() == 3
import pyarrow as pa
order = export._arrow("sort_indices", pa.chunked_array([[3, 1, 2]]))
assert export._arrow("take", pa.chunked_array([["c", "a", "b"]]), order).to_pylist() == [
    "a", "b", "c"]
print("pyarrow.compute" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("n", [0, 1, 7, 5000])
def test_cut_by_partition_is_partition_by_in_row_order(n: int) -> None:
    i = pl.int_range(0, n, eager=True)
    frame = pl.DataFrame({"k": "u" + (i * 7919 % 101).cast(pl.String), "i": i, "x": i % 3})
    got = cut_by_partition(frame, ["k", "x"], 32)
    with_p = frame.with_columns(partition_of(frame, ["k", "x"], 32))
    parts = with_p.partition_by("__p", as_dict=True, include_key=False)
    want = {int(k[0]): v.to_arrow() for k, v in parts.items()}
    assert got.keys() == want.keys()
    for pid, table in got.items():
        assert table.equals(want[pid])
        assert table.column("i").to_pylist() == sorted(table.column("i").to_pylist())


def test_the_cut_does_not_import_numpy_ma() -> None:
    """numpy.ma costs 12-50 ms of CPU at its first import: once in every aq_pp -imp that
    converted between NumPy and Polars/Arrow (see cut_by_partition)."""
    import subprocess
    import sys

    code = (
        "import sys, polars as pl\n"
        "from ess.udb import client, hashing\n"
        "frame = pl.DataFrame({'k': ['a', 'b', 'c'], 'n': [1, 2, 3]})\n"
        "assert len(hashing.cut_by_partition(frame, ['k'], 32)) >= 1\n"
        "print('numpy.ma' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize("n", [0, 1, 7, 5000])
def test_cut_stamps_number_the_rows_in_frame_order(n: int) -> None:
    """Stamps from the cut's permutation are the stamps a column added before the cut has."""
    keys = pl.Series("k", [f"u{(i * 7919) % 97}" if i % 5 else "" for i in range(n)])
    frame = pl.DataFrame([keys, pl.int_range(0, n, eager=True).alias("x") * 3])
    got = cut_by_partition(frame, ["k"], 32, stamps=("__r", 1_000_000))
    stamped = frame.with_columns((pl.int_range(0, n, dtype=pl.Int64) + 1_000_000).alias("__r"))
    want = cut_by_partition(stamped, ["k"], 32)
    assert got.keys() == want.keys()
    for pid, table in got.items():
        assert _frame(table).equals(_frame(want[pid]))


@pytest.mark.parametrize("n", [0, 1, 7, 5000])
def test_the_cut_of_a_string_key_is_partition_by_in_row_order(n: int) -> None:
    """One string key column: the C helper's hash, partition and counting sort."""
    i = pl.int_range(0, n, eager=True)
    keys = pl.when(i % 7 == 0).then(pl.lit("")).otherwise("ü" + (i * 7919 % 101).cast(pl.String))
    frame = pl.DataFrame({"i": i}).with_columns(k=keys).select("k", "i")
    got = cut_by_partition(frame, ["k"], 32)
    with_p = frame.with_columns(partition_of(frame, ["k"], 32))
    parts = with_p.partition_by("__p", as_dict=True, include_key=False)
    want = {int(k[0]): v for k, v in parts.items()}
    assert got.keys() == want.keys()
    for pid, table in got.items():
        assert _frame(table).equals(want[pid])


def _frame(table: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _mixed_keys(n: int) -> pl.DataFrame:
    """Keys inline in their views (up to 12 bytes) and out of line, multi-byte, empty; a
    string column with nulls, one without, and 8-byte, 4-byte and boolean columns."""
    words = ["", "a", "u123", "x" * 12, "y" * 13, "ü" * 7, "a long key of row {}"]
    keys = [words[(i * 7919) % len(words)].format(i) for i in range(n)]
    return pl.DataFrame(
        {
            "k": keys,
            "s": [None if i % 3 == 0 else k for i, k in enumerate(keys)],
            "t": [k[::-1] for k in keys],
            "x": pl.int_range(0, n, eager=True),
            "f": [i / 3 for i in range(n)],
            "i32": pl.int_range(0, n, eager=True).cast(pl.Int32),
            "b": [i % 2 == 0 for i in range(n)],
        },
        schema_overrides={"k": pl.String, "s": pl.String, "t": pl.String},
    )


@pytest.mark.parametrize("n", [0, 1, 7, 5000])
def test_the_cut_on_string_views_equals_partition_by(n: int, hasher: str) -> None:
    """The C cut on Polars' string views gives every partition's rows in row order, with
    their stamps, and compacted views: each part holds only its own long strings."""
    frame = _mixed_keys(n)
    got = cut_by_partition(frame, ["k"], 16, stamps=("__r", 7))
    stamped = frame.with_columns((pl.int_range(0, n, dtype=pl.Int64) + 7).alias("__r"))
    with_p = stamped.with_columns(partition_of(frame, ["k"], 16))
    want = {int(k[0]): v for k, v in
            with_p.partition_by("__p", as_dict=True, include_key=False).items()}  # fmt: skip
    assert got.keys() == want.keys()
    for pid, table in got.items():
        assert _frame(table).equals(want[pid])
        if hasher == "native":
            key = table.column("k").combine_chunks()
            assert key.type == pa.string_view() and table.column("t").type == pa.string_view()
            assert table.column("s").type == pa.large_string()  # nulls: Arrow's take
            long_bytes = sum(len(v.encode()) for v in key.to_pylist() if len(v.encode()) > 12)
            assert sum(b.size for b in key.buffers()[2:]) == long_bytes


def test_the_cut_of_several_chunks_with_many_buffers() -> None:
    """A frame made of several chunks (each its own data buffers) is cut as one."""
    one = pl.DataFrame({"k": [f"{'z' * 20}{i}" for i in range(300)], "x": range(300)})
    frame = pl.concat([one, one.with_columns(pl.col("k") + "b"), one.head(5)], rechunk=False)
    assert frame.n_chunks() > 1
    got = cut_by_partition(frame, ["k"], 8)
    with_p = frame.with_columns(partition_of(frame, ["k"], 8))
    want = {int(k[0]): v for k, v in
            with_p.partition_by("__p", as_dict=True, include_key=False).items()}  # fmt: skip
    assert {p: _frame(t) for p, t in got.items()}.keys() == want.keys()
    for pid, table in got.items():
        assert _frame(table).equals(want[pid])

"""Export order and per-key blocks (ess.udb.merge.key_order, ess.udb.export.key_blocks)."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from ess.udb.export import BLOCK, key_blocks
from ess.udb.merge import K, key_order
from ess.udb.server import LINE

BASE = 1_763_000_000_000_000


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=200), st.sampled_from([1, 10**6, 1 << 50]))
def test_key_order_is_the_stable_sort_on_the_key_stamp(keys: list[int], spread: int) -> None:
    # spread 1 << 50: stamps too far apart for the packed sort, the stable fallback is used
    frame = pl.DataFrame({K: [BASE + k * spread for k in keys], "row": list(range(len(keys)))},
                         schema={K: pl.Int64, "row": pl.Int64})  # fmt: skip
    assert key_order(frame).equals(frame.sort(K, maintain_order=True))


def test_key_order_large_frame() -> None:
    n = 300_000
    i = pl.int_range(0, n, eager=True)
    frame = pl.DataFrame({K: BASE + (i * 7919) % 5003, "row": i})
    assert key_order(frame).equals(frame.sort(K, maintain_order=True))


def test_key_blocks_cut_the_lines_at_key_boundaries() -> None:
    rendered = pl.DataFrame({K: [5, 5, 7, 9, 9, 9], LINE: ["a\n", "b\n", "", "c\n", "d\n", "e\n"]})
    table = key_blocks(rendered.slice(0, 6))
    assert table.column(K).to_pylist() == [5, 7, 9]
    assert table.column(BLOCK).to_pylist() == [b"a\nb\n", b"", b"c\nd\ne\n"]
    sliced = key_blocks(rendered.slice(2, 3))  # a view that does not start at offset 0
    assert sliced.column(BLOCK).to_pylist() == [b"", b"c\nd\n"]

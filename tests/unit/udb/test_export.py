"""Export order and per-key blocks (ess.udb.merge.key_order, ess.udb.export.key_blocks)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from ess.aq.rules import OutputAttrs
from ess.udb.export import BLOCK, key_blocks
from ess.udb.merge import K, key_order

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
    frame = pl.DataFrame(
        {K: [5, 5, 7, 9, 9, 9], "s": ["a", "b", "", 'q"x', "c", "d"], "n": [1, 2, 3, 4, 5, 6],
         "f": [0.1, 1.0, 2.5, -3.0, 1e20, 0.0]}
    )  # fmt: skip
    render = [("s", "s", "S"), ("n", "n", "I"), ("f", "f", "F")]
    lines = ['"a",1,0.10000000000000001\n', '"b",2,1\n', ",3,2.5\n", '"q""x",4,-3\n',
             '"c",5,1e+20\n', '"d",6,0\n']  # fmt: skip
    want = [(lines[0] + lines[1]).encode(), lines[2].encode(), "".join(lines[3:]).encode()]
    table = key_blocks(frame, render, OutputAttrs())
    assert table.column(K).to_pylist() == [5, 7, 9]
    assert table.column(BLOCK).to_pylist() == want
    # a string holding a newline, and a null: the line-by-line renderer (a null empties the
    # line, as before)
    odd = frame.with_columns(pl.Series("s", ["a", "b", "", "x\ny", "c", None]))
    got = key_blocks(odd, render, OutputAttrs()).column(BLOCK).to_pylist()
    assert got == [want[0], want[1], ('"x\ny",4,-3\n' + lines[4] + "\n").encode()]


def test_handoff_through_shared_memory_only_with_the_token() -> None:
    from ess.udb.export import _hand_over, _handoff_dir, _read

    table = key_blocks(
        pl.DataFrame({K: [1, 2, 2], "s": ["a", "b", "c"]}), [("s", "s", "S")], OutputAttrs()
    )
    with _handoff_dir() as handoff:
        if handoff is None:  # no /dev/shm here: the results travel over the connection
            return
        folder, token = handoff
        assert _hand_over(table, folder, "another client's token") is None
        path = _hand_over(table, folder, token)
        assert path is not None and path.startswith(folder)
        got = _read(path)
    assert got.equals(table)  # still readable: the mapping outlives the directory
    assert not Path(folder).exists()
    assert _hand_over(table, folder, token) is None  # gone: the result is sent instead


def test_import_batches_shipped_through_shared_memory() -> None:
    import pyarrow as pa

    from ess.udb.handoff import Shipper, unpack

    parts = {3: pa.table({"k": ["a", "b"]}), 7: pa.table({"k": ["c"]})}
    seen: list[str] = []

    def probe(address: str, folder: str, token: str) -> bool:
        seen.append(address)
        return address == "near"

    shipper = Shipper(probe)
    try:
        far = shipper.pack("far", parts)
        near = shipper.pack("near", parts)
        shipper.pack("near", parts)
        assert seen == ["far", "near"]  # each worker asked once
        assert far is parts
        if shipper.handoff.folder is None:  # no /dev/shm here
            assert near is parts
            return
        assert isinstance(near, tuple)
        got = unpack(near)
        assert {p: t.to_pylist() for p, t in got.items()} == {p: t.to_pylist() for p, t in
                                                               parts.items()}  # fmt: skip
        assert len(shipper.files) == 2
        shipper.done()
        assert not Path(near[0]).exists() and not shipper.files
    finally:
        folder = shipper.handoff.folder
        shipper.close()
    assert folder is None or not Path(folder).exists()

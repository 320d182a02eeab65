"""Batching of the input: chunks cut at record ends (outside quotes), header skips, tails."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ess.aq.batches import read_chunks
from ess.aq.rules import InputAttrs

RECORD = st.one_of(
    st.from_regex(r"\A[a-z0-9,]{0,12}\Z"),
    st.from_regex(r'\A[a-z]{0,3},"[a-z\n,]{0,6}(""[a-z\n]{0,3})?"\Z'),  # quoted, with newlines
)


@contextmanager
def reading(mode: str) -> Iterator[None]:
    """Files memory-mapped (the default) or read with read() (stdin's path, ESS_AQ_MMAP=0)."""
    old = os.environ.get("ESS_AQ_MMAP")
    os.environ["ESS_AQ_MMAP"] = "1" if mode == "mapped" else "0"
    try:
        yield
    finally:
        if old is None:
            del os.environ["ESS_AQ_MMAP"]
        else:
            os.environ["ESS_AQ_MMAP"] = old


MODES = pytest.mark.parametrize("mode", ["mapped", "read"])


@MODES
@settings(max_examples=200, deadline=None)
@given(
    records=st.lists(RECORD, max_size=60),
    tail=st.booleans(),
    size=st.integers(1, 40),
    skip=st.integers(0, 2),
)
def test_chunks_rebuild_the_input_at_record_ends(
    tmp_path_factory: pytest.TempPathFactory,
    mode: str,
    records: list[str],
    tail: bool,
    size: int,
    skip: int,
) -> None:
    header = "".join(f"h{i}\n" for i in range(skip))
    body = "\n".join(records) + ("\n" if tail and records else "")
    path = Path(tmp_path_factory.mktemp("r")) / "in.csv"
    path.write_bytes((header + body).encode())
    with reading(mode):
        chunks = list(read_chunks(str(path), InputAttrs(skip=skip), chunk_size=size))
    assert b"".join(bytes(c.data) for c in chunks) == body.encode()
    # read(): bytes, except that the first chunk after skipped lines may be a view of its
    # block (the rest of the block is not copied away from the header)
    want = memoryview if mode == "mapped" else bytes
    assert all(isinstance(c.raw, want) for c in chunks[1 if skip else 0 :])
    line = skip + 1
    for chunk in chunks:
        assert chunk.first_line == line
        assert chunk.newlines == chunk.data.count(b"\n")
        line += chunk.newlines
        if chunk is not chunks[-1]:  # cut after a newline that is outside quotes
            assert chunk.data.endswith(b"\n") and chunk.data.count(b'"') % 2 == 0


@MODES
@pytest.mark.parametrize("skip", [0, 3, 7, 40])
def test_byte_skips_and_line_skips_past_the_end(tmp_path: Path, mode: str, skip: int) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"ab\ncd\nef\n")
    with reading(mode):
        by_bytes = list(read_chunks(str(path), InputAttrs(skip=skip, skip_unit="b"), 4))
        by_lines = list(read_chunks(str(path), InputAttrs(skip=skip), 4))
    assert b"".join(c.data for c in by_bytes) == b"ab\ncd\nef\n"[skip:]
    assert all(c.first_line == 1 for c in by_bytes[:1])
    assert b"".join(c.data for c in by_lines) == b"".join(b"ab\ncd\nef\n".splitlines(True)[skip:])


def _maps_of(path: Path) -> int:
    with open("/proc/self/maps") as maps:
        return sum(line.rstrip().endswith(str(path)) for line in maps)


def test_a_mapped_chunk_is_unmapped_once_dropped(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"".join(b"%08d,x\n" % i for i in range(100_000)))  # 1 MB
    with reading("mapped"):
        chunks = read_chunks(str(path), InputAttrs(), chunk_size=64 << 10)
        kept = [next(chunks) for _ in range(3)]
        assert _maps_of(path) == 3
        read = sum(len(c.raw) for c in kept)
        del kept
        assert _maps_of(path) <= 1  # only the reader's current one outlives its chunk
        read += sum(len(c.raw) for c in chunks)
    assert read == path.stat().st_size
    assert _maps_of(path) == 0


@MODES
@pytest.mark.parametrize(("unit", "skip", "rest"), [
    ("r", 1, b"1,2\n"),  # the first record spans two lines
    ("l", 1, b'line"\n1,2\n'),
    ("l", 2, b"1,2\n"),
    ("r", 2, b""),
    ("r", 3, b""),
])  # fmt: skip
def test_record_skips_honour_quoted_newlines(
    tmp_path: Path, mode: str, unit: str, skip: int, rest: bytes
) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b'h,"multi\nline"\n1,2\n')
    with reading(mode):
        chunks = list(read_chunks(str(path), InputAttrs(skip=skip, skip_unit=unit), 4))
    assert b"".join(c.data for c in chunks) == rest
    if chunks:  # line numbers count the skipped lines
        assert chunks[0].first_line == 1 + 3 - rest.count(b"\n")


@MODES
def test_record_skips_with_esc_count_lines_in_both_paths(tmp_path: Path, mode: str) -> None:
    """With `esc` a record is one line, so `+1r` skips one line whether mapped or read."""
    path = tmp_path / "in.csv"
    path.write_bytes(b'h,"multi\nline"\n1,2\n')
    with reading(mode):
        chunks = list(read_chunks(str(path), InputAttrs(skip=1, skip_unit="r", esc=True), 4))
    assert b"".join(c.data for c in chunks) == b'line"\n1,2\n'

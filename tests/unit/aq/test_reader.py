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


def _shell(script: str, cwd: Path) -> bytes:
    import subprocess
    import sys

    bindir = Path(sys.executable).parent
    env = {**os.environ, "ESS_WARM": "0", "PATH": f"{bindir}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True,
                          check=True, timeout=120)  # fmt: skip
    return done.stdout + done.stderr


def test_stdin_as_a_regular_file_is_read_from_its_offset_and_left_at_its_end(
    tmp_path: Path,
) -> None:
    """`ess stream` hands decompressed input over as a regular file, a shell as `< file`:
    aq_pp maps it (no copy) from the offset the shell left, and leaves the offset at the
    end, as reading it would. The output is the same as through a pipe."""
    rows = "".join(f"u{i % 97},{i},{i * 0.25}\n" for i in range(5000))
    (tmp_path / "in.csv").write_text("user,n,x\n" + rows)
    pp = "aq_pp -f,+1 - -d s:user i:n f:x -eval i:m 'n*2' -o -"
    piped = _shell(f"cat in.csv | {pp}", tmp_path)
    assert piped.count(b"\n") == 5001
    assert _shell(f"{pp} < in.csv", tmp_path) == piped
    # head (GNU) puts the offset back just after the line it printed: aq_pp starts there
    after_head = _shell(f"{{ head -n 1 >/dev/null; {pp.replace(',+1', '')}; cat; }} < in.csv",
                        tmp_path)  # fmt: skip
    assert after_head == piped
    with_tail = _shell(f"{{ {pp}; echo more; cat; }} < in.csv", tmp_path)
    assert with_tail == piped + b"more\n"  # nothing left for cat: aq_pp read it all


def test_stdin_that_is_a_regular_file_is_mapped_not_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import sys

    path = tmp_path / "in.csv"
    path.write_bytes(b"skip me\n" + b"a,1\n" * 1000)
    with open(path, "rb") as raw:
        raw.seek(8)  # what a shell leaves after another command read the first line
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(raw))
        chunks = list(read_chunks("-", InputAttrs(fmt="csv"), chunk_size=1 << 12))
        assert all(isinstance(c.raw, memoryview) for c in chunks)
        assert b"".join(bytes(c.raw) for c in chunks) == b"a,1\n" * 1000
        assert os.lseek(raw.fileno(), 0, os.SEEK_CUR) == path.stat().st_size

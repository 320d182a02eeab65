"""Batching of the input: chunks cut at record ends (outside quotes), header skips, tails."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ess.aq.reader import read_chunks
from ess.aq.rules import InputAttrs

RECORD = st.one_of(
    st.from_regex(r"\A[a-z0-9,]{0,12}\Z"),
    st.from_regex(r'\A[a-z]{0,3},"[a-z\n,]{0,6}(""[a-z\n]{0,3})?"\Z'),  # quoted, with newlines
)


@settings(max_examples=200, deadline=None)
@given(
    records=st.lists(RECORD, max_size=60),
    tail=st.booleans(),
    size=st.integers(1, 40),
    skip=st.integers(0, 2),
)
def test_chunks_rebuild_the_input_at_record_ends(
    tmp_path_factory, records: list[str], tail: bool, size: int, skip: int
) -> None:
    header = "".join(f"h{i}\n" for i in range(skip))
    body = "\n".join(records) + ("\n" if tail and records else "")
    path = Path(tmp_path_factory.mktemp("r")) / "in.csv"
    path.write_bytes((header + body).encode())
    chunks = list(read_chunks(str(path), InputAttrs(skip=skip), chunk_size=size))
    assert b"".join(bytes(c.data) for c in chunks) == body.encode()
    line = skip + 1
    for chunk in chunks:
        assert chunk.first_line == line
        assert chunk.newlines == chunk.data.count(b"\n")
        line += chunk.newlines
        if chunk is not chunks[-1]:  # cut after a newline that is outside quotes
            assert chunk.data.endswith(b"\n") and chunk.data.count(b'"') % 2 == 0

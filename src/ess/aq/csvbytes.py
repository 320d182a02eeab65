"""Bytes for Polars' CSV reader that it reads as the text they are.

``pl.read_csv`` on a buffer that starts like compressed data (the gzip, zlib or zstd magic
bytes) inflates it instead of reading it: a record whose first bytes happen to be
``\\x1f\\x8b`` failed as "unexpected end of file" (found by the value fuzzer), and a gzip
member would have been read decompressed, which Essentia does not do. Such a buffer gets one
blank line in front, and the reader's first row (that blank line's) is dropped.
"""

from __future__ import annotations

MAGIC = (b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda")


def guarded(data: bytes) -> tuple[bytes, int]:
    """(the bytes to hand to ``pl.read_csv``, how many leading rows of its result to drop)."""
    if data.startswith(MAGIC):
        return b"\n" + data, 1
    return data, 0

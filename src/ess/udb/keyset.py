"""Row numbers of a batch's keys in a vector: the C helper's key set (`_keyset.c`), for the
in-order fold (ess.udb.fold) of a vector keyed by one string column without nulls.

The stored keys are numbered 0..n-1 in their order; each batch row gets its key's number,
a key not stored yet the next free number at its first row. One pass over the keys as Polars
holds them (Arrow string views, chunk by chunk), where the Polars path joins, filters the
misses, takes their unique keys and joins again: about a third of the fold's CPU on the
benchmark's job.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from ess.errors import UdbError
from ess.udb.hashing import view_addresses

_NO_MEMORY = "out of memory in the key set of a vector merge"


def key_rows(current: pl.DataFrame, batch: pl.DataFrame, key: str
             ) -> tuple[np.ndarray, np.ndarray] | None:  # fmt: skip
    """(the row of each batch row's key: stored rows 0..n-1, new keys n, n+1, ... in order of
    first appearance; the batch rows where each new key first appears), or None: not a key
    of one string column without nulls on both sides, or no C helper."""
    from ess.aq.native import native_library

    stored, incoming = current.get_column(key), batch.get_column(key)
    if stored.dtype != pl.String or incoming.dtype != pl.String:
        return None
    if stored.null_count() or incoming.null_count():
        return None
    lib = native_library()
    if lib is None:
        return None
    handle = lib.ess_keyset_new(current.height + 1024)  # it grows with the new keys
    if not handle:
        raise UdbError(_NO_MEMORY)
    try:
        # the set points at the stored long keys' bytes: their chunks stay referenced here
        # until it is freed
        stored_chunks = _chunks(current, key)
        _add(lib, handle, stored_chunks, np.empty(current.height, dtype=np.int64))
        rows = np.empty(batch.height, dtype=np.int64)
        first = _add(lib, handle, _chunks(batch, key), rows)
        return rows, first
    finally:
        lib.ess_keyset_free(handle)


def _chunks(frame: pl.DataFrame, key: str) -> list[pa.Array]:
    """The key column as Polars holds it: string views, chunk by chunk (no rechunk)."""
    column = frame.select(key).to_arrow(compat_level=pl.CompatLevel.newest()).column(0)
    return [chunk for chunk in column.chunks if len(chunk)]


def _add(lib: Any, handle: int, chunks: list[pa.Array], rows: np.ndarray) -> np.ndarray:
    """Each chunk's keys into the set, their numbers into `rows`; the rows where new keys first
    appear."""
    first = np.empty(len(rows), dtype=np.int64)
    fresh, base = 0, 0
    for chunk in chunks:
        n = len(chunk)
        where, buffers = view_addresses(chunk)
        got = int(lib.ess_keyset_add_views(handle, where, buffers, n, base,
                                            rows[base:].ctypes.data,
                                            first[fresh:].ctypes.data))  # fmt: skip
        if got < 0:
            raise UdbError(_NO_MEMORY)
        fresh += got
        base += n
    return first[:fresh]

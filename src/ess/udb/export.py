"""`aq_udb -exp` without client-side row work: workers render CSV and send it per key.

A plain export (no `-sort`, `-top` or limits) is the rows in export order: keys by first
insertion (key stamp ``__k``), a key's rows as stored. All rows of a key live in one partition,
so each worker sorts each of its partitions on the key stamp, renders the lines (Essentia CSV,
``ess.aq.writer`` field formatting) and sends, per key, the key stamp and the key's lines as one
block of bytes: a zero-copy view of the rendered line buffer cut at the key boundaries. The
client only sorts the key stamps (one per key, not per row) and gathers the blocks into the
output in that order — no per-row merge, no re-rendering.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ess.udb import server
from ess.udb.merge import K, key_order
from ess.udb.server import LINE, Query

if TYPE_CHECKING:
    from ess.udb.client import UdbSession

BLOCK = "__block"


def w_export(q: Query) -> pa.Table:
    """Run in a worker: (``__k``, ``__block``) per key of this worker's partitions."""
    store = server._store()
    spec = server.spec_of(q.spec_text, q.db)
    state = store.db(q.db)
    assert q.render is not None
    line = pl.concat_str([server.render_line(q.render, q.out_attrs), pl.lit("\n")])
    tables = []
    with state.lock:
        for pid in q.pids:
            frame = server.partition_rows(store, spec, state, q, pid)
            if frame is None:
                continue
            if q.seg is not None:
                from ess.udb.hashing import segment_mask

                frame = frame.filter(segment_mask(frame, [c.name for c in spec.pkey], q.seg))
            if frame.height:
                tables.append(key_blocks(key_order(frame).select(K, line.alias(LINE))))
    if not tables:
        return pa.table({K: pa.array([], pa.int64()), BLOCK: pa.array([], pa.large_binary())})
    return pa.concat_tables(tables)


def key_blocks(rendered: pl.DataFrame) -> pa.Table:
    """(``__k``, ``__block``) from rows in key order with their rendered lines: each block is
    the slice of the line buffer holding one key's lines (no copy)."""
    lines = rendered.get_column(LINE).to_arrow()
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    lines = lines.cast(pa.large_string())
    n = len(lines)
    starts = rendered.select(pl.arg_where(pl.col(K).diff().fill_null(1) != 0)).to_series()
    offsets = pl.from_arrow(
        pa.Array.from_buffers(pa.int64(), n + 1, [None, lines.buffers()[1]], offset=lines.offset)
    )
    assert isinstance(offsets, pl.Series)
    bounds = pl.concat([offsets.gather(starts), offsets.tail(1)]).rechunk().to_arrow()
    blocks = pa.Array.from_buffers(
        pa.large_binary(), len(starts), [None, bounds.buffers()[1], lines.buffers()[2]],
        offset=bounds.offset,
    )  # fmt: skip
    return pa.table({K: rendered.get_column(K).gather(starts).to_arrow(), BLOCK: blocks})


def export_body(s: UdbSession, q: Query) -> memoryview:
    """The CSV lines of a plain export, in export order (no title)."""
    from ess.udb.client import PARTITIONS

    pids = range(PARTITIONS)
    addrs = s._require_workers(q.db, pids)
    futures = [
        s._run(addrs[name], w_export, Query(**{**q.__dict__, "pids": owned}))
        for name, owned in s.by_owner(pids).items()
    ]
    tables = [t for t in s.gather(futures) if t.num_rows]
    if not tables:
        return memoryview(b"")
    table = pa.concat_tables(tables)
    order = pc.sort_indices(table.column(K))  # stamps are unique: one block per key
    blocks = pc.take(table.column(BLOCK), order)
    if isinstance(blocks, pa.ChunkedArray):
        blocks = blocks.combine_chunks()
    n = len(blocks)
    offsets = pa.Array.from_buffers(pa.int64(), n + 1, [None, blocks.buffers()[1]],
                                    offset=blocks.offset)  # fmt: skip
    start, end = offsets[0].as_py(), offsets[n].as_py()
    return memoryview(blocks.buffers()[2])[start:end]

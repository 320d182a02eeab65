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

import contextlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from ess.udb import handoff, server
from ess.udb.merge import K, key_order
from ess.udb.server import LINE, Query

if TYPE_CHECKING:
    from ess.udb.client import UdbSession

BLOCK = "__block"
#: small partitions (vectors) are rendered in groups of about this many rows; large ones
#: alone (sorting and gathering one big frame costs more than several small ones)
GROUP_ROWS = 1 << 16
#: threads rendering one worker's partitions
RENDER_THREADS = min(4, os.cpu_count() or 1)


def w_export(q: Query, handoff: tuple[str, str] | None = None) -> pa.Table | str:
    """Run in a worker: (``__k``, ``__block``) per key of this worker's partitions; with
    `handoff` (directory, token) shared with the client, the path of an Arrow file there."""
    store = server._store()
    spec = server.spec_of(q.spec_text, q.db)
    state = store.db(q.db)
    render = q.render
    assert render is not None
    groups: list[pl.DataFrame] = []
    group: list[pl.DataFrame] = []  # small partitions are rendered together (fewer calls)
    with state.lock:  # the rows are read (and rules run) under the lock; frames are immutable
        for pid in q.pids:
            frame = server.partition_rows(store, spec, state, q, pid)
            if frame is None:
                continue
            if q.seg is not None:
                from ess.udb.hashing import segment_mask

                frame = frame.filter(segment_mask(frame, [c.name for c in spec.pkey], q.seg))
            if frame.height:
                group.append(frame)
            if sum(f.height for f in group) >= GROUP_ROWS:
                groups.append(pl.concat(group, how="vertical", rechunk=False))
                group = []
        if group:
            groups.append(pl.concat(group, how="vertical", rechunk=False))

    needed = list(dict.fromkeys([K, *(name for name, _, _ in render)]))  # gather only these

    def blocks(frame: pl.DataFrame) -> pa.Table:
        return key_blocks(key_order(frame.select(needed)), render, q.out_attrs)

    # Groups render in parallel threads (Polars and the C renderer release the GIL): a worker
    # holding more partitions than another keeps both cores busy once the other is done.
    with ThreadPoolExecutor(max_workers=min(len(groups), RENDER_THREADS) or 1) as pool:
        tables = list(pool.map(blocks, groups))
    if not tables:
        return pa.table({K: pa.array([], pa.int64()), BLOCK: pa.array([], pa.large_binary())})
    table = pa.concat_tables(tables)
    if handoff is not None:
        path = _hand_over(table, *handoff)
        if path is not None:
            return path
    return table


def _hand_over(table: pa.Table, directory: str, token: str) -> str | None:
    """The result written where the client maps it, if this worker shares the client's
    filesystem and the write succeeds; None otherwise."""
    return handoff.write(table, directory) if handoff.sees(directory, token) else None


def key_blocks(frame: pl.DataFrame, render: list[tuple[str, str, str]], attrs: Any) -> pa.Table:
    """(``__k``, ``__block``) from rows in key order: each block is the slice of the rendered
    CSV holding one key's lines (no copy)."""
    body, ends = _rendered(frame, render, attrs)
    starts = frame.select(pl.arg_where(pl.col(K).diff().fill_null(1) != 0)).to_series()
    bounds = pl.concat([ends.gather(starts), ends.tail(1)]).rechunk().to_arrow()
    blocks = pa.Array.from_buffers(
        pa.large_binary(), len(starts), [None, bounds.buffers()[1], body], offset=bounds.offset
    )
    return pa.table({K: frame.get_column(K).gather(starts).to_arrow(), BLOCK: blocks})


def _rendered(
    frame: pl.DataFrame, render: list[tuple[str, str, str]], attrs: Any
) -> tuple[pa.Buffer, pl.Series]:
    """The rows as CSV lines in one buffer, and the n + 1 offsets of the line starts in it
    (the last one is the end)."""
    from ess.aq.writer import OutCol, render_rows, render_rows_with_ends

    n = frame.height
    cols = [OutCol(name, label, typ) for name, label, typ in render]
    # ess.aq.writer.render_rows is the fast renderer (aq_pp's output), but it prints a null
    # as an empty field where render_line makes the whole line empty, and needs a one-byte
    # separator: rows with nulls (not produced by imports) take render_line.
    if len(attrs.sep.encode()) == 1 and not any(frame.get_column(c.name).null_count()
                                                  for c in cols):  # fmt: skip
        zero = pl.zeros(1, dtype=pl.Int64, eager=True)
        native = render_rows_with_ends(frame, cols, attrs)
        if native is not None:  # the C helper reports each row's end: no newline scan
            text, row_ends = native
            assert row_ends is not None
            return pa.py_buffer(text), pl.concat([zero, row_ends])
        body = pa.py_buffer(render_rows(frame, cols, attrs))
        data = pl.from_arrow(pa.Array.from_buffers(pa.uint8(), body.size, [None, body]))
        assert isinstance(data, pl.Series)
        ends = pl.DataFrame({"b": data}).select(pl.arg_where(pl.col("b") == 10)).to_series()
        if ends.len() == n:  # exactly one newline per row: no string field holds one
            return body, pl.concat([zero, ends.cast(pl.Int64) + 1])
    line = pl.concat_str([server.render_line(render, attrs), pl.lit("\n")])
    lines = frame.select(line.alias(LINE)).get_column(LINE).to_arrow()
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    lines = lines.cast(pa.large_string())
    offsets = pl.from_arrow(
        pa.Array.from_buffers(pa.int64(), n + 1, [None, lines.buffers()[1]], offset=lines.offset)
    )
    assert isinstance(offsets, pl.Series)
    return lines.buffers()[2], offsets


def export_body(s: UdbSession, q: Query) -> list[memoryview]:
    """The CSV lines of a plain export, in export order (no title), as consecutive pieces."""
    from ess.udb.client import PARTITIONS

    pids = range(PARTITIONS)
    addrs = s._require_workers(q.db, pids)
    with _handoff_dir() as handoff:
        futures = [
            s._run(addrs[name], w_export, Query(**{**q.__dict__, "pids": owned}), handoff)
            for name, owned in s.by_owner(pids).items()
        ]
        results = s.gather(futures)
        tables = [_read(r) if isinstance(r, str) else r for r in results]
        tables = [t for t in tables if t.num_rows]
        if not tables:
            return []
        table = pa.concat_tables(tables)
        order = _arrow("sort_indices", table.column(K))  # stamps are unique: one per key
        blocks = _arrow("take", table.column(BLOCK), order)
    chunks = blocks.chunks if isinstance(blocks, pa.ChunkedArray) else [blocks]
    # one view per chunk: joining them would copy the whole export once more
    return [_data_view(chunk) for chunk in chunks if len(chunk)]


def _arrow(function: str, *args: Any) -> Any:
    """An Arrow compute kernel by name. From its registry, ``pyarrow._compute``, when there
    is one: importing ``pyarrow.compute`` wraps every kernel in Python (~0.2 CPU s once per
    process — each `aq_udb`); this module is also loaded by the workers and the scheduler,
    which never sort here, so nothing imports it at module level."""
    try:
        from pyarrow._compute import call_function
    except ImportError:  # pragma: no cover - a pyarrow without the private registry module
        from pyarrow.compute import call_function
    return call_function(function, list(args))


def _data_view(blocks: pa.Array) -> memoryview:
    """The bytes of a large_binary array's values, in order, without copying."""
    n = len(blocks)
    offsets = pa.Array.from_buffers(pa.int64(), n + 1, [None, blocks.buffers()[1]],
                                    offset=blocks.offset)  # fmt: skip
    start, end = offsets[0].as_py(), offsets[n].as_py()
    return memoryview(blocks.buffers()[2])[start:end]


@contextlib.contextmanager
def _handoff_dir() -> Iterator[tuple[str, str] | None]:
    """A private directory in shared memory for the results of workers on this machine: a
    worker's rendered export (hundreds of MB for big tables) is written there and mapped here
    instead of crossing the TLS connection (see ess.udb.handoff)."""
    with handoff.Handoff() as shared:
        yield shared.open()


def _read(path: str) -> pa.Table:
    return handoff.read_mapped(path)

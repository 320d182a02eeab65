"""A stable key hash of our own, vectorised with Polars/Arrow (no per-row Python).

Keys map to partitions with this hash, so it must not change between processes, versions of
Python/Polars, or machines (Polars' own ``hash()`` makes no such promise). A string hashes its
UTF-8 bytes with a polynomial hash modulo the Mersenne prime M = 2**31-1:
``h = sum(byte[j] * B**j) mod M``; integers hash their value mod M, floats their IEEE bit
pattern; composite keys combine column hashes in order. Every intermediate stays below 2**63, so
the arithmetic is exact in Int64 on any platform.
"""

from __future__ import annotations

from itertools import accumulate, repeat
from typing import Any

import polars as pl
import pyarrow as pa

M = (1 << 31) - 1
#: K divides M-1, so B = 7**((M-1)/K) (7 is a primitive root of M) has multiplicative order K:
#: B**p == B**(p mod K), which lets a string's hash be cut out of one prefix sum over the whole
#: byte buffer (see _string_hash) with only a K-entry table of powers.
K = 2 * 3 * 3 * 7 * 11 * 31
B = pow(7, (M - 1) // K, M)
# B**i by running products (K modular exponentiations took 0.13 s of CPU at every import);
# B**((K-i) % K) is the same run read backwards
_powers = list(accumulate(repeat(B, K - 1), lambda acc, b: acc * b % M, initial=1))
_POW = pl.Series("pow", _powers, dtype=pl.Int64)
_INV = pl.Series("inv", [_powers[0], *reversed(_powers[1:])], dtype=pl.Int64)


def _string_hash(col: pl.Series) -> pl.Series:
    """h = sum(byte[j] * B**j) mod M over the string's UTF-8 bytes (j from 0)."""
    # Polars converts its string views to Arrow's large_string itself far faster (about 8x)
    # than a pyarrow cast from string_view
    arr = col.cast(pl.String).fill_null("").to_arrow(compat_level=pl.CompatLevel.oldest())
    return _arrow_string_hash(arr)


def _arrow_string_hash(arr: pa.Array | pa.ChunkedArray) -> pl.Series:
    """`_string_hash` of an Arrow string column without nulls."""
    arr = _large_strings(arr)
    n = len(arr)
    offs = _series(
        pa.Array.from_buffers(pa.int64(), n + 1, [None, arr.buffers()[1]], offset=arr.offset)
    )
    start, end = int(offs[0]), int(offs[-1])
    if end == start:
        return pl.zeros(n, dtype=pl.Int64, eager=True).alias("h")
    native = _native_string_hash(arr)
    if native is not None:
        return native
    data = _series(pa.Array.from_buffers(pa.uint8(), end - start, [None, arr.buffers()[2]],
                                         offset=start))  # fmt: skip
    # prefix sums of byte * B**(absolute position) mod M, with a leading 0; B**p repeats with
    # period K, so the powers come from one cached run of _TILE periods, chunk by chunk
    tile = _tiled()
    terms = [
        pl.DataFrame({"b": chunk, "p": tile.slice(0, chunk.len())})
        .select(t=(pl.col("b").cast(pl.Int64) * pl.col("p")) % M)
        .get_column("t")
        for chunk in (data.slice(o, tile.len()) for o in range(0, data.len(), tile.len()))
    ]
    prefix = pl.concat([pl.zeros(1, dtype=pl.Int64, eager=True), *terms]).cum_sum()
    rel = (offs - start).alias("o")
    frame = pl.DataFrame({"s": rel.slice(0, n), "e": rel.slice(1)})
    out = frame.select(
        h=(
            ((pl.lit(prefix).gather(pl.col("e")) - pl.lit(prefix).gather(pl.col("s"))) % M)
            * pl.lit(_INV).gather(pl.col("s") % K)
        )
        % M
    )
    return out.get_column("h")


def _native_string_hash(arr: pa.Array) -> pl.Series | None:
    """The same hash from the C helper (ess.aq.native), or None without it."""
    from ess.aq.native import native_library

    lib = native_library()
    if lib is None:
        return None
    n = len(arr)
    out = pa.allocate_buffer(8 * n)
    lib.ess_string_hash(*_addresses(arr), n, B, out.address)
    return _series(pa.Array.from_buffers(pa.int64(), n, [None, out])).alias("h")


def _large_strings(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One large_string array (what the C helper reads) of an Arrow string column."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr if arr.type == pa.large_string() else arr.cast(pa.large_string())


def _addresses(arr: pa.Array) -> tuple[int, int]:
    """(offsets, data) addresses of a large_string array for the C helper, its slice offset
    applied (an array of empty strings may have no data buffer)."""
    offsets, data = arr.buffers()[1], arr.buffers()[2]
    return offsets.address + 8 * arr.offset, data.address if data is not None else 0


def _series(array: pa.Array) -> pl.Series:
    """A Polars series on an Arrow array, through a one-column table: Polars converts a bare
    array with a helper that imports pyarrow.compute, ~0.2 CPU s once per process (every
    `aq_pp -imp`), which nothing else on the import path needs."""
    frame = pl.from_arrow(pa.table({"v": array}))
    assert isinstance(frame, pl.DataFrame)
    return frame.to_series()


#: periods of B**p held in the cached power run (64 * K values, 22 MB)
_TILE = 64
_TILED: list[pl.Series] = []


def _tiled() -> pl.Series:
    if not _TILED:
        _TILED.append(pl.concat([_POW] * _TILE, rechunk=True))
    return _TILED[0]


def _column_hash(col: pl.Series) -> pl.Series:
    if col.dtype == pl.String:
        return _string_hash(col)
    if col.dtype == pl.Float64:
        bits = col.fill_null(0.0).to_arrow()
        if isinstance(bits, pa.ChunkedArray):
            bits = bits.combine_chunks()
        return (_series(bits.view(pa.int64())) % M).cast(pl.Int64)
    ints = col.fill_null(0).cast(pl.Int64, wrap_numerical=True)
    return ((ints % M + M) % M).cast(pl.Int64)


def key_hash(frame: pl.DataFrame, columns: list[str], table: pa.Table | None = None
             ) -> pl.Series:  # fmt: skip
    """Int64 hash in [0, 2**31-1) per row of the key columns. `table`: the frame as Arrow
    (its string columns are hashed as they are, without a second conversion)."""
    acc: pl.Series | None = None
    for name in columns:
        col = frame.get_column(name)
        if table is not None and col.dtype == pl.String and not col.null_count():
            h = _arrow_string_hash(table.column(name))
        else:
            h = _column_hash(col)  # already in [0, M)
        acc = h if acc is None else (acc * 131 + h) % M
    if acc is None:
        return pl.zeros(frame.height, dtype=pl.Int64, eager=True).alias("h")
    return acc.alias("h")


def partition_of(frame: pl.DataFrame, columns: list[str], partitions: int) -> pl.Series:
    return (key_hash(frame, columns) % partitions).alias("__p")


def cut_by_partition(
    frame: pl.DataFrame,
    columns: list[str],
    partitions: int,
    *,
    stamps: tuple[str, int] | None = None,
) -> dict[int, pa.Table]:
    """The frame's rows by the partition of their key, in their order within each partition:
    a stable counting sort on the partition number (NumPy's radix sort for small integers),
    one Arrow take, then zero-copy slices. `stamps` (name, base): a last Int64 column
    numbering the rows from base in the frame's order, made from the sort's own permutation.

    On a 400,000-row batch of the benchmark's files this is 26 ms against 29 for
    `partition_by` and one Arrow conversion per partition; hashing the key from the Arrow
    table and stamping from the permutation take about 8 ms more off (one conversion of the
    string key and one Polars column fewer)."""
    import numpy as np

    assert partitions <= 256  # the partition numbers fit the radix sort's uint8
    viewed = _view_cut(frame, columns, partitions, stamps)
    if viewed is not None:
        return viewed
    table = frame.to_arrow()
    # NumPy <-> Arrow without copies and without Polars' or pa.array's NumPy conversions,
    # which import numpy.ma at first use: 12 ms of CPU in every aq_pp -imp
    part = (key_hash(frame, columns, table) % partitions).cast(pl.UInt8).to_arrow()
    part = part.to_numpy(zero_copy_only=True)
    order = np.argsort(part, kind="stable").astype(np.int64, copy=False)
    counts = np.bincount(part, minlength=partitions)
    ordered = table.take(_int64_array(order))  # Arrow's take: 9 ms where Polars' gather took 13
    if stamps is not None:
        name, base = stamps
        ordered = ordered.append_column(name, _int64_array(order + base))
    out: dict[int, pa.Table] = {}
    start = 0
    for pid, count in enumerate(counts.tolist()):
        if count:
            out[pid] = ordered.slice(start, count)
        start += count
    return out


def _view_cut(frame: pl.DataFrame, columns: list[str], partitions: int,
              stamps: tuple[str, int] | None) -> dict[int, pa.Table] | None:  # fmt: skip
    """`cut_by_partition` of a batch keyed by one string column without nulls, on Polars' own
    string views: the C helper hashes and orders the views (no conversion to offsets) and
    gathers every string column without nulls as compacted views (`ess_view_gather`: a
    16-byte copy per short string, where Arrow's take of a large_string copied each string
    on its own: 0.5 s of the benchmark's 19.2M rows). The staged files then hold views, which
    the worker's Polars takes as they are (no conversion back); a string column with nulls or
    more than 2 GiB of long strings (the views' 32-bit offsets) is taken by Arrow as
    large_string. None: not such a batch, or no helper (the caller's general cut)."""
    from ess.aq.native import native_library

    if len(columns) != 1 or frame.schema[columns[0]] != pl.String:
        return None
    lib = native_library()
    if lib is None or frame.get_column(columns[0]).null_count():
        return None
    views = frame.select(pl.col(pl.String)).to_arrow(compat_level=pl.CompatLevel.newest())
    order, counts = _view_order(lib, _one_chunk(views.column(columns[0])), partitions)
    take = _int64_array(order)
    whole: dict[str, pa.Array] = {}  # gathered at once, then sliced by partition
    # string views gathered partition by partition (and whether any string is long)
    by_part: dict[str, tuple[pa.Array, bool]] = {}
    for name in frame.columns:
        col = frame.get_column(name)
        if col.dtype == pl.String and not col.null_count():
            arr = _one_chunk(views.column(name))
            long_bytes = _long_bytes(lib, arr)
            if long_bytes < 1 << 31:  # the views' offsets are 32-bit
                by_part[name] = (arr, long_bytes > 0)
                continue
        whole[name] = _gather_fixed(lib, _one_chunk(col.to_arrow()), order, take)
    if stamps is not None:
        whole[stamps[0]] = _int64_array(order + stamps[1])
    names = [*frame.columns, *([stamps[0]] if stamps else [])]
    out: dict[int, pa.Table] = {}
    start = 0
    for pid, count in enumerate(counts.tolist()):
        if count:
            rows = order[start : start + count]
            cols = [_gather_views(lib, *by_part[name], rows) if name in by_part
                    else whole[name].slice(start, count) for name in names]  # fmt: skip
            out[pid] = pa.Table.from_arrays(cols, names=names)
        start += count
    return out


def _view_order(lib: Any, key: pa.Array, partitions: int) -> tuple[Any, Any]:
    """(order, counts) of the cut from a string view key column: each row's partition (the
    key hash mod `partitions`), then the rows partition after partition, in row order."""
    import numpy as np

    n = len(key)
    order = np.empty(n, dtype=np.int64)
    counts = np.empty(partitions, dtype=np.int64)
    scratch = np.empty(n, dtype=np.uint8)
    where, buffers = view_addresses(key)
    lib.ess_view_partition_order(where, buffers, n, B, partitions, scratch.ctypes.data,
                                 order.ctypes.data, counts.ctypes.data)  # fmt: skip
    return order, counts


def _one_chunk(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The column as one array: its only chunk as it is (combine_chunks copies even one)."""
    if not isinstance(arr, pa.ChunkedArray):
        return arr
    return arr.chunk(0) if arr.num_chunks == 1 else arr.combine_chunks()


def view_addresses(arr: pa.Array) -> tuple[int, Any]:
    """(address of the first view, a C array of the data buffers' addresses) of a string view
    array, its slice offset applied; the C array keeps nothing alive: `arr` must."""
    import ctypes

    bufs = arr.buffers()
    data = [b.address if b is not None else 0 for b in bufs[2:]] or [0]
    return bufs[1].address + 16 * arr.offset, (ctypes.c_void_p * len(data))(*data)


def _long_bytes(lib: Any, arr: pa.Array, order: Any = None) -> int:
    """Bytes of the strings longer than 12 among a view array's rows (`order`: those rows)."""
    where, _ = view_addresses(arr)
    if order is None:
        return int(lib.ess_view_long_bytes(where, None, len(arr)))
    return int(lib.ess_view_long_bytes(where, order.ctypes.data, len(order)))


def _gather_views(lib: Any, arr: pa.Array, long: bool, order: Any) -> pa.Array:
    """Rows `order` of a string view array without nulls, compacted (ess_view_gather): the
    result's one data buffer holds only its own long strings (below 2 GiB: the caller
    checks the whole array; `long`: whether it has any)."""
    n = len(order)
    where, buffers = view_addresses(arr)
    views = pa.allocate_buffer(16 * n)
    data = pa.allocate_buffer(_long_bytes(lib, arr, order) if long else 0)
    lib.ess_view_gather(where, buffers, order.ctypes.data, n, views.address, data.address)
    return pa.Array.from_buffers(pa.string_view(), n, [None, views, data])


def _gather_fixed(lib: Any, arr: pa.Array, order: Any, take: pa.Array) -> pa.Array:
    """Rows `order` (`take`: the same as Arrow) of a column: 8-byte values without nulls by
    the C helper (a third of Arrow's take, which checks every index), the rest by Arrow."""
    fixed = pa.types.is_primitive(arr.type) and not pa.types.is_boolean(arr.type)
    if not fixed or arr.type.bit_width != 64 or arr.null_count:
        return arr.take(take)
    n = len(order)
    out = pa.allocate_buffer(8 * n)
    lib.ess_gather_8(arr.buffers()[1].address + 8 * arr.offset, order.ctypes.data, n,
                     out.address)  # fmt: skip
    return pa.Array.from_buffers(arr.type, n, [None, out])


def _int64_array(values: Any) -> pa.Array:
    """An Arrow int64 array on a NumPy int64 vector's memory (no copy, no NumPy import path)."""
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def segment_mask(frame: pl.DataFrame, columns: list[str], text: str) -> pl.Series:
    """`seg=N1[-N2]/N[:V]`: True for keys whose hash falls in segments N1..N2 of N."""
    from ess.errors import AqSyntaxError

    try:
        rng, _, n = text.partition("/")
        lo, _, hi = rng.partition("-")
        first, last, total = int(lo), int(hi or lo), int(n.split(":")[0])
    except ValueError:
        raise AqSyntaxError(f"bad seg= attribute {text!r}") from None
    if not 1 <= first <= last <= total:
        raise AqSyntaxError(f"bad seg= attribute {text!r}: need 1 <= N1 <= N2 <= N")
    segs = key_hash(frame, columns) % total + 1
    return (segs >= first) & (segs <= last)

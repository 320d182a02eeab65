"""The optional C helper (`_native.c`): compiled on first use, cached, loaded with ctypes.

Parsing clean delimited chunks, rendering CSV rows with C `%.17g` floats, counting bytes and
hashing UDB keys are the hot loops Polars has no cheap form for; in C they are several times
cheaper. The sources ship inside the package and are built with the host's C compiler into
`~/.cache/ess/native/` (`ESS_NATIVE_DIR` overrides it; atomic rename, so concurrent processes
agree). Without a compiler, or with `ESS_NATIVE=0`,
callers get None and use the pure-Polars path, which produces the same text.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

SOURCES = [Path(__file__).with_name(name) for name in ("_native.c", "_parse.c", "_keyset.c")]


class CsvColumn(ctypes.Structure):
    """`ess_col` of _native.c: one Arrow column of a batch to render."""

    _fields_ = [
        ("kind", ctypes.c_int32),
        ("values", ctypes.c_void_p),
        ("offsets", ctypes.c_void_p),
        ("valid", ctypes.c_void_p),
        ("offset", ctypes.c_int64),
    ]


K_INT64, K_UINT64, K_FLOAT64, K_STR_QUOTED, K_STR_RAW = range(5)
P_SKIP, P_STR, P_INT, P_UINT, P_FLOAT, P_CHECK = 0, 1, 2, 3, 4, 8  # ess_parse_delimited


def cache_dir() -> Path:
    # not under ESS_CACHE_DIR: that holds per-user state (tests give each case its own), while
    # a build of this source serves every process of the machine
    if os.environ.get("ESS_NATIVE_DIR"):
        return Path(os.environ["ESS_NATIVE_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(cache).expanduser() / "ess" / "native"


def _compile(target: Path) -> bool:
    flags = os.environ.get("ESS_NATIVE_CFLAGS", "").split()
    return build(target, ["-O3", *flags, "-shared", "-fPIC", *map(str, SOURCES), "-lm"])


def build(target: Path, args: list[str]) -> bool:
    """Run the host's C compiler with `args` into `target` (atomically); False when there is
    none or the build fails (callers then do without)."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return False
    try:  # an unwritable cache directory only costs the speed-up
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=target.name, suffix=".tmp", dir=target.parent)
        os.close(fd)
    except OSError:
        return False
    try:
        cmd = [cc, "-o", tmp, *args]
        done = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
        if done.returncode != 0:
            return False
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
        return True
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@functools.cache
def native_library() -> ctypes.CDLL | None:
    """The loaded helper, or None when it is disabled or cannot be built here."""
    if os.environ.get("ESS_NATIVE", "1") == "0" or not all(src.exists() for src in SOURCES):
        return None
    # extra compiler flags (ESS_NATIVE_CFLAGS, e.g. -DESS_NO_SIMD for the portable code) make
    # another build: they are part of the name
    flags = os.environ.get("ESS_NATIVE_CFLAGS", "").encode()
    digest = hashlib.sha256(b"".join(src.read_bytes() for src in SOURCES) + flags).hexdigest()[:12]
    target = cache_dir() / f"native-{digest}-{platform.machine()}.so"
    if not target.exists() and not _compile(target):
        return None
    try:
        lib = ctypes.CDLL(str(target))
    except OSError:
        return None
    for name, (restype, argtypes) in _signatures().items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


def _signatures() -> dict[str, tuple[Any, list[Any]]]:
    """The C helper's functions: (return type, argument types) for ctypes, in the order of
    their C prototypes (_native.c, _parse.c, _keyset.c), which name and explain each argument."""
    p, i32, i64, u64 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64, ctypes.c_uint64
    i, f64 = ctypes.c_int, ctypes.c_double
    return {
        "ess_format_g": (i64, [p, p, i64, i64, i, p, p]),
        "ess_render_csv": (i64, [ctypes.POINTER(CsvColumn), i32, i64, i32, i32, p, p]),
        "ess_string_hash": (None, [p, p, i64, u64, p]),
        "ess_string_views": (None, [p, p, i64, p]),
        "ess_view_partition_order": (None, [p, p, i64, u64, i32, p, p, p]),
        "ess_view_long_bytes": (i64, [p, p, i64]),
        "ess_view_gather": (None, [p, p, p, i64, p, p]),
        "ess_gather_8": (None, [p, p, i64, p]),
        "ess_keyset_new": (p, [i64]),
        "ess_keyset_free": (None, [p]),
        "ess_keyset_add_views": (i64, [p, p, p, i64, i64, p, p]),
        "ess_parse_delimited": (i64, [p, i64, i32, i32, i32, p, p, p, i64]),
        "ess_sum_f64": (f64, [p, i64, f64]),
        "ess_count_byte": (i64, [p, i64, i]),
        "ess_count_pair": (None, [p, i64, i, i, p]),
    }


Bytes = bytes | memoryview  # a memoryview: of a memory-mapped input file (ess.aq.mapped)


def address(data: Bytes) -> tuple[int, object]:
    """Where the bytes of `data` are, and an object to keep alive while C reads them (no copy)."""
    if isinstance(data, bytes):
        keep = ctypes.c_char_p(data)
        return ctypes.cast(keep, ctypes.c_void_p).value or 0, keep
    import pyarrow as pa  # a read-only buffer has no ctypes address; Arrow gives it without a copy

    buf = pa.py_buffer(data)
    return buf.address, buf


def count_byte(data: Bytes, byte: bytes, start: int = 0, end: int | None = None) -> int:
    """`data.count(byte, start, end)` for one byte, several times faster with the C helper."""
    lib = native_library()
    stop = len(data) if end is None else min(end, len(data))
    if lib is None or start != 0 or len(byte) != 1:
        return bytes(data).count(byte, start, stop)  # bytes(b) is b itself: no copy
    where, alive = address(data)
    count = int(lib.ess_count_byte(where, stop, byte[0]))
    del alive  # the bytes must outlive the call
    return count


def count_pair(data: Bytes, first: bytes, second: bytes) -> tuple[int, int]:
    """`(data.count(first), data.count(second))` for single bytes, in one pass with the helper."""
    lib = native_library()
    if lib is None:
        whole = bytes(data)
        return whole.count(first), whole.count(second)
    where, alive = address(data)
    out = (ctypes.c_int64 * 2)()
    lib.ess_count_pair(where, len(data), first[0], second[0], out)
    del alive  # the bytes must outlive the call
    return int(out[0]), int(out[1])


def sum_f64(values: pa.Array, init: float) -> float | None:
    """`init + values[0] + values[1] + ...` added in order (C semantics), or None without the
    helper or when there are nulls (the caller then uses Polars' ordered cum_sum)."""
    lib = native_library()
    if lib is None or values.null_count:
        return None
    if not len(values):
        return init
    data = values.buffers()[1]
    assert data is not None
    return float(lib.ess_sum_f64(data.address + 8 * values.offset, len(values), init))


def _strings(lib: Any, rows: int, ends: Any, text: Any) -> Any:
    """A parsed string column: Arrow string views over `text` (Polars takes them as they are),
    or large_string offsets when `text` is too big for the views' 32-bit offsets."""
    import pyarrow as pa

    if text.size >= 1 << 31:
        return pa.Array.from_buffers(pa.large_string(), rows, [None, ends, text])
    views = pa.allocate_buffer(16 * rows)
    lib.ess_string_views(ends.address, text.address, rows, views.address)
    return pa.Array.from_buffers(pa.string_view(), rows, [None, views, text])


def parse_delimited(
    data: Bytes, sep: bytes, quoted: bool, kinds: list[int], max_rows: int
) -> tuple[pa.Table, int] | None:
    """Fields `f0, f1, ...` of a clean chunk (see ess_parse_delimited) and its row count, or None.

    None means the helper is missing or the chunk has something the C parser leaves to the
    general path (quotes, ragged or blank records, unusual numbers, bad UTF-8 ...). P_CHECK
    fields are validated and P_SKIP fields only split; neither is returned. `max_rows` sizes
    the buffers (the chunk's newline count + 1); a chunk with more records is refused.
    """
    lib = native_library()
    if lib is None or len(sep) != 1 or not data:
        return None
    import pyarrow as pa  # only here: 40 ms of start-up

    rows = max_rows
    n = len(kinds)
    values = (ctypes.c_void_p * n)()
    offsets = (ctypes.c_void_p * n)()
    keep: list[tuple[int, int, pa.Buffer, pa.Buffer | None]] = []
    for i, kind in enumerate(kinds):
        if kind == P_SKIP or kind & P_CHECK:
            continue
        if kind == P_STR:
            text, ends = pa.allocate_buffer(len(data)), pa.allocate_buffer(8 * (rows + 1))
            values[i], offsets[i] = text.address, ends.address
            keep.append((i, kind, text, ends))
        else:
            buf = pa.allocate_buffer(8 * rows)
            values[i] = buf.address
            keep.append((i, kind, buf, None))
    kind_arr = (ctypes.c_int32 * n)(*kinds)
    where, alive = address(data)
    got = lib.ess_parse_delimited(where, len(data), sep[0], int(quoted), n, kind_arr,
                                  values, offsets, rows)  # fmt: skip
    del alive  # the bytes must outlive the call
    if got < 0:
        return None
    arrays, names = [], []
    for i, kind, buf, ends in keep:
        if kind == P_STR:
            arr = _strings(lib, got, ends, buf)
        else:
            typ = pa.float64() if kind == P_FLOAT else pa.int64()
            arr = pa.Array.from_buffers(typ, got, [None, buf])
        arrays.append(arr)
        names.append(f"f{i}")
    return pa.Table.from_arrays(arrays, names=names), got

"""The optional C helper (`_numfmt.c`): compiled on first use, cached, loaded with ctypes.

Rendering CSV rows with C `%.17g` floats is the costliest part of writing Essentia CSV; in C it
is several times cheaper than the pure-Polars path. The source ships inside the package and is
built with the host's C compiler into `~/.cache/ess/native/` (`ESS_NATIVE_DIR` overrides it;
atomic rename, so concurrent processes agree). Without a compiler, or with `ESS_NATIVE=0`,
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

SOURCE = Path(__file__).with_name("_numfmt.c")


class CsvColumn(ctypes.Structure):
    """`ess_col` of _numfmt.c: one Arrow column of a batch to render."""

    _fields_ = [
        ("kind", ctypes.c_int32),
        ("values", ctypes.c_void_p),
        ("offsets", ctypes.c_void_p),
        ("valid", ctypes.c_void_p),
        ("offset", ctypes.c_int64),
    ]


K_INT64, K_UINT64, K_FLOAT64, K_STR_QUOTED, K_STR_RAW = range(5)


def _cache_dir() -> Path:
    # not under ESS_CACHE_DIR: that holds per-user state (tests give each case its own), while
    # a build of this source serves every process of the machine
    if os.environ.get("ESS_NATIVE_DIR"):
        return Path(os.environ["ESS_NATIVE_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(cache).expanduser() / "ess" / "native"


def _compile(target: Path) -> bool:
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
        cmd = [cc, "-O3", "-shared", "-fPIC", "-o", tmp, str(SOURCE), "-lm"]
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
def numfmt_library() -> ctypes.CDLL | None:
    """The loaded helper, or None when it is disabled or cannot be built here."""
    if os.environ.get("ESS_NATIVE", "1") == "0" or not SOURCE.exists():
        return None
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    target = _cache_dir() / f"numfmt-{digest}-{platform.machine()}.so"
    if not target.exists() and not _compile(target):
        return None
    try:
        lib = ctypes.CDLL(str(target))
    except OSError:
        return None
    fn = lib.ess_format_g
    fn.restype = ctypes.c_int64
    fn.argtypes = [
        ctypes.c_void_p,  # const double *x
        ctypes.c_void_p,  # const uint8_t *valid (NULL: no nulls)
        ctypes.c_int64,  # bit offset into valid
        ctypes.c_int64,  # n
        ctypes.c_int,  # precision
        ctypes.c_void_p,  # char *out
        ctypes.c_void_p,  # int64_t *offsets
    ]
    render = lib.ess_render_csv
    render.restype = ctypes.c_int64
    render.argtypes = [
        ctypes.POINTER(CsvColumn),
        ctypes.c_int32,  # number of columns
        ctypes.c_int64,  # number of rows
        ctypes.c_int32,  # separator byte
        ctypes.c_int32,  # float precision
        ctypes.c_void_p,  # char *out
        ctypes.c_void_p,  # int64_t *ends (NULL: not wanted)
    ]
    hash_fn = lib.ess_string_hash
    hash_fn.restype = None
    hash_fn.argtypes = [
        ctypes.c_void_p,  # const int64_t *offsets (n + 1)
        ctypes.c_void_p,  # const unsigned char *data
        ctypes.c_int64,  # n
        ctypes.c_uint64,  # base
        ctypes.c_void_p,  # int64_t *out
    ]
    count = lib.ess_count_byte
    count.restype = ctypes.c_int64
    count.argtypes = [ctypes.c_char_p, ctypes.c_int64, ctypes.c_int]
    return lib


def count_byte(data: bytes, byte: bytes, start: int = 0, end: int | None = None) -> int:
    """`data.count(byte, start, end)` for one byte, several times faster with the C helper."""
    lib = numfmt_library()
    stop = len(data) if end is None else min(end, len(data))
    if lib is None or start != 0 or len(byte) != 1:
        return data.count(byte, start, stop)
    return int(lib.ess_count_byte(data, stop, byte[0]))

"""Chunks of a regular input file through memory maps: the file's bytes are never copied.

Reading a 16 MB chunk with read() costs a copy out of the page cache into fresh memory, whose
pages the kernel must first zero and map (page faults), and the carried-over tail of a record
costs another copy; together that was a third of aq_pp's CPU time on a simple aggregation. A
map of the chunk's pages (populated in one call) costs a small fraction of that, and the C
parser reads the page cache directly. Each chunk has its own map, released when the chunk is
no longer referenced, so memory stays bounded as with read().

The file is read up to the size it had when it was opened (a file that grows meanwhile is
read as it was). Truncating a file while aq_pp maps it makes the process fail with SIGBUS, the
usual caveat of memory-mapped readers: `ESS_AQ_MMAP=0` reads with read() instead.
"""

from __future__ import annotations

import mmap
import os
import stat
from collections.abc import Iterator

from ess.aq import native
from ess.aq.records import record_end

POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux: map every page in one call


def usable(fd: int) -> bool:
    """Whether this input can be mapped: a non-empty regular file, and maps are not disabled."""
    if os.environ.get("ESS_AQ_MMAP", "1") == "0":
        return False
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
        return False
    try:  # some file systems cannot map files: those are read
        mmap.mmap(fd, 1, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ).close()
    except OSError:
        return False
    return True


def regions(fd: int, start: int, chunk_size: int, quoted: bool) -> Iterator[tuple[memoryview, int]]:
    """Consecutive views of the file from `start`, each ending at a record terminator, with
    their newline counts.

    A view is cut after the last newline of its `chunk_size` bytes (outside quotes when
    `quoted`); a record longer than that doubles the window. The last view ends at EOF.
    """
    size = os.fstat(fd).st_size
    pos = start
    while pos < size:
        want = chunk_size
        while True:
            end = min(pos + want, size)
            view, newlines = _region(fd, pos, end, quoted and end < size, last=end == size)
            if len(view):
                break
            want *= 2
        yield view, newlines
        pos += len(view)


def _region(fd: int, pos: int, end: int, quoted: bool, *, last: bool) -> tuple[memoryview, int]:
    """[pos, end) cut after its last record terminator (empty when it has none)."""
    mapped, base = _map(fd, pos, end)
    lo, hi = pos - base, end - base
    cut = hi if last else mapped.rfind(b"\n", lo, hi) + 1
    if cut <= lo:
        return memoryview(b""), 0
    view = memoryview(mapped)[lo:cut]
    newlines, quotes = native.count_pair(view, b"\n", b'"')
    if quoted and quotes % 2:  # the last newline is inside quotes: walk back (rare, copies)
        view = view[: record_end(bytes(view), quoted=True) + 1]
        newlines = native.count_byte(view, b"\n")
    return view, newlines


def _map(fd: int, pos: int, end: int) -> tuple[mmap.mmap, int]:
    base = pos - pos % mmap.ALLOCATIONGRANULARITY
    flags = mmap.MAP_SHARED | POPULATE
    return mmap.mmap(fd, end - base, flags=flags, prot=mmap.PROT_READ, offset=base), base

"""Batches of input records: bytes from files or stdin, cut at record ends.

Memory stays bounded because input is read `chunk_size` bytes at a time (a regular file is
memory-mapped batch by batch, see ess.aq.mapped), cut at the last record terminator — a newline
outside CSV quotes, or `</tr>` for HTML tables — and processed before the next batch is read.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ess.aq import mapped
from ess.aq.native import Bytes, count_byte
from ess.aq.records import record_end
from ess.aq.rules import InputAttrs
from ess.errors import AqDataError
from ess.settings import env


def _chunk_size() -> int:
    # ESS_AQ_CHUNK_MB tunes the batch size (memory vs per-batch overhead). The default 16 MB
    # stays under glibc's largest mmap threshold, so freed chunk buffers are reused instead of
    # mapped afresh (page faults made 32 MB reads 3x slower), and a few batches in flight
    # (read-ahead, two rendering) keep peak memory near 0.6 GB.
    try:
        return max(1, int(os.environ.get("ESS_AQ_CHUNK_MB", "16"))) << 20
    except ValueError:
        return 16 << 20


@dataclass
class Chunk:
    raw: Bytes  # the records; a memoryview of a mapped file (ess.aq.mapped) is not copied
    source: str
    first_line: int  # 1-based line number of the chunk's first line in its file
    newlines: int = -1  # b"\n" count of data, when the reader already counted them

    @functools.cached_property
    def data(self) -> bytes:
        """The records as bytes: the general parsers need them (a mapped chunk is copied once)."""
        return bytes(self.raw)

    @functools.cached_property
    def has_backslash(self) -> bool:
        """Whether `esc` can matter here (asked by up to three parsers: counted once)."""
        return count_byte(self.raw, b"\\") > 0

    def max_records(self) -> int:
        count = self.newlines if self.newlines >= 0 else count_byte(self.raw, b"\n")
        return count + 1


#: Set by ``ess stream`` to the file a command's stdin carries.
STDIN_NAME_ENV = "ESS_STDIN_NAME"


def open_input(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb", buffering=0)  # unbuffered: chunks are big, skip a copy
    except OSError as exc:
        raise AqDataError(f"cannot open input file {path!r}: {exc.strerror}") from None


def source_name(path: str) -> str:
    """How messages name an input: ``-`` is stdin, or the file ``ess stream`` feeds it."""
    return (env(STDIN_NAME_ENV) or "stdin") if path == "-" else path


def read_chunks(path: str, attrs: InputAttrs, chunk_size: int = 0) -> Iterator[Chunk]:
    chunk_size = chunk_size or _chunk_size()
    stream = open_input(path)
    source = source_name(path)
    try:
        # HTML rows end at `</tr>`, JSON/XML documents anywhere: such input is read, not mapped
        by_lines = attrs.fmt not in ("tab", "jsn", "xml")
        fd = _fileno(stream)
        if by_lines and fd is not None and mapped.usable(fd):
            yield from _mapped_input(path, fd, source, attrs, chunk_size)
            return
        pending = b""
        line = 1
        to_skip = attrs.skip
        eof = False
        quoted = quotes_matter(attrs)
        head = 0  # bytes of `block` before its first record: skipped lines, not copied away
        data: Bytes
        while not eof:
            block = stream.read(chunk_size)
            eof = not block
            if to_skip:
                pending += block
                if attrs.skip_unit == "b":
                    take = min(to_skip, len(pending))
                    pending, to_skip = pending[take:], to_skip - take
                else:
                    records = attrs.skip_unit == "r" and quoted
                    offset, skipped, lines = skip_records(pending, to_skip, records)
                    to_skip, line = to_skip - skipped, line + lines
                    if to_skip:
                        pending = b"" if eof else pending[offset:]
                        continue
                    head = offset  # `-f,+1` on a 16 MB block: no copy of the block's rest
                block, pending = pending, b""
                if attrs.fmt not in ("csv", "sep"):
                    block, head = block[head:], 0
            if eof:
                data, pending = (pending + block)[head:], b""  # one of the two is empty
            elif head:  # the block just after skipped lines (nothing is pending)
                before = -block.count(b'"', 0, head) if quoted else 0  # the parity after them
                cut = _record_end(block, attrs, quoted, before)
                if cut < head:
                    pending, head = block[head:], 0
                    continue
                data, pending, head = memoryview(block)[head : cut + 1], block[cut + 1 :], 0
            else:
                # the cut is searched in the new block only: the small carried-over tail is
                # joined to it in one copy (no concatenation of the whole, then a slice)
                if attrs.fmt in ("jsn", "xml"):  # a document's end depends on all before it
                    block, pending = pending + block, b""
                before = pending.count(b'"') if quoted else 0
                cut = _record_end(block, attrs, quoted, before)
                if cut < 0:
                    pending += block
                    continue
                whole = cut + 1 == len(block) and not pending
                data = block if whole else b"".join((pending, memoryview(block)[: cut + 1]))
                pending = block[cut + 1 :]
            if data:
                newlines = count_byte(data, b"\n")
                yield Chunk(data, source, line, newlines)
                line += newlines
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def _fileno(stream: BinaryIO) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation: a stdin replaced in-process
        return None


def _mapped_input(path: str, fd: int, source: str, attrs: InputAttrs,
                  chunk_size: int) -> Iterator[Chunk]:  # fmt: skip
    """A regular file mapped; stdin too when it is one (``ess stream`` hands a decompressed
    file over as one, a shell's ``< file`` does): from its current offset, which is left at
    the end afterwards, as reading it to the end would leave it (a command after aq_pp in
    ``{ aq_pp ...; cat; } < file`` sees what it would have seen)."""
    if path != "-":
        yield from _mapped_chunks(fd, source, attrs, chunk_size)
        return
    base = os.lseek(fd, 0, os.SEEK_CUR)
    try:
        yield from _mapped_chunks(fd, source, attrs, chunk_size, base)
    finally:
        os.lseek(fd, 0, os.SEEK_END)


def _mapped_chunks(fd: int, source: str, attrs: InputAttrs, chunk_size: int,
                   base: int = 0) -> Iterator[Chunk]:  # fmt: skip
    quoted = quotes_matter(attrs)
    if attrs.skip_unit == "b":
        start, line = base + attrs.skip, 1
    else:
        start, skipped = header_end(fd, attrs.skip, attrs.skip_unit == "r" and quoted, base)
        line = 1 + skipped
    views = mapped.regions(fd, start, chunk_size, quoted)
    while True:
        try:
            view, newlines = next(views, (None, 0))
        except OSError as exc:  # e.g. no address space left for the map
            raise AqDataError(f"cannot read input file {source!r}: {exc.strerror}") from None
        if view is None:
            return
        yield Chunk(view, source, line, newlines)
        line += newlines


def quotes_matter(attrs: InputAttrs) -> bool:
    """Whether a newline inside double quotes does not end a record (CSV without `esc`: with
    escapes a record is one line)."""
    return attrs.fmt == "csv" and attrs.quoted and not attrs.esc


def skip_records(buf: bytes, count: int, quoted: bool) -> tuple[int, int, int]:
    """Skip up to `count` whole records at the start of `buf`: (offset after them, records
    skipped, lines skipped). With `quoted` (`+Nr` on CSV) a newline inside double quotes does
    not end a record; a record not complete in `buf` is not skipped."""
    pos = skipped = newlines = 0
    offset = lines = quotes = 0
    while skipped < count:
        nl = buf.find(b"\n", pos)
        if nl < 0:
            break
        if quoted:
            quotes += buf.count(b'"', pos, nl)
        pos, newlines = nl + 1, newlines + 1
        if quotes % 2:
            continue  # inside a quoted field: the record goes on
        skipped, offset, lines = skipped + 1, pos, newlines
    return offset, skipped, lines


def header_end(fd: int, count: int, quoted: bool, base: int = 0) -> tuple[int, int]:
    """Offset just past the first `count` records (lines unless `quoted`) from `base`, and
    how many lines that was (fewer records at EOF: all of them)."""
    size = 1 << 16
    while True:
        buf = os.pread(fd, size, base)
        offset, skipped, lines = skip_records(buf, count, quoted)
        if skipped == count or len(buf) < size:
            return (base + offset, lines) if skipped == count else (base + len(buf), lines)
        size *= 4


def _record_end(block: bytes, attrs: InputAttrs, quoted: bool, quotes_before: int) -> int:
    """Where a batch may end in `block`: after a record (line, HTML row, JSON document)."""
    if attrs.fmt == "tab":
        from ess.aq import htmltab  # Polars: only for HTML input

        return htmltab.record_end(block)
    if attrs.fmt == "jsn":
        from ess.aq import keyed

        return keyed.json_record_end(block)
    if attrs.fmt == "xml":
        return -1  # one document: the whole input is one batch
    return record_end(block, quoted=quoted, quotes_before=quotes_before)

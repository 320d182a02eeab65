"""Decompression by content: the magic bytes decide, never the file name.

Essentia's ``localget`` passed a plain-text file named ``x.gz`` through unchanged; so do we.
gzip goes through isal (igzip, about 4x faster than zlib here).
Errors inside a compressed stream surface as :class:`DecompressError` naming the file.
"""

from __future__ import annotations

import bz2
import fnmatch
import io
import lzma
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from typing import IO, Any, BinaryIO, cast

from isal import igzip as _gzip
from isal.igzip_lib import IsalError

from ess.errors import DecompressError

_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    ValueError,
    cast(type[BaseException], IsalError),  # the stubs declare it as an instance
)

_SNIFF_BYTES = 512
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),  # empty zip archive
)
ARCHIVES = frozenset({"zip", "tar"})
COMPRESSIONS = ("auto", "none", "gzip", "bz2", "xz", "zstd", "zip", "tar")
_ALIASES = {"gz": "gzip", "bzip2": "bz2", "lzma": "xz", "zst": "zstd", "plain": "none"}


def normalise_compression(name: str) -> str:
    value = _ALIASES.get(name.lower(), name.lower())
    if value not in COMPRESSIONS:
        raise DecompressError(
            f"unknown compression {name!r} (expected one of {', '.join(COMPRESSIONS)})"
        )
    return value


def sniff(head: bytes) -> str:
    """Name the format of data starting with ``head`` ("none" for anything unrecognised)."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return "none"


def _peekable(raw: BinaryIO) -> io.BufferedReader:
    if isinstance(raw, io.BufferedReader):
        return raw
    return io.BufferedReader(cast(Any, raw), buffer_size=1 << 20)


def _peek(reader: io.BufferedReader, size: int) -> bytes:
    head = reader.peek(size)
    return head[:size]


class _ErrorNaming(io.RawIOBase):
    """Turn decoder exceptions into DecompressError("<name>: corrupt gzip data: ...")."""

    def __init__(self, inner: IO[bytes], name: str, kind: str) -> None:
        self._inner = inner
        self._name = name
        self._kind = kind

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._inner.read(len(buffer))
        except _DECODE_ERRORS as exc:
            raise DecompressError(f"{self._name}: corrupt {self._kind} data ({exc})") from exc
        n = len(data)
        buffer[:n] = data
        return n

    def close(self) -> None:
        self._inner.close()
        super().close()


def _decoder(kind: str, reader: io.BufferedReader) -> IO[bytes]:
    if kind == "gzip":
        return cast(IO[bytes], _gzip.GzipFile(fileobj=reader, mode="rb"))
    if kind == "bz2":
        return bz2.BZ2File(reader)
    if kind == "xz":
        return lzma.LZMAFile(reader)
    if kind == "zstd":
        import zstandard

        return cast(IO[bytes], zstandard.ZstdDecompressor().stream_reader(reader))
    raise DecompressError(f"{kind} is an archive: select its members with --archive")


def open_decompressed(
    raw: BinaryIO, *, compression: str = "auto", name: str = "<input>"
) -> BinaryIO:
    """Return a reader of the decompressed bytes of ``raw``.

    ``compression`` "auto" sniffs the content; a forced value ("gzip", "none", ...) is trusted.
    Archives (zip, tar) are not streams: read them with :func:`iter_archive_members`.
    """
    reader = _peekable(raw)
    kind = normalise_compression(compression)
    if kind == "auto":
        kind = sniff(_peek(reader, _SNIFF_BYTES))
    if kind == "none":
        return cast(BinaryIO, reader)
    if kind in ARCHIVES:
        raise DecompressError(f"{name}: is a {kind} archive; give --archive to select members")
    checked = _ErrorNaming(_decoder(kind, reader), name, kind)
    return cast(BinaryIO, io.BufferedReader(checked, buffer_size=1 << 20))


def detect(raw: BinaryIO) -> tuple[str, io.BufferedReader]:
    """Sniff ``raw`` without consuming it: (format, reader positioned at the start)."""
    reader = _peekable(raw)
    return sniff(_peek(reader, _SNIFF_BYTES)), reader


def _matches(name: str, patterns: list[str]) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)


def iter_archive_members(
    raw: BinaryIO, patterns: list[str], *, name: str = "<input>"
) -> Iterator[tuple[str, BinaryIO]]:
    """Yield (member name, decompressed reader) for the members matching ``patterns``.

    zip needs random access, so a non-seekable zip is read into memory first; tar (plain or
    compressed) streams.
    """
    kind, reader = detect(raw)
    try:
        if kind == "zip":
            source: IO[bytes] = reader if reader.seekable() else io.BytesIO(reader.read())
            with zipfile.ZipFile(source) as archive:
                for info in archive.infolist():
                    if not info.is_dir() and _matches(info.filename, patterns):
                        yield info.filename, cast(BinaryIO, archive.open(info))
            return
        stream: IO[bytes] = reader if kind == "tar" else open_decompressed(reader, name=name)
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                if member.isfile() and _matches(member.name, patterns):
                    extracted = archive.extractfile(member)
                    if extracted is not None:
                        yield member.name, cast(BinaryIO, extracted)
    except (zipfile.BadZipFile, tarfile.TarError) as exc:
        raise DecompressError(f"{name}: not a readable zip or tar archive ({exc})") from exc


def list_archive(raw: BinaryIO, patterns: list[str], *, name: str = "<input>") -> list[str]:
    kind, reader = detect(raw)
    try:
        if kind == "zip":
            source: IO[bytes] = reader if reader.seekable() else io.BytesIO(reader.read())
            with zipfile.ZipFile(source) as archive:
                return [n for n in archive.namelist() if _matches(n, patterns)]
        stream: IO[bytes] = reader if kind == "tar" else open_decompressed(reader, name=name)
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            return [m.name for m in archive if _matches(m.name, patterns)]
    except (zipfile.BadZipFile, tarfile.TarError) as exc:
        raise DecompressError(f"{name}: not a readable zip or tar archive ({exc})") from exc

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import zipfile

import pytest
import zstandard

from ess.datastore import codec
from ess.errors import DecompressError

TEXT = b"a,b\r\n1,2\r\n" * 1000


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (gzip.compress(TEXT), "gzip"),
        (bz2.compress(TEXT), "bz2"),
        (lzma.compress(TEXT), "xz"),
        (zstandard.ZstdCompressor().compress(TEXT), "zstd"),
        (TEXT, "none"),
    ],
)
def test_decompress_by_content(data: bytes, kind: str) -> None:
    assert codec.sniff(data[:512]) == kind
    assert codec.open_decompressed(io.BytesIO(data)).read() == TEXT


def test_concatenated_gzip_members() -> None:
    data = gzip.compress(b"one\n") + gzip.compress(b"two\n")
    assert codec.open_decompressed(io.BytesIO(data)).read() == b"one\ntwo\n"


def test_plain_text_named_gz_passes_through() -> None:
    assert codec.open_decompressed(io.BytesIO(b"plain\n"), name="x.gz").read() == b"plain\n"


def test_forced_compression_is_trusted() -> None:
    assert codec.open_decompressed(io.BytesIO(b"\x1f\x8bxx"), compression="none").read() == (
        b"\x1f\x8bxx"
    )


def test_corrupt_gzip_names_the_file() -> None:
    data = bytearray(gzip.compress(TEXT))
    data[20:40] = b"\x00" * 20
    with pytest.raises(DecompressError, match=r"bad\.gz: corrupt gzip data"):
        codec.open_decompressed(io.BytesIO(bytes(data)), name="bad.gz").read()


def test_truncated_gzip_is_an_error() -> None:
    data = gzip.compress(TEXT)[:-10]
    with pytest.raises(DecompressError, match="corrupt gzip"):
        codec.open_decompressed(io.BytesIO(data), name="t.gz").read()


def test_unknown_compression_name() -> None:
    with pytest.raises(DecompressError, match="unknown compression"):
        codec.normalise_compression("rar")


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def _tar(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("make", [_zip, _tar, lambda m: _tar(m, "w:bz2"), lambda m: _tar(m, "w")])
def test_archive_members(make: object) -> None:
    data = make({"file_1_Site_1": b"site\n", "file_1_Placement_1": b"place\n"})  # type: ignore[operator]
    members = {
        name: reader.read()
        for name, reader in codec.iter_archive_members(io.BytesIO(data), ["*Site*"])
    }
    assert members == {"file_1_Site_1": b"site\n"}
    assert sorted(codec.list_archive(io.BytesIO(data), [])) == [
        "file_1_Placement_1",
        "file_1_Site_1",
    ]


def test_archive_through_open_decompressed_is_refused() -> None:
    with pytest.raises(DecompressError, match="--archive"):
        codec.open_decompressed(io.BytesIO(_zip({"a": b"x"})), name="a.zip")

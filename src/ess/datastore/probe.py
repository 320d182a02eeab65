"""Probe: look at the start of a file and infer compression, delimiter, header and column types.

The result becomes a column spec such as ``S:eventDate I:userID S:articleID``. Types follow
Essentia's letters: ``I`` unsigned 32-bit, ``L`` unsigned 64-bit, ``IS``/``LS`` signed, ``F``
float, ``IP`` IPv4, ``S`` anything else. A column with any non-numeric value (``TBD``) is ``S``.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess

from ess.datastore import codec
from ess.datastore.category import ProbeResult
from ess.datastore.store import Store
from ess.errors import DatastoreError

DEFAULT_SAMPLE = 1 << 20
SAMPLE_LINES = 5
_DELIMITERS = (",", "\t", "|", ";", " ")
_UINT = re.compile(r"^\d+$")
_INT = re.compile(r"^[-+]?\d+$")
_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_IPV4 = re.compile(r"^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$")
_NAME_OK = re.compile(r"[^A-Za-z0-9_]")


def read_sample(
    store: Store,
    path: str,
    *,
    size: int = DEFAULT_SAMPLE,
    compression: str = "auto",
    archive: list[str] | None = None,
) -> tuple[str, bytes]:
    """Return (detected compression, first ``size`` decompressed bytes) of ``path``."""
    with store.open(path) as raw:
        kind, reader = codec.detect(raw)
        if compression not in ("auto", ""):
            kind = codec.normalise_compression(compression)
        if kind in codec.ARCHIVES:
            for _member, data in codec.iter_archive_members(reader, archive or [], name=path):
                return kind, data.read(size)
            raise DatastoreError(f"{path}: no archive member matches {archive or '*'}")
        stream = codec.open_decompressed(reader, compression=kind, name=path)
        return kind, stream.read(size)


def run_filter(command: str, data: bytes, *, what: str) -> bytes:
    """Pipe ``data`` through ``sh -c command`` (used for --preprocess and --pcmd)."""
    try:
        done = subprocess.run(["sh", "-c", command], input=data, capture_output=True, timeout=120)
    except subprocess.TimeoutExpired as exc:
        raise DatastoreError(f"{what} {command!r} did not finish within 120 s") from exc
    if done.returncode != 0 and not done.stdout:
        err = done.stderr.decode(errors="replace").strip().splitlines()
        raise DatastoreError(f"{what} {command!r} failed: {err[-1] if err else done.returncode}")
    return done.stdout


def _lines(sample: bytes, complete: bool) -> list[str]:
    text = sample.decode("utf-8", errors="replace")
    # a bare CR ends a line too (old Mac files); left inside a line it breaks the csv module
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if not complete and len(lines) > 1:
        lines = lines[:-1]  # the sample cut the last line short
    return [line for line in lines if line]


def _split(lines: list[str], delimiter: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter))


def detect_delimiter(lines: list[str]) -> str:
    best, best_score = ",", (0.0, 0)
    for delimiter in _DELIMITERS:
        counts = [len(row) for row in _split(lines[:200], delimiter)]
        if not counts or max(counts) < 2:
            continue
        mode = max(set(counts), key=counts.count)
        score = (counts.count(mode) / len(counts), mode)
        if mode >= 2 and score > best_score:
            best, best_score = delimiter, score
    return best


def column_type(values: list[str]) -> str:
    present = [v.strip() for v in values if v.strip()]
    if not present:
        return "S"
    if all(_UINT.match(v) for v in present):
        return "I" if max(int(v) for v in present) < 2**32 else "L"
    if all(_INT.match(v) for v in present):
        return "IS" if all(-(2**31) <= int(v) < 2**31 for v in present) else "LS"
    if all(_FLOAT.match(v) for v in present):
        return "F"
    if all(_IPV4.match(v) for v in present):
        return "IP"
    return "S"


def _column_name(text: str, index: int, used: set[str]) -> str:
    name = _NAME_OK.sub("_", text.strip()) or f"c{index}"
    if name[0].isdigit():
        name = f"c{name}"
    while name in used:
        name = f"{name}_{index}"
    used.add(name)
    return name


def _looks_like_header(first: list[str], rest: list[list[str]]) -> bool:
    if not first or any(not v.strip() for v in first):
        return False
    if any(column_type([v]) != "S" for v in first):
        return False
    if not rest:
        return True
    columns = list(zip(*[r for r in rest if len(r) == len(first)], strict=False))
    typed = any(column_type(list(c)) != "S" for c in columns)
    # All-string data: a header still differs from the data below it in every column.
    return typed or all(first[i] not in columns[i] for i in range(len(columns)))


def analyse(
    sample: bytes, *, complete: bool, delimiter: str | None = None
) -> tuple[str, str, bool, list[str]]:
    """(delimiter, columnspec, has_header, first lines) of a decompressed sample."""
    lines = _lines(sample, complete)
    if not lines:
        return delimiter or ",", "", False, []
    delim = delimiter or detect_delimiter(lines)
    rows = _split(lines, delim)
    width = max(set(len(r) for r in rows), key=[len(r) for r in rows].count)
    header = _looks_like_header(rows[0], rows[1:])
    data = [r for r in (rows[1:] if header else rows) if len(r) == width]
    used: set[str] = set()
    specs = []
    for i in range(width):
        values = [r[i] for r in data]
        title = rows[0][i] if header and i < len(rows[0]) else ""
        specs.append(f"{column_type(values)}:{_column_name(title, i + 1, used)}")
    return delim, " ".join(specs), header, lines[:SAMPLE_LINES]


_BINARY_SNIFF = 8192
_COMPRESSED_SUFFIXES = {".gz": "gzip", ".tgz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}


def looks_binary(sample: bytes) -> bool:
    """Data a delimited-text probe cannot describe: NUL bytes, or many bytes that are neither
    UTF-8 text nor ordinary control characters (tab, CR, LF, form feed)."""
    head = sample[:_BINARY_SNIFF]
    if not head:
        return False
    if b"\x00" in head:
        return True
    text = head.decode("utf-8", errors="replace")
    odd = sum(1 for ch in text if ch == "\ufffd" or (ch < " " and ch not in "\t\r\n\f"))
    return odd > len(text) // 10


def _not_text(path: str, kind: str) -> DatastoreError:
    suffix = "." + path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    named = _COMPRESSED_SUFFIXES.get(suffix)
    why = (
        f"named {suffix} but not {named} data (no {named} header) and not text either"
        if named and kind == "none"
        else f"binary data ({kind}), not delimited text"
    )
    return DatastoreError(
        f"{path}: cannot probe: {why}; check the file, or give --noprobe with --columnspec"
    )


def probe_file(
    store: Store,
    path: str,
    *,
    size: int = DEFAULT_SAMPLE,
    compression: str = "auto",
    archive: list[str] | None = None,
    preprocess: str | None = None,
    pcmd: str | None = None,
    delimiter: str | None = None,
) -> ProbeResult:
    kind, sample = read_sample(store, path, size=size, compression=compression, archive=archive)
    complete = len(sample) < size
    if preprocess:
        sample = run_filter(preprocess, sample, what="--preprocess")
    if looks_binary(sample):
        raise _not_text(path, kind)
    try:
        delim, columnspec, header, lines = analyse(sample, complete=complete, delimiter=delimiter)
    except csv.Error as exc:  # pragma: no cover - _lines leaves no line ends for csv to trip on
        raise DatastoreError(f"{path}: cannot probe: {exc}") from exc
    if pcmd:
        printed = run_filter(pcmd, sample, what="--pcmd").decode(errors="replace")
        columnspec = " ".join(printed.split())
    return ProbeResult(path, kind, delim, columnspec, header, lines)

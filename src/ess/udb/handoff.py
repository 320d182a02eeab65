"""Arrow tables between the client and workers on the same machine, through shared memory.

Crossing the TLS connection costs far more CPU than the work on big frames (about 1 CPU second
per 200 MB on the benchmark machine), so when a worker shares the client's filesystem the
table is written as an Arrow file into a private directory in ``/dev/shm`` (0700, removed by the
client) and only its path travels. A worker proves it sees the directory by reading the
client's random token from it; workers that do not (other hosts, other users) get and send
their tables over the connection as before.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

SHM = "/dev/shm"
TOKEN = "token"
PREFIX = "ess-udb-"  # + owner pid + "-" + random


def sweep_stale(shm: str = SHM) -> list[str]:
    """Remove hand-over directories of this user whose owning process is gone (a client
    killed before its `close`: its last batch would otherwise stay in memory until reboot).
    Returns the removed paths."""
    try:
        entries = list(os.scandir(shm))
    except OSError:
        return []
    stale = [entry.path for entry in entries if _owner_gone(entry)]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def _owner_gone(entry: os.DirEntry[str]) -> bool:
    """A directory of another user, of a live process, or without a pid in its name is not
    ours to judge."""
    pid = entry.name[len(PREFIX) :].split("-", 1)[0]
    if not entry.name.startswith(PREFIX) or not pid.isdigit():
        return False
    try:
        if not entry.is_dir(follow_symlinks=False):
            return False
        if entry.stat(follow_symlinks=False).st_uid != os.getuid():
            return False
        os.kill(int(pid), 0)  # raises when there is no such process
    except ProcessLookupError:
        return True
    except OSError:  # gone meanwhile, or a process we may not signal
        return False
    return False


class Handoff:
    """The client's private directory (made lazily, removed by `close`)."""

    def __init__(self) -> None:
        self.folder: str | None = None
        self.token = secrets.token_hex(16)

    def open(self) -> tuple[str, str] | None:
        """(directory, token) to give workers, or None without usable shared memory."""
        if self.folder is None:
            if not os.access(SHM, os.W_OK):
                return None
            sweep_stale()
            try:
                # the owner's pid in the name lets a later client remove it if this one dies
                self.folder = tempfile.mkdtemp(dir=SHM, prefix=f"{PREFIX}{os.getpid()}-")
                fd = os.open(Path(self.folder) / TOKEN, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                             0o600)  # fmt: skip
                with os.fdopen(fd, "w") as f:
                    f.write(self.token)
            except OSError:
                self.close()
                return None
        return self.folder, self.token

    def close(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __enter__(self) -> Handoff:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sees(folder: str, token: str) -> bool:
    """Whether this process shares the directory (run on a worker)."""
    try:
        return (Path(folder) / TOKEN).read_text() == token
    except OSError:
        return False


def write(table: pa.Table, folder: str) -> str | None:
    """The table as an Arrow file in `folder`; None when it cannot be written (no room)."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, suffix=".arrow")
        os.close(fd)
    except OSError:
        return None
    try:
        with pa.OSFile(name, "wb") as sink, ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    except OSError:
        Path(name).unlink(missing_ok=True)
        return None
    return name


def read_mapped(path: str) -> pa.Table:
    """Zero-copy: the table's buffers are the mapping (it outlives the file's removal)."""
    return ipc.open_file(pa.memory_map(path)).read_all()


def read(path: str) -> pa.Table:
    """Into this process's memory (for data that is kept: no shared-memory pages held)."""
    with pa.OSFile(path, "rb") as source:
        return ipc.open_file(source).read_all()


#: an import batch for one worker written to shared memory: the file and, per partition,
#: its (first row, rows) in it
Shipped = tuple[str, list[tuple[int, int, int]]]


class Shipper:
    """The client side of imports: which workers share the directory (asked once each), the
    batch files written for them, removed once the batch is applied."""

    def __init__(self, probe: Callable[[str, str, str], bool]) -> None:
        self.handoff = Handoff()
        self.probe = probe  # (worker address, folder, token) -> the worker sees the folder
        self.shared: dict[str, bool] = {}
        self.files: list[str] = []

    def pack(self, address: str, parts: dict[int, pa.Table]) -> dict[int, pa.Table] | Shipped:
        where = self.handoff.open()
        if where is None:
            return parts
        if address not in self.shared:
            self.shared[address] = self.probe(address, *where)
        if not self.shared[address]:
            return parts
        index, row = [], 0
        for pid, table in parts.items():
            index.append((pid, row, table.num_rows))
            row += table.num_rows
        tables = list(parts.values())
        path = write(pa.concat_tables(tables), where[0]) if tables else None
        if path is None:
            return parts
        self.files.append(path)
        return path, index

    def done(self) -> None:
        """The batches shipped so far are applied: remove their files."""
        for path in self.files:
            Path(path).unlink(missing_ok=True)
        self.files.clear()

    def close(self) -> None:
        self.files.clear()
        self.handoff.close()


def unpack(parts: dict[int, pa.Table] | Shipped, *, mapped: bool = False) -> dict[int, pa.Table]:
    """On the worker: the batch's tables per partition. `mapped`: the caller only passes them
    on (writes them out), so they may stay in the shared memory instead of being copied."""
    if isinstance(parts, dict):
        return parts
    table = read_mapped(parts[0]) if mapped else read(parts[0])
    return {pid: table.slice(start, rows) for pid, start, rows in parts[1]}

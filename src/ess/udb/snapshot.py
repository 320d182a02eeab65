"""A worker's UDB store and its snapshots on disk (Arrow IPC segments).

Each worker keeps ``{db: {partition: Part}}`` in memory as Polars frames and a snapshot of every
partition under its store root, written before an import task returns: a worker that crashes and
comes back reloads its partitions (``Store.load``) before it takes any task. Append-only tables
write one segment file per import; vectors, the key set after ``-ord``/``-clr`` and rewritten
tables write a full "base" segment that supersedes the older ones.

Damage. Every segment's name carries the CRC-32 of its bytes
(``t_tab.000000000012.base.1a2b3c4d.arrow``), so the name and the check appear together in one
rename and no manifest can disagree with the data. A segment that is unreadable, truncated or
fails its check is moved aside as ``<name>.damaged`` at load, the rest of the partition loads,
and :func:`damaged_files` lists what was lost for ``ess udbd status``. Older segments (no CRC in
the name) are still read, unchecked. Files are written 0600 in directories 0700: the snapshots
hold the users' data.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from ess.udb import journal

try:  # isal's CRC-32 is ~6x faster than zlib's; same polynomial and values
    from isal.isal_zlib import crc32
except ImportError:  # pragma: no cover - isal is a dependency
    from zlib import crc32

#: appended snapshot segments of one table/key set before they are compacted into one
COMPACT_AFTER = 64
#: Essentia's UDBD_MEM_MARGIN default (KB): an import that would leave less free is refused.
DEFAULT_MARGIN_KB = 500_000
SEG_RE = re.compile(
    r"^(?P<name>[kvt]_[A-Za-z0-9_]*|var)\.(?P<seq>\d+)(?P<base>\.base)?"
    r"(?:\.(?P<crc>[0-9a-f]{8}))?\.arrow$"
)
PLUGIN_NAME = "ess-udb"
_PART_RE = re.compile(r"^p(\d+)$")
DAMAGED = ".damaged"
FILE_MODE = 0o600
DIR_MODE = 0o700


@dataclass
class Part:
    keys: pl.DataFrame
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)  # by lower-case name
    vectors: dict[str, pl.DataFrame] = field(default_factory=dict)
    seq: int = 0
    appended: dict[str, int] = field(default_factory=dict)  # segments since the last base
    #: a key-set segment was damaged: the key set is rebuilt from the rows that remain, with
    #: the database's pkey, by the first task that has the definition (server._part)
    keys_lost: bool = False


@dataclass
class DbState:
    parts: dict[int, Part] = field(default_factory=dict)
    var: pl.DataFrame | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)


@dataclass(frozen=True)
class Damage:
    """A snapshot segment found damaged and moved aside: its rows are not loaded."""

    db: str
    partition: int
    segment: str  # k_ | var | t_<table> | v_<vector>
    path: str  # the moved file (…arrow.damaged)
    reason: str

    @property
    def what(self) -> str:
        if self.segment == "k_":
            return "key set"
        if self.segment == "var":
            return "variable"
        kind = "table" if self.segment.startswith("t_") else "vector"
        return f"{kind} {self.segment[2:]}"

    def line(self) -> str:
        return (f"database {self.db}, {self.what}, partition {self.partition}: {self.path} "
                f"({self.reason})")  # fmt: skip


def private_dir(path: Path) -> None:
    """Make `path` (and missing parents) 0700: umask would leave new folders 0755."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another worker of this host made it
            os.mkdir(directory, DIR_MODE)


class Store:
    """All databases held by one worker, with their snapshot directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dbs: dict[str, DbState] = {}
        self.lock = threading.Lock()
        self.ready = False
        self.error = ""  # why the last load failed (the worker's log has the traceback)
        self.name = ""
        self.margin = DEFAULT_MARGIN_KB * 1024
        self.damaged: list[Damage] = []  # found by this worker's last load

    def check_memory(self, incoming: int) -> None:
        """Refuse an import that would leave less than the margin free (UDBD_MEM_MARGIN)."""
        import psutil

        from ess.errors import UdbError

        available = int(psutil.virtual_memory().available)
        need = 3 * incoming  # the batch, its merged copy, the frames built while merging
        if available - need < self.margin:
            raise UdbError(
                f"worker {self.name}: out of memory for this import ({available >> 20} MB "
                f"available, about {need >> 20} MB needed, margin {self.margin >> 20} MB): "
                "import refused, the data already stored is kept"
            )

    def db(self, name: str) -> DbState:
        with self.lock:
            return self.dbs.setdefault(name.lower(), DbState())

    def dir(self, db: str, pid: int) -> Path:
        return self.root / db.lower() / f"p{pid}"

    # ------------------------------------------------------------------ writing
    def write(self, db: str, pid: int, part: Part, name: str, frame: pl.DataFrame, *,
              base: bool) -> None:  # fmt: skip
        """Persist one segment; a base segment replaces the older segments of `name`."""
        directory = self.dir(db, pid)
        private_dir(directory)
        part.seq += 1
        sink = pa.BufferOutputStream()
        table = frame.to_arrow()
        with ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        data = sink.getvalue()
        stem = f"{name}.{part.seq:012d}{'.base' if base else ''}"
        final = directory / f"{stem}.{crc32(data) & 0xFFFFFFFF:08x}.arrow"
        tmp = directory / f"{stem}.tmp"
        journal.will_write(final)  # a stream's commit can then be rolled back (ess.udb.journal)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with open(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, final)
        if base:
            for old in directory.glob(f"{name}.*.arrow"):
                m = SEG_RE.match(old.name)
                if m and m["name"] == name and int(m["seq"]) < part.seq \
                        and not journal.supersede(old):  # fmt: skip
                    old.unlink(missing_ok=True)

    def append(self, db: str, pid: int, part: Part, name: str, rows: pl.DataFrame,
               whole: pl.DataFrame) -> None:  # fmt: skip
        """Persist appended rows; every COMPACT_AFTER appends, one base segment instead (so
        many small imports do not leave a directory of thousands of files to reload)."""
        count = part.appended.get(name, 0) + 1
        if count >= COMPACT_AFTER:
            self.write(db, pid, part, name, whole.rechunk(), base=True)
            part.appended[name] = 0
        else:
            self.write(db, pid, part, name, rows, base=False)
            part.appended[name] = count

    def drop_dir(self, db: str, pid: int | None = None) -> None:
        path = self.root / db.lower() if pid is None else self.dir(db, pid)
        shutil.rmtree(path, ignore_errors=True)

    def drop_segments(self, db: str, pid: int, name: str) -> None:
        for f in self.dir(db, pid).glob(f"{name}.*.arrow"):
            m = SEG_RE.match(f.name)
            if m and m["name"] == name:
                f.unlink(missing_ok=True)

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        """Reload every snapshot under the root (worker start); damaged segments are moved
        aside and listed in `self.damaged`, the rest loads."""
        self.damaged = []
        if not self.root.is_dir():
            self.ready = True
            return
        private_dir(self.root)
        os.chmod(self.root, DIR_MODE)  # made 0755 by earlier versions
        journal.roll_back(self.root)  # commits a dead worker left half-applied: undone
        # dot folders are not databases (.staging: imports staged by a stream, ess.udb.staging)
        for db_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and p.name[0] != "."):
            os.chmod(db_dir, DIR_MODE)
            state = self.db(db_dir.name)
            for pdir in sorted(db_dir.iterdir()):
                m = _PART_RE.match(pdir.name)
                if m and pdir.is_dir():
                    os.chmod(pdir, DIR_MODE)
                    pid = int(m[1])
                    state.parts[pid] = self._load_part(db_dir.name, pid, pdir, state)
        self.ready = True

    def _load_part(self, db: str, pid: int, pdir: Path, state: DbState) -> Part:
        for tmp in pdir.glob("*.tmp"):  # a write cut short by a crash: never renamed, never used
            tmp.unlink(missing_ok=True)
        segs: dict[str, list[tuple[int, bool, Path]]] = {}
        for f in pdir.glob("*.arrow"):
            m = SEG_RE.match(f.name)
            if m:
                segs.setdefault(m["name"], []).append((int(m["seq"]), bool(m["base"]), f))
        part = Part(keys=pl.DataFrame())
        for name, items in sorted(segs.items()):
            items.sort()
            part.seq = max(part.seq, items[-1][0])
            start = max((i for i, it in enumerate(items) if it[1]), default=0)
            frames = []
            for _, _, path in items[start:]:
                frame, reason = read_segment(path)
                if frame is None:
                    self._set_aside(db, pid, name, path, reason)
                    if name == "k_":
                        part.keys_lost = True
                else:
                    frames.append(frame)
            if not frames:
                continue
            try:
                whole = pl.concat(frames, how="vertical", rechunk=True)
            except pl.exceptions.PolarsError as exc:  # segments of two different shapes
                for _, _, path in items[start:]:
                    self._set_aside(db, pid, name, path, f"does not fit the others: {exc}")
                part.keys_lost = part.keys_lost or name == "k_"
                continue
            place(state, part, name, whole)
        return part

    def _set_aside(self, db: str, pid: int, name: str, path: Path, reason: str) -> None:
        moved = path.with_name(path.name + DAMAGED)
        if path.exists():
            os.replace(path, moved)
        self.damaged.append(Damage(db, pid, name, str(moved), reason))


def read_segment(path: Path) -> tuple[pl.DataFrame | None, str]:
    """The segment's rows, or None and why it cannot be used (never raises for bad bytes)."""
    m = SEG_RE.match(path.name)
    try:
        # read, not memory-mapped: frames of a mapped file would fault (SIGBUS, the worker
        # dies) if the file were truncated while loaded
        with pa.OSFile(str(path), "rb") as src:
            data = src.read_buffer()
            if m and m["crc"] is not None:
                crc = crc32(data) & 0xFFFFFFFF
                if f"{crc:08x}" != m["crc"]:
                    return None, f"checksum mismatch (truncated or altered): {data.size} bytes"
            table = ipc.open_file(data).read_all()
    except (OSError, pa.ArrowException, ValueError) as exc:
        return None, f"unreadable: {exc}"
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame, ""


def place(state: DbState, part: Part, name: str, frame: pl.DataFrame) -> None:
    """Put a stored frame where its segment name says: keys, the var row, a table, a vector."""
    if name == "k_":
        part.keys = frame
    elif name == "var":
        state.var = frame
    elif name.startswith("t_"):
        part.tables[name[2:]] = frame
    else:
        part.vectors[name[2:]] = frame


def rebuild_keys(part: Part, pkey: list[str]) -> pl.DataFrame:
    """The key set of a partition whose key-set segment was lost: the keys that survive plus
    every key the remaining tables and vectors hold (a key's stamp is the same everywhere)."""
    from ess.udb.merge import K

    frames = [part.keys.select(*pkey, K)] if part.keys.width else []
    frames += [f.select(*pkey, K) for f in (*part.tables.values(), *part.vectors.values())]
    if not frames:
        return part.keys
    whole = pl.concat(frames, how="vertical_relaxed")
    return whole.unique(subset=[K], keep="first", maintain_order=True).sort(K)


def damaged_files(root: Path) -> list[Path]:
    """Segments moved aside under a store root (still there until removed or wiped)."""
    if not root.is_dir():
        return []
    return sorted(root.glob(f"*/p*/*{DAMAGED}"))


def describe(path: Path) -> Damage | None:
    """A Damage record for a `.damaged` file found on disk (the reason is not kept)."""
    m = SEG_RE.match(path.name.removesuffix(DAMAGED))
    p = _PART_RE.match(path.parent.name)
    if m is None or p is None:
        return None
    return Damage(path.parent.parent.name, int(p[1]), m["name"], str(path), "found at load")


# ------------------------------------------------------ tasks run in workers (disk side)


def store_dir_name(worker_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", worker_name)


def worker_store() -> Store:
    from distributed import get_worker

    from ess.errors import UdbError

    worker = get_worker()
    plugin = worker.plugins.get(PLUGIN_NAME)
    store = getattr(plugin, "store", None)
    if store is not None and store.error:
        raise UdbError(
            f"the UDB on worker {worker.name} could not load its snapshots from {store.root} "
            f"({store.error}); nothing there was changed: fix or move that directory, then "
            "'ess udbd start' (the worker's log has the details)"
        )
    if store is None or not store.ready:
        raise UdbError(f"the UDB is not running on worker {worker.name}: run 'ess udbd start'")
    return store


def w_wipe_snapshots(root: str) -> bool:
    """`ess udbd stop` while the UDB is not registered (e.g. after `ess cluster stop/start`):
    nothing is in memory, but this worker's snapshots under `root` would come back at the
    next start. Runs without the plugin; True if there was something to remove."""
    from distributed import get_worker

    base = Path(root).expanduser() / store_dir_name(str(get_worker().name))
    found = base.exists()
    shutil.rmtree(base, ignore_errors=True)
    return found


def w_rename_store(new_name: str) -> str:
    """Move this worker's snapshots to where it will look for them once restarted as
    `new_name` (custom clusters renumber their workers after a removal). Existing data under
    the new name is never overwritten."""
    from ess.errors import UdbError

    store = worker_store()
    with store.lock:
        target = store.root.parent / store_dir_name(new_name)
        if target == store.root:
            return str(target)
        if target.exists():
            if any(p.is_file() for p in target.rglob("*")):
                raise UdbError(
                    f"worker {store.name}: cannot move its snapshots to {target}: that directory "
                    "already holds UDB data (left there by another worker?); nothing was changed"
                )
            shutil.rmtree(target)
        if store.root.exists():
            os.rename(store.root, target)
        store.root = target
    return str(target)


def w_snapshot_dbs(root: str) -> list[str]:
    """Databases this worker has snapshot files of under `root`; runs without the plugin (the
    UDB not started since the scheduler last started), so a removal can see stranded data."""
    from distributed import get_worker

    base = Path(root).expanduser() / store_dir_name(str(get_worker().name))
    if not base.is_dir():
        return []
    return sorted(d.name for d in base.iterdir() if d.is_dir() and any(d.rglob("*.arrow")))

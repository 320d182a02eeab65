"""What the dashboard shows, gathered from the library (no HTML here; ``ess.ui.pages`` draws it).

Every function reads the same state the commands use (``$ESS_CACHE_DIR`` for datastores and
categories, ``$ESS_WORK_DIR`` for the cluster, the run records and the UDB), so the pages show
what ``ess summary``, ``ess cluster status`` and ``ess server summary`` would print. Nothing here
rescans a datastore: categories show their cached file lists (as ``ess ls`` with ``usecache``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass, field, replace
from typing import Any

from ess.workspace import Workspace

#: rows of a category's probe sample shown on its page
SAMPLE_ROWS = 10


@dataclass(frozen=True)
class Day:
    date: dt.date
    files: int
    size: int


@dataclass(frozen=True)
class CategoryView:
    name: str
    pattern: str
    count: int
    size: int
    first: str
    last: str
    columnspec: str = ""
    delimiter: str = ","
    comment: str = ""
    days: tuple[Day, ...] = ()  # one per day from the first to the last (gaps have no files)
    undated: int = 0  # files without a date in their name (1970-01-01 or numbered)
    sample: tuple[tuple[str, ...], ...] = ()
    has_header: bool = False  # the sample's first row names the columns


@dataclass(frozen=True)
class DatastoreView:
    label: str
    description: str
    current: bool
    categories: tuple[CategoryView, ...] = ()


def datastores(ws: Workspace) -> list[DatastoreView]:
    from ess.datastore.registry import Registry

    registry = Registry(ws)
    current = registry.current_label()
    out = []
    for label, store in sorted(registry.all().items()):
        cats = tuple(category(ws, label, name, detail=False) for name in _names(ws, label))
        out.append(DatastoreView(label, store.describe(), label == current, cats))
    return out


def _names(ws: Workspace, label: str) -> list[str]:
    from ess.datastore.api import open_catalog

    return sorted(open_catalog(ws, label).all())


def category(ws: Workspace, label: str, name: str, *, detail: bool = True) -> CategoryView:
    """One category's numbers; with ``detail`` its calendar and sample rows too."""
    from ess.datastore.api import open_catalog
    from ess.datastore.summary import CategoryStats

    catalog = open_catalog(ws, label)
    cat = catalog.get(name)
    files = catalog.cached_files(cat.name)
    stats = CategoryStats.of(cat.name, files)
    view = CategoryView(
        name=cat.name,
        pattern=cat.pattern,
        count=stats.count,
        size=stats.size,
        first=stats.first,
        last=stats.last,
        columnspec=cat.effective_columnspec,
        delimiter=cat.effective_delimiter,
        comment=cat.comment or "",
    )
    if not detail:
        return view
    days, undated = calendar_days([(f.stamp, f.size) for f in files])
    sample: tuple[tuple[str, ...], ...] = ()
    header = bool(cat.probe and cat.probe.has_header)
    if cat.probe is not None:
        sample = parse_sample(cat.probe.sample_lines, view.delimiter, header)
    return replace(view, days=days, undated=undated, sample=sample, has_header=header)


def calendar_days(stamps: list[tuple[Any, int]]) -> tuple[tuple[Day, ...], int]:
    """Files and bytes per day, every day from the first dated file to the last (days without
    files included: they are the gaps), and how many files had no date."""
    per_day: dict[dt.date, tuple[int, int]] = {}
    undated = 0
    for stamp, size in stamps:
        day = _day(stamp)
        if day is None:
            undated += 1
            continue
        n, b = per_day.get(day, (0, 0))
        per_day[day] = (n + 1, b + size)
    if not per_day:
        return (), undated
    first, last = min(per_day), max(per_day)
    span = (last - first).days + 1
    days = []
    for i in range(span):
        d = first + dt.timedelta(days=i)
        n, b = per_day.get(d, (0, 0))
        days.append(Day(d, n, b))
    return tuple(days), undated


def _day(stamp: Any) -> dt.date | None:
    if not isinstance(stamp, str) or stamp.startswith("1970-01-01"):
        return None  # numbered categories and files without a date in their name
    try:
        return dt.date.fromisoformat(stamp[:10])
    except ValueError:
        return None


def parse_sample(lines: list[str], delimiter: str, header: bool) -> tuple[tuple[str, ...], ...]:
    """The probe's sample lines split into fields (quotes honoured), header first if any."""
    text = "\n".join(lines[: SAMPLE_ROWS + (1 if header else 0)])
    reader = csv.reader(io.StringIO(text), delimiter=delimiter[:1] or ",")
    return tuple(tuple(row) for row in reader)


# ---------------------------------------------------------------------------------- cluster
@dataclass(frozen=True)
class ClusterView:
    platform: str
    cluster_id: str = ""
    nodes: tuple[Any, ...] = ()  # ess.cluster.provider.NodeStatus
    problems: tuple[str, ...] = ()
    error: str = ""


def cluster(ws: Workspace) -> ClusterView:
    from ess.cluster.provider import current_platform, provider_for
    from ess.errors import EssError

    platform = current_platform(ws)
    try:
        status = provider_for(ws).status()
    except EssError as exc:
        return ClusterView(platform, error=str(exc))
    return ClusterView(platform, status.cluster_id, status.nodes, status.problems)


def cluster_action(ws: Workspace, action: str, number: int = 1) -> str:
    """Run a button's action (start, stop, add); returns what to tell the user."""
    from ess.cluster.provider import CloudAuth, CreateOptions, provider_for
    from ess.errors import UsageError

    provider = provider_for(ws)
    if action == "start":
        status = provider.start(CloudAuth())
        return f"cluster {status.cluster_id} running"
    if action == "stop":
        provider.stop(CloudAuth())
        return "cluster stopped"
    if action == "add":
        if not 1 <= number <= 64:
            raise UsageError("add: the number of workers must be within 1..64")
        status = provider.create(CreateOptions(number=number, add=True))
        workers = sum(n.id != "master" for n in status.nodes)
        return f"cluster {status.cluster_id}: {workers} workers"
    raise UsageError(f"unknown cluster action {action!r}")


def dask_dashboard(ws: Workspace) -> str | None:
    """The URL of the running scheduler's Dask dashboard, if it has one (bokeh installed)."""
    from ess.engine.serve import dashboard_file

    for address in sorted(ws.work_dir.glob("*/scheduler.address")):
        link = dashboard_file(address)
        if link.exists():
            return link.read_text().strip() or None
    return None


def bokeh_installed() -> bool:
    from ess.engine.serve import dashboard_available

    return dashboard_available()


# ---------------------------------------------------------------------------------- work
def runs(ws: Workspace, limit: int = 20) -> list[dict[str, Any]]:
    from ess.run.progress import read_runs

    return read_runs(ws, limit=limit)


# ---------------------------------------------------------------------------------- UDB
@dataclass(frozen=True)
class TargetView:
    kind: str
    name: str
    columns: str
    keys: int | None = None
    rows: int | None = None


@dataclass(frozen=True)
class DatabaseView:
    name: str
    ports: str
    pkey: str
    targets: tuple[TargetView, ...]
    keys_per_worker: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class UdbView:
    databases: tuple[DatabaseView, ...]
    running: bool
    memory: dict[str, dict[str, int]] = field(default_factory=dict)  # worker -> rows/bytes/rss
    note: str = ""


def udb(ws: Workspace, *, live: bool = True) -> UdbView:
    """Definitions always; with ``live`` and a running UDB, key and row counts per table and
    vector and the memory each worker holds."""
    from ess.udb import spec

    specs = [spec.load(ws, db) for db in spec.list_databases(ws)]
    session = _udb_session(ws) if live and specs else None
    if session is None:
        note = "" if not specs else "the UDB is not running: definitions only"
        return UdbView(tuple(_db_view(s, {}, {}) for s in specs), False, note=note)
    from ess.errors import EssError
    from ess.udb import moves, server

    with session:
        try:
            memory = session.each_worker(server.w_memory)
            inventory = session.each_worker(moves.w_inventory)
            counts = {s.name: _counts(ws, session, s) for s in specs}
        except (EssError, OSError, TimeoutError) as exc:  # e.g. a worker died meanwhile
            note = f"the UDB did not answer: {exc}"
            return UdbView(tuple(_db_view(s, {}, {}) for s in specs), False, note=note)
    dbs = []
    for s in specs:
        per_worker = {w: sum(inv.get(s.name.lower(), {}).values()) for w, inv in inventory.items()}
        dbs.append(_db_view(s, counts[s.name], per_worker))
    return UdbView(tuple(dbs), True, memory=memory)


def _udb_session(ws: Workspace) -> Any:
    from ess.cluster.provider import provider_for
    from ess.errors import EssError
    from ess.udb import udbd
    from ess.udb.client import UdbSession

    try:
        if provider_for(ws).connection(revive=False) is None:
            return None
        session = UdbSession(ws, revive=False, timeout=10)
    except (EssError, OSError, TimeoutError):  # no cluster, or one that does not answer
        return None
    try:
        if session.client.run_on_scheduler(udbd._is_registered):
            return session
    except Exception:  # the scheduler went away meanwhile: show the definitions only
        pass
    session.close()
    return None


def _counts(ws: Workspace, session: Any, db: Any) -> dict[str, tuple[int, int]]:
    """{target: (keys, rows)} through aq_udb -cnt (what a user would run)."""
    from ess.udb import query

    out = {}
    for t in db.targets:
        if t.kind == "var":
            continue
        text = query.run(ws, ["-cnt", f"{db.name}:{t.name}"], session=session).decode()
        numbers = dict(_count_line(line) for line in text.splitlines()[1:] if "," in line)
        out[t.name] = (numbers.get("pkey", 0), numbers.get("row", numbers.get("pkey", 0)))
    return out


def _count_line(line: str) -> tuple[str, int]:
    name, _, value = line.partition(",")
    return name.strip('"'), int(value)


def _db_view(db: Any, counts: dict[str, tuple[int, int]], per_worker: dict[str, int]) -> Any:
    targets = []
    for t in db.targets:
        keys, rows = counts.get(t.name, (None, None))
        label = "variable" if t.kind == "var" else t.kind
        columns = " ".join(c.text() for c in t.columns)
        targets.append(TargetView(label, t.name, columns, keys, rows))
    return DatabaseView(
        name=db.name,
        ports=" ".join(map(str, db.ports)),
        pkey=" ".join(c.text() for c in db.pkey),
        targets=tuple(targets),
        keys_per_worker=per_worker,
    )


def udb_preview(ws: Workspace, db: str, target: str, rows: int = 20) -> str:
    """The first ``rows`` records of ``db:target`` as aq_udb -exp prints them (CSV)."""
    from ess.udb import query

    session = _udb_session(ws)
    if session is None:
        from ess.errors import UdbError

        raise UdbError("the UDB is not running: start it with 'ess udbd start'")
    with session:
        argv = ["-exp", f"{db}:{target}", "-lim_rec", str(rows)]
        return query.run(ws, argv, session=session).decode(errors="replace")


# ---------------------------------------------------------------------------------- query
#: what the query page keeps of an answer (the rest is cut: the page is not an export tool)
QUERY_MAX_BYTES = 2 << 20
QUERY_MAX_ROWS = 500


@dataclass(frozen=True)
class QueryView:
    text: str
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()
    truncated: bool = False
    notes: str = ""  # what ess query writes on stderr (rows dropped)
    error: str = ""
    grouped: bool = False  # a GROUP BY answer: the page draws a bar chart


class _Enough(Exception):
    """Raised into the query's writer once the page has all it will show."""


class _Capped(io.RawIOBase):
    def __init__(self, limit: int) -> None:
        self.data = bytearray()
        self.limit = limit
        self.full = False

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        chunk = bytes(b)
        room = self.limit - len(self.data)
        self.data += chunk[: max(0, room)]
        if len(chunk) > room:
            self.full = True
            raise _Enough
        return len(chunk)


def query(ws: Workspace, text: str) -> QueryView:
    """Run ``ess query`` (JSON lines) and keep the first rows of the answer."""
    import json
    import re

    from ess.errors import EssError
    from ess.query.engine import run_query

    out = _Capped(QUERY_MAX_BYTES)
    err = io.StringIO()
    grouped = re.search(r"\bgroup\s+by\b", text, re.IGNORECASE) is not None
    try:
        run_query(ws, text, fmt="json", out=out, err=err)  # type: ignore[arg-type]
    except EssError as exc:
        return QueryView(text, error=str(exc))
    except Exception:  # the writer's _Enough, however the code between wrapped it
        if not out.full:
            raise
    records = []
    for line in bytes(out.data).splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            break  # the line cut by the cap
    truncated = out.full or len(records) > QUERY_MAX_ROWS
    records = records[:QUERY_MAX_ROWS]
    columns = tuple(records[0]) if records else ()
    rows = tuple(tuple(r.get(c) for c in columns) for r in records)
    return QueryView(text, columns, rows, truncated, err.getvalue().strip(), grouped=grouped)

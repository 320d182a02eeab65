"""UDB database definitions: the udb.spec file format (spec 10.1) and `ess create/drop/use`.

A database is one spec file ``$ESS_WORK_DIR/<db>.spec``. Names of databases, tables, vectors and
columns are case-insensitive (udb.spec rule): lookups use the lower-cased name, titles print the
name as defined. The active database of ``ess create table`` is kept in ``udb.active``.

Every change (create/drop of a database, table, vector or variable, ``ess use``, ``ess server
reset``) is one read-modify-write under a single lock of the work directory (:func:`editing`):
eight ``ess create table`` run at once must all land, and port allocation reads every spec.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from ess.aq.colspec import TYPES, polars_dtype
from ess.errors import UdbError
from ess.workspace import Workspace, locked, write_bytes_atomic

DEFAULT_PORT = 10010
MAX_PORT = 10079
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,30}$")
ACTIONS = ("+first", "+last", "+add", "+bor", "+min", "+max")
_ATTRS = {"pkey", "hash", "tkey", "+key", "+nozero", *ACTIONS}


@dataclass(frozen=True)
class Column:
    typ: str  # S I IS L LS F IP
    name: str
    attrs: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return self.name.lower()

    @property
    def action(self) -> str:
        for a in self.attrs:
            if a in ACTIONS:
                return a
        return "+last"

    @property
    def nozero(self) -> bool:
        return "+nozero" in self.attrs

    @property
    def dtype(self) -> pl.DataType:
        return polars_dtype(self.typ)

    def text(self) -> str:
        attrs = [a for a in self.attrs if a not in ("pkey", "hash")]
        return ",".join([self.typ, *attrs]) + ":" + self.name


def parse_column(text: str, *, where: str) -> Column:
    head, sep, name = text.partition(":")
    parts = [p for p in head.split(",") if p]
    if not sep or not parts:
        raise UdbError(f"{where}: column spec {text!r} needs the form Type[,Attr...]:Name")
    typ = parts[0].upper()
    if typ not in TYPES:
        raise UdbError(f"{where}: unknown column type {parts[0]!r} in {text!r}")
    if not NAME_RE.match(name):
        raise UdbError(f"{where}: bad column name {name!r} in {text!r}")
    attrs = []
    for raw in parts[1:]:
        attr = raw.lower()
        if attr not in _ATTRS:
            raise UdbError(f"{where}: unknown column attribute {raw!r} in {text!r}")
        attrs.append("pkey" if attr == "hash" else attr)
    col = Column(typ, name, tuple(attrs))
    if col.action == "+add" and typ in ("S", "IP"):
        raise UdbError(f"{where}: +add needs a numeric column, not {text!r}")
    if col.action == "+bor" and typ not in ("I", "IS", "L", "LS"):
        raise UdbError(f"{where}: +bor needs an integer column, not {text!r}")
    return col


@dataclass(frozen=True)
class Target:
    """A table, a vector or the Var vector of a database."""

    kind: str  # table | vector | var
    name: str
    columns: tuple[Column, ...]

    @property
    def key(self) -> str:
        return self.name.lower()

    def column(self, name: str) -> Column | None:
        low = name.lower()
        return next((c for c in self.columns if c.key == low), None)

    @property
    def merge_keys(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if "+key" in c.attrs)

    @property
    def tkey(self) -> Column | None:
        return next((c for c in self.columns if "tkey" in c.attrs), None)


@dataclass(frozen=True)
class DbSpec:
    name: str
    servers: tuple[str, ...] = ()
    pkey: tuple[Column, ...] = ()
    targets: tuple[Target, ...] = ()

    def target(self, name: str) -> Target | None:
        low = name.lower()
        return next((t for t in self.targets if t.key == low), None)

    @property
    def var(self) -> Target | None:
        return next((t for t in self.targets if t.kind == "var"), None)

    @property
    def ports(self) -> tuple[int, ...]:
        out = []
        for s in self.servers:
            port = s.rsplit(":", 1)[1] if ":" in s else str(DEFAULT_PORT)
            out.append(int(port.split("*")[0]))
        return tuple(out)

    def require(self, name: str) -> Target:
        found = self.target(name)
        if found is None:
            known = ", ".join(t.name for t in self.targets if t.kind != "var") or "none"
            raise UdbError(f"database {self.name}: no table or vector {name!r} (defined: {known})")
        return found

    def text(self) -> str:
        lines = ["@Server:", *(f"  {s}" for s in self.servers)]
        if self.pkey:
            lines += ["@PKey:", *(f"  {c.text()}" for c in self.pkey)]
        for t in self.targets:
            head = {"table": f"@Table:{t.name}", "vector": f"@Vector:{t.name}", "var": "@Var:"}
            lines.append(head[t.kind])
            lines += [f"  {c.text()}" for c in t.columns]
        return "\n".join(lines) + "\n"


def parse_spec(text: str, *, name: str, source: str) -> DbSpec:
    """Parse udb.spec text; `name` is the database name (the file does not hold it)."""
    servers: list[str] = []
    pkey: list[Column] = []
    targets: list[Target] = []
    section: str | None = None
    current: list[Column] | None = None
    cur_head: tuple[str, str] | None = None

    def close() -> None:
        if cur_head is not None and current is not None:
            targets.append(Target(cur_head[0], cur_head[1], tuple(current)))

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        where = f"{source}, line {lineno}"
        if line.startswith("@"):
            head, _, rest = line.partition(":")
            head = head.lower()
            rest = rest.strip()
            close()
            cur_head, current = None, None
            if head == "@server":
                section = "server"
                if rest:
                    servers.append(rest)
            elif head == "@port":
                section = None
                servers = [s if ":" in s else f"{s}:{rest}" for s in servers]
            elif head == "@pkey":
                section = "pkey"
            elif head in ("@table", "@vector"):
                if not NAME_RE.match(rest):
                    raise UdbError(f"{where}: bad {head[1:]} name {rest!r}")
                section = "cols"
                cur_head, current = (head[1:], rest), []
            elif head == "@var":
                section = "cols"
                cur_head, current = ("var", "var"), []
            else:
                raise UdbError(f"{where}: unknown section {head!r}")
            continue
        if section == "server":
            servers.append(line)
        elif section == "pkey":
            pkey.extend(parse_column(w, where=where) for w in line.split())
        elif section == "cols" and current is not None:
            current.extend(parse_column(w, where=where) for w in line.split())
        else:
            raise UdbError(f"{where}: unexpected line {raw.strip()!r}")
    close()
    return DbSpec(name=name, servers=tuple(servers), pkey=tuple(pkey), targets=tuple(targets))


# ---------------------------------------------------------------- files in ESS_WORK_DIR


def spec_path(ws: Workspace, db: str) -> Path:
    return ws.work_dir / f"{db}.spec"


def _active_file(ws: Workspace) -> Path:
    return ws.work_dir / "udb.active"


def _find_file(ws: Workspace, db: str) -> Path | None:
    low = db.lower()
    if not ws.work_dir.is_dir():
        return None
    for p in ws.work_dir.glob("*.spec"):
        if p.stem.lower() == low:
            return p
    return None


def list_databases(ws: Workspace) -> list[str]:
    if not ws.work_dir.is_dir():
        return []
    return sorted(p.stem for p in ws.work_dir.glob("*.spec"))


def load(ws: Workspace, db: str, spec_file: str | None = None) -> DbSpec:
    """The definition of `db`: `spec_file` if given, else `.conf/<db>.spec`, else `udb.spec`."""
    candidates = [Path(spec_file)] if spec_file else []
    found = _find_file(ws, db)
    if not spec_file:
        candidates += [found] if found else []
        candidates.append(Path("udb.spec"))
    for path in candidates:
        if path.is_file():
            name = found.stem if found is not None and path == found else db
            return parse_spec(path.read_text(), name=name, source=str(path))
    raise UdbError(
        f"database {db!r} is not defined (no {spec_path(ws, db)}); "
        f"create it with 'ess create database {db}'"
    )


@contextlib.contextmanager
def editing(ws: Workspace) -> Iterator[None]:
    """Hold the lock that serialises every change of the definitions in this work directory
    (not reentrant: a flock taken twice by one process on two descriptors would wait forever)."""
    with locked(ws.work_dir / "udb.specs"):
        yield


def save(ws: Workspace, spec: DbSpec) -> None:
    """Write `spec` (the caller holds :func:`editing` around its read-modify-write)."""
    path = _find_file(ws, spec.name) or spec_path(ws, spec.name)
    ws.work_dir.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, spec.text().encode())


def active(ws: Workspace) -> str:
    try:
        name = _active_file(ws).read_text().strip()
    except FileNotFoundError:
        name = ""
    if not name or _find_file(ws, name) is None:
        raise UdbError("no active database: run 'ess create database NAME' or 'ess use NAME'")
    return name


def use(ws: Workspace, db: str) -> None:
    with editing(ws):
        _use(ws, db)


def _use(ws: Workspace, db: str) -> None:
    found = _find_file(ws, db)
    if found is None:
        raise UdbError(f"database {db!r} is not defined")
    write_bytes_atomic(_active_file(ws), f"{found.stem}\n".encode())


def used_ports(ws: Workspace, *, exclude: str | None = None) -> set[int]:
    ports: set[int] = set()
    for db in list_databases(ws):
        if exclude is not None and db.lower() == exclude.lower():
            continue
        ports.update(load(ws, db).ports)
    return ports


def allocate_ports(ws: Workspace, requests: list[str], *, db: str) -> tuple[int, ...]:
    """`--ports N` (count), `--ports 10011` (that port), `a-b` ranges, comma lists."""
    taken = used_ports(ws, exclude=db)
    wanted: list[int] = []
    count = 0
    for item in ",".join(requests).split(","):
        item = item.strip()
        if not item:
            continue
        if "-" in item:
            lo, _, hi = item.partition("-")
            wanted += list(range(int(lo), int(hi) + 1))
        elif item.isdigit() and int(item) >= DEFAULT_PORT:
            wanted.append(int(item))
        elif item.isdigit():
            count += int(item)
        else:
            raise UdbError(f"--ports: bad value {item!r}")
    if not wanted and not count:
        count = 1
    port = DEFAULT_PORT
    while count:
        if port > MAX_PORT:
            raise UdbError(f"no free UDB port left in {DEFAULT_PORT}-{MAX_PORT}")
        if port not in taken and port not in wanted:
            wanted.append(port)
            count -= 1
        port += 1
    for p in wanted:
        if not DEFAULT_PORT <= p <= MAX_PORT:
            raise UdbError(f"--ports: port {p} outside {DEFAULT_PORT}-{MAX_PORT}")
    return tuple(sorted(set(wanted)))


def create_database(ws: Workspace, name: str, ports: list[str]) -> None:
    if not NAME_RE.match(name):
        raise UdbError(f"bad database name {name!r} (letters, digits, _; at most 31)")
    with editing(ws):
        _create_database(ws, name, ports)


def _create_database(ws: Workspace, name: str, ports: list[str]) -> None:
    allocated = allocate_ports(ws, ports, db=name)
    existing = _find_file(ws, name)
    spec = load(ws, name) if existing else DbSpec(name=name)
    save(ws, replace(spec, servers=tuple(f"127.0.0.1:{p}" for p in allocated)))
    _use(ws, name)


def create_target(ws: Workspace, kind: str, name: str, words: list[str]) -> None:
    with editing(ws):
        _create_target(ws, kind, name, words)


def _create_target(ws: Workspace, kind: str, name: str, words: list[str]) -> None:
    db = load(ws, active(ws))
    items = " ".join(words).split()
    if not items:
        raise UdbError(f"create {kind}: missing column specs")
    where = f"create {kind} {name}"
    cols = [parse_column(w, where=where) for w in items]
    pkey = tuple(replace(c, attrs=()) for c in cols if "pkey" in c.attrs)
    rest = tuple(c for c in cols if "pkey" not in c.attrs)
    if kind == "var" and pkey:
        raise UdbError("create variable: a variable has no pkey column")
    if pkey:
        if db.pkey and [(c.typ, c.key) for c in db.pkey] != [(c.typ, c.key) for c in pkey]:
            have = " ".join(c.text() for c in db.pkey)
            raise UdbError(f"{where}: pkey {' '.join(c.text() for c in pkey)} differs from "
                           f"the database's pkey {have}")  # fmt: skip
        db = replace(db, pkey=db.pkey or pkey)
    elif kind != "var" and not db.pkey:
        raise UdbError(f"{where}: no column has the pkey attribute")
    if kind != "var" and not NAME_RE.match(name):
        raise UdbError(f"{where}: bad name {name!r}")
    if kind == "vector" and any("+key" in c.attrs for c in rest):
        raise UdbError(f"{where}: +key is for tables only")
    names = [c.key for c in rest]
    dupes = {n for n in names if names.count(n) > 1} | (
        {n for n in names} & {c.key for c in db.pkey}
    )
    if dupes:
        raise UdbError(f"{where}: duplicate column {sorted(dupes)[0]!r}")
    target = Target(kind, name if kind != "var" else "var", rest)
    others = tuple(t for t in db.targets if t.key != target.key)
    save(ws, replace(db, targets=(*others, target)))


def drop(ws: Workspace, kind: str, name: str | None) -> bool:
    """Remove a database (its file) or a table/vector/variable; False when it did not exist."""
    with editing(ws):
        return _drop(ws, kind, name)


def _drop(ws: Workspace, kind: str, name: str | None) -> bool:
    if kind == "database":
        assert name is not None
        found = _find_file(ws, name)
        if found is None:
            return False
        found.unlink()
        return True
    db = load(ws, active(ws))
    key = "var" if kind == "variable" else (name or "").lower()
    kept = tuple(t for t in db.targets if not (t.key == key and (t.kind == kind or key == "var")))
    if len(kept) == len(db.targets):
        return False
    save(ws, replace(db, targets=kept))
    return True


def reset(ws: Workspace) -> None:
    with editing(ws):
        for db in list_databases(ws):
            _drop(ws, "database", db)
        _active_file(ws).unlink(missing_ok=True)


def all_ports(ws: Workspace) -> list[int]:
    return sorted(used_ports(ws)) or [DEFAULT_PORT]


@dataclass
class Summary:
    lines: list[str] = field(default_factory=list)


def defined(ws: Workspace, name: str | None = None) -> list[DbSpec]:
    """The definitions `ess server summary` shows: every database, or only `name`."""
    return [load(ws, db) for db in list_databases(ws) if not name or db.lower() == name.lower()]


def summary_json(ws: Workspace, name: str | None) -> dict[str, Any]:
    """``ess server summary --json`` (docs/json-schemas/server-summary.json)."""

    def column(c: Column) -> dict[str, Any]:
        return {"name": c.name, "type": c.typ, "attributes": list(c.attrs), "spec": c.text()}

    def target(t: Target) -> dict[str, Any]:
        kind = "variable" if t.kind == "var" else t.kind
        return {"kind": kind, "name": t.name, "columns": [column(c) for c in t.columns]}

    try:
        current: str | None = active(ws)
    except UdbError:
        current = None
    chosen = (current or "").lower()
    databases = [
        {"name": d.name, "ports": list(d.ports), "active": d.name.lower() == chosen,
         "pkey": [column(c) for c in d.pkey], "targets": [target(t) for t in d.targets]}
        for d in defined(ws, name)
    ]  # fmt: skip
    return {"active": current, "databases": databases}


def summary(ws: Workspace, name: str | None) -> list[str]:
    out: list[str] = []
    for spec in defined(ws, name):
        out.append(f"database {spec.name} (ports {' '.join(map(str, spec.ports))})")
        out.append("  pkey: " + " ".join(c.text() for c in spec.pkey))
        for t in spec.targets:
            title = "variable" if t.kind == "var" else f"{t.kind} {t.name}"
            out.append(f"  {title}: " + " ".join(c.text() for c in t.columns))
    return out

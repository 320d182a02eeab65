"""The linked database: what ``ess redshift register`` stores, and connecting to it.

The registration lives in ``$ESS_WORK_DIR/redshift.json`` (host, port, database, user, kind,
staging, IAM role: no password). The password lives alone in ``redshift.password`` beside it,
mode 0600, written through :func:`ess.workspace.write_secret`. It is handed to libpq as a
keyword argument (never in a DSN string, never on a command line) and reaches the workers in
the environment of their load task, which travels over the cluster's mutual TLS.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ess.errors import ConfigError, CredentialsError, EssError, UsageError
from ess.workspace import Workspace, read_json, write_json_atomic, write_secret

STATE = "redshift.json"
SECRET = "redshift.password"
REDSHIFT_PORT = 5439
CONNECT_TIMEOUT = 10


class LoadError(EssError):
    """The database refused a statement or a load (exit 1, one line)."""


@dataclass(frozen=True)
class Registration:
    """The linked database. ``kind``: "postgresql" (any PostgreSQL-protocol server) or
    "redshift" (resolved from a Redshift cluster id). ``redshift``: the server said it is
    Redshift when it was registered (DISTKEY/SORTKEY and the S3 path depend on it)."""

    kind: str
    host: str
    port: int
    dbname: str
    user: str
    cluster_id: str = ""
    redshift: bool = False
    staging: str = ""  # s3://bucket/prefix for Redshift loads
    iam_role: str = ""  # the role Redshift assumes to read the staging prefix
    region: str = ""

    def describe(self) -> str:
        what = f"Redshift cluster {self.cluster_id}" if self.cluster_id else self.kind
        return f"{what}: {self.user}@{self.host}:{self.port}/{self.dbname}"

    def connect_args(self, password: str) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
            "password": password,
            "connect_timeout": CONNECT_TIMEOUT,
            "application_name": "ess",
        }


def _paths(ws: Workspace) -> tuple[Path, Path]:
    return ws.work_dir / STATE, ws.work_dir / SECRET


def save(ws: Workspace, reg: Registration, password: str) -> None:
    state, secret = _paths(ws)
    write_secret(secret, password.encode())
    write_json_atomic(state, asdict(reg))


def load(ws: Workspace) -> tuple[Registration, str]:
    """The registration and its password; ConfigError when nothing is registered."""
    state, secret = _paths(ws)
    data = read_json(state)
    if not data:
        raise ConfigError(
            "no database is registered: ess redshift register CLUSTERID DBNAME USER PASSWORD, "
            "or ess redshift register --url postgresql://USER@HOST:PORT/DBNAME"
        )
    known = {f.name for f in fields(Registration)}
    reg = Registration(**{k: v for k, v in data.items() if k in known})
    try:
        password = secret.read_bytes().decode()
    except OSError as exc:
        raise ConfigError(f"{secret}: cannot read the stored password ({exc.strerror})") from exc
    return reg, password


def forget(ws: Workspace) -> bool:
    found = False
    for path in _paths(ws):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            found = True
    return found


def parse_url(url: str) -> tuple[str, int, str, str, str | None]:
    """``postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME`` -> host, port, db, user, password."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres", "redshift"):
        raise UsageError(f"--url: expected postgresql://USER@HOST:PORT/DBNAME, got {parts.scheme}:")
    try:
        port = parts.port or (REDSHIFT_PORT if parts.scheme == "redshift" else 5432)
    except ValueError:
        raise UsageError("--url: bad port") from None
    host = parts.hostname or ""
    dbname = unquote(parts.path.lstrip("/"))
    user = unquote(parts.username or "")
    if not (host and dbname and user):
        raise UsageError("--url needs a user, a host and a database: postgresql://USER@HOST/DB")
    password = unquote(parts.password) if parts.password is not None else None
    return host, port, dbname, user, password


def pgpass_password(host: str, port: int, dbname: str, user: str) -> str | None:
    """The password ``~/.pgpass`` (or ``$PGPASSFILE``) gives this connection, as libpq reads it."""
    path = Path(os.environ.get("PGPASSFILE") or Path.home() / ".pgpass")
    try:
        text = path.read_text()
    except OSError:
        return None
    wanted = (host, str(port), dbname, user)
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        items = _split_pgpass(line)
        if len(items) != 5:
            continue
        if all(pat in ("*", val) for pat, val in zip(items[:4], wanted, strict=True)):
            return items[4]
    return None


def _split_pgpass(line: str) -> list[str]:
    items, current, escaped = [], [], False
    for ch in line:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ":":
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
    items.append("".join(current))
    return items


def connect(reg: Registration, password: str, *, autocommit: bool = False) -> Any:
    """A psycopg connection; a refused or unreachable server is one clear line."""
    import psycopg

    try:
        return psycopg.connect(**reg.connect_args(password), autocommit=autocommit)
    except psycopg.OperationalError as exc:
        raise connect_error(reg, exc) from None


def connect_error(reg: Registration, exc: BaseException) -> EssError:
    text = " ".join(str(exc).split())
    where = f"{reg.user}@{reg.host}:{reg.port}/{reg.dbname}"
    if "password authentication failed" in text or "authentication failed" in text:
        return CredentialsError(f"{where}: the server rejected the password for {reg.user!r}")
    # libpq's message names the address; it never contains the password
    text = text.removeprefix("connection failed: ")
    return LoadError(f"cannot connect to {where}: {text}")


@contextlib.contextmanager
def connection(ws: Workspace, *, autocommit: bool = False) -> Iterator[tuple[Registration, Any]]:
    reg, password = load(ws)
    conn = connect(reg, password, autocommit=autocommit)
    try:
        yield reg, conn
    finally:
        conn.close()


def server_is_redshift(conn: Any) -> bool:
    row = conn.execute("select version()").fetchone()
    return "redshift" in str(row[0]).lower()


def server_error(exc: BaseException) -> LoadError:
    """A server's error as one line: its message, and the position in the statement."""
    diag = getattr(exc, "diag", None)
    message = getattr(diag, "message_primary", None) or str(exc).splitlines()[0]
    position = getattr(diag, "statement_position", None)
    where = f" (position {position})" if position else ""
    return LoadError(f"{message}{where}")


def quote_ident(name: str) -> str:
    """A SQL identifier, always double-quoted (``"`` doubled): a table called ``a"; drop x``
    is just a name. Unquoted Redshift/PostgreSQL names fold to lower case, so a plain name is
    folded here too (``April2014`` and ``april2014`` are one table, as in Essentia's docs)."""
    if not name or "\0" in name:
        raise UsageError(f"bad SQL name {name!r}")
    if name.replace("_", "a").isalnum() and name.isascii() and not name[0].isdigit():
        name = name.lower()
    return '"' + name.replace('"', '""') + '"'


def fold_name(name: str) -> str:
    """How the server names ``name`` (a plain name folded to lower case): the ledger's key."""
    return quote_table(name).replace('""', "\0").replace('"', "").replace("\0", '"')


def quote_table(name: str) -> str:
    """``schema.table`` or ``table``; each part quoted by :func:`quote_ident`."""
    schema, dot, table = name.partition(".")
    if dot and schema and table and '"' not in name:
        return f"{quote_ident(schema)}.{quote_ident(table)}"
    return quote_ident(name)

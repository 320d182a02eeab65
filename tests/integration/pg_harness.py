"""A real PostgreSQL server for the `ess redshift` tests (Debian's postgresql 15 binaries).

``running_postgres()`` runs ``initdb`` into a fresh temporary directory, starts ``postgres``
with ``pg_ctl`` listening on 127.0.0.1 on a free port (its unix socket in that directory) with
password authentication (scram-sha-256, so a wrong password is really refused), and stops and
removes it when the block ends. initdb and postgres refuse to run as root: as root the server
runs as the unprivileged user that ``scripts/pg-user.sh`` creates (idempotently).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import PROJECT, free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SUPERUSER = "essadmin"
PASSWORD = "s3cret-Pg-word!"
PREFIX = "ess-pg-"  # each server's directory under the temporary directory
OWNER = "owner"  # the pid of the test process that started it


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str
    dbname: str
    datadir: Path
    pid: int

    def url(self, *, user: str | None = None, dbname: str | None = None) -> str:
        return f"postgresql://{user or self.user}@{self.host}:{self.port}/{dbname or self.dbname}"

    def connect(self, dbname: str | None = None) -> object:
        import psycopg

        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=dbname or self.dbname,
            autocommit=True,
        )


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    user = subprocess.run(
        ["bash", str(PROJECT / "scripts" / "pg-user.sh")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return ["runuser", "-u", user, "--", *argv]


@contextlib.contextmanager
def running_postgres() -> Iterator[Postgres]:
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError("PostgreSQL 15 is not installed: run scripts/setup-system.sh")
    _stop_orphans()
    root = Path(tempfile.mkdtemp(prefix=PREFIX))
    (root / OWNER).write_text(f"{os.getpid()}\n")
    datadir = root / "data"
    pwfile = root / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        user = subprocess.run(
            ["bash", str(PROJECT / "scripts" / "pg-user.sh")],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        shutil.chown(root, user)
        shutil.chown(pwfile, user)
    os.chmod(root, 0o700)
    port = free_port()
    started = False
    try:
        subprocess.run(
            _as_server_user(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(datadir),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=50 -c shared_buffers=64MB"
        )
        subprocess.run(
            _as_server_user(
                [
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(datadir),
                    "-l",
                    str(root / "log"),
                    "-o",
                    opts,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        started = True
        pid = int((datadir / "postmaster.pid").read_text().split()[0])
        pg = Postgres("127.0.0.1", port, SUPERUSER, PASSWORD, "postgres", datadir, pid)
        _wait_ready(pg)
        yield pg
    finally:
        if started:
            _stop(datadir)
        shutil.rmtree(root, ignore_errors=True)


def _stop(datadir: Path) -> None:
    subprocess.run(
        _as_server_user([str(PG_BIN / "pg_ctl"), "-D", str(datadir), "-m", "immediate", "stop"]),
        capture_output=True,
        timeout=60,
    )


def _stop_orphans() -> None:
    """Stop and remove the servers of earlier test runs that were killed (SIGKILL skips the
    `finally` above): their owner process is gone, their postgres would run on forever."""
    for root in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            owner = int((root / OWNER).read_text())
        except (OSError, ValueError):
            continue
        if owner == os.getpid() or Path(f"/proc/{owner}").exists():
            continue
        if (root / "data" / "postmaster.pid").exists():
            _stop(root / "data")
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(pg: Postgres) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            pg.connect().close()  # type: ignore[attr-defined]
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One real PostgreSQL server for the whole session (import this fixture by name)."""
    with running_postgres() as pg:
        yield pg

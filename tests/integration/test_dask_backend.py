"""The dask platform: a Dask cluster someone else runs, attached with `ess cluster set dask`.

The "someone else" is this test: a plain `dask scheduler` and two plain `dask worker`
processes (default worker class, nanny, their own names), all over mutual TLS on 127.0.0.1,
with certificate files under names of their own. Then everything goes through the command
line as a user types it: stream, exec, the UDB (create, udbd start, aq_pp -imp from a stream on
the workers, aq_udb -exp from exec), compared with the same commands on the local backend.
Every process started here is stopped by its process group at the end.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ess.engine.security import create_tls
from tests.conftest import BIN, GOLDEN, WOODWORKING, EssEnv, Result, make_env

pytestmark = pytest.mark.slow

DAYS = 4
JOIN_TIMEOUT = 120.0


@dataclass(frozen=True)
class Foreign:
    """The cluster we attach to, and the client files its operators gave us."""

    address: str
    ca: Path
    cert: Path
    key: Path
    groups: tuple[int, ...]  # process groups of the scheduler and the workers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(argv: list[str], log: Path, env: dict[str, str]) -> int:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    return proc.pid


def _stop(groups: tuple[int, ...]) -> None:
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for pgid in groups:
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pgid, 0)


def _files(src: Path, dest: Path, names: dict[str, str]) -> dict[str, Path]:
    dest.mkdir(mode=0o700)
    for name, new in names.items():
        shutil.copy(src / name, dest / new)
        os.chmod(dest / new, 0o600)
    return {name: dest / new for name, new in names.items()}


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Foreign]:
    root = tmp_path_factory.mktemp("foreign")
    made = create_tls(root / "made", cluster_id="theirs", hosts=("127.0.0.1",))
    ours = _files(made.directory, root / "me", {"ca.crt": "ca.pem", "client.crt": "me.pem",
                                                  "client.key": "me.key"})  # fmt: skip
    theirs = _files(made.directory, root / "ops", {"ca.crt": "cluster-ca.pem",
                    "scheduler.crt": "sched.pem", "scheduler.key": "sched.key",
                    "worker.crt": "node.pem", "worker.key": "node.key"})  # fmt: skip
    env = dict(os.environ, HOME=str(root / "home"), DASK_DISTRIBUTED__LOGGING__DISTRIBUTED="info")
    (root / "home").mkdir()
    port = _free_port()
    address = f"tls://127.0.0.1:{port}"
    tls = ["--tls-ca-file", str(theirs["ca.crt"])]
    groups = [
        _spawn(
            [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
             "--protocol", "tls", *tls, "--tls-cert", str(theirs["scheduler.crt"]),
             "--tls-key", str(theirs["scheduler.key"]), "--no-dashboard"],
            root / "scheduler.log", env,
        )
    ]  # fmt: skip
    try:
        for i in (1, 2):
            groups.append(
                _spawn(
                    [str(BIN / "dask"), "worker", address, "--host", "127.0.0.1",
                     "--nthreads", "2", *tls, "--tls-cert", str(theirs["worker.crt"]),
                     "--tls-key", str(theirs["worker.key"]), "--no-dashboard",
                     "--local-directory", str(root / f"scratch-{i}")],
                    root / f"worker-{i}.log", env,
                )
            )  # fmt: skip
        yield Foreign(
            address, ours["ca.crt"], ours["client.crt"], ours["client.key"], tuple(groups)
        )
    finally:
        _stop(tuple(groups))


def attach(env: EssEnv, f: Foreign, *, key: Path | None = None) -> Result:
    args = ["--scheduler", f.address, "--tls-ca", str(f.ca), "--tls-cert", str(f.cert)]
    return env.ess("cluster", "set", "dask", *args, "--tls-key", str(key or f.key))


def wait_for_workers(env: EssEnv, count: int) -> list[str]:
    deadline = time.monotonic() + JOIN_TIMEOUT
    while True:
        r = env.ess("cluster", "status")
        rows = [ln.split() for ln in r.stdout.splitlines()[4:] if ln.strip()]
        workers = [row for row in rows if row[0] != "scheduler"]
        if r.returncode == 0 and len(workers) == count:
            return [row[0] for row in workers]
        assert time.monotonic() < deadline, f"{count} workers did not join: {r.stdout}{r.stderr}"
        time.sleep(1)


def write_sales(root: Path) -> list[tuple[str, int]]:
    data = root / "data"
    data.mkdir()
    rng = random.Random(7)
    rows: list[tuple[str, int]] = []
    for day in range(1, DAYS + 1):
        day_rows = [(f"u{rng.randrange(30)}", rng.randrange(0, 1000)) for _ in range(200)]
        with gzip.open(data / f"sales_2020010{day}.csv.gz", "wt") as f:
            f.writelines(f"{user},{amount}\n" for user, amount in day_rows)
        rows += day_rows
    return rows


def user_session(env: EssEnv) -> dict[str, str]:
    """The same user commands on whatever platform `env` is set to; what they printed."""
    env.ess("select", "local", check=True)
    env.ess("category", "add", "browse", f"{WOODWORKING}/*browse_*", check=True)
    env.ess("category", "add", "sales", "data/*.csv.gz", check=True)
    out = {}
    out["stream"] = env.ess(
        "stream", "browse", "2014-09-01", "2014-09-07", "wc -l", check=True, timeout=240
    ).stdout
    env.ess("create", "database", "shop", check=True)
    env.ess("create", "table", "sales", "s,pkey:user", "i:amount", check=True)
    env.ess("create", "vector", "totals", "s,pkey:user", "i,+add:amount", check=True)
    env.ess("udbd", "start", check=True, timeout=240)
    imp = env.ess(
        "stream", "sales", "*", "*",
        "aq_pp -f - -d s:user i:amount -imp shop:sales -imp shop:totals", timeout=240,
    )  # fmt: skip
    assert imp.returncode == 0, imp.stderr
    exported = env.ess("exec", "aq_udb -exp shop:sales", timeout=240)
    assert exported.returncode == 0, exported.stderr
    out["sales"] = exported.stdout
    out["totals"] = env.run("-exp", "shop:totals", tool="aq_udb", timeout=120, check=True).stdout
    return out


def table(text: str) -> Counter[tuple[str, ...]]:
    rows = list(csv.reader(io.StringIO(text)))
    return Counter(tuple(r) for r in rows[1:])


def test_attach_refuses_bad_settings(foreign: Foreign, tmp_path: Path) -> None:
    env = make_env(tmp_path)
    loose = tmp_path / "loose.key"
    shutil.copy(foreign.key, loose)
    os.chmod(loose, 0o644)
    r = attach(env, foreign, key=loose)
    assert r.returncode == 3
    assert f"--tls-key {loose}: the key is readable by others (mode 0644)" in r.stderr
    assert not (env.work_dir / ".platform").exists()  # the platform did not change
    r = env.ess("cluster", "set", "dask", "--scheduler", "tcp://127.0.0.1:1")
    assert r.returncode == 3 and "missing --tls-ca CA --tls-cert CERT --tls-key KEY" in r.stderr
    args = ["--tls-ca", str(foreign.ca), "--tls-cert", str(foreign.cert)]
    r = env.ess("cluster", "set", "dask", "--scheduler", "tcp://127.0.0.1:1", *args,
                "--tls-key", str(foreign.key))  # fmt: skip
    assert r.returncode == 3 and "expected tls://HOST:PORT" in r.stderr
    r = env.ess("cluster", "set", "local", "--scheduler", foreign.address)
    assert r.returncode == 3 and "not local" in r.stderr


def test_commands_run_on_the_attached_cluster(foreign: Foreign, tmp_path: Path) -> None:
    (tmp_path / "dask").mkdir()
    (tmp_path / "local").mkdir()
    env = make_env(tmp_path / "dask")
    r = attach(env, foreign)
    assert r.returncode == 0, r.stderr
    state = (env.work_dir / "dask" / "cluster.json").read_text()
    assert str(foreign.key) in state and "PRIVATE KEY" not in state
    names = wait_for_workers(env, 2)
    assert all(n.startswith("tls://127.0.0.1:") for n in names)  # dask's own worker names
    for command in (["create", "--number", "2"], ["terminate", "-y"], ["add", "x"],
                    ["remove", "x"]):  # fmt: skip
        r = env.ess("cluster", *command)
        assert r.returncode == 10, (command, r.stderr)
        assert "the dask platform attaches to a cluster you run" in r.stderr

    r = env.ess("exec", "echo %node_id/%num_nodes", timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "1/2\n2/2\n"

    rows = write_sales(env.root)
    got = user_session(env)
    expected = (GOLDEN / "ep_woodworking_2etl" / "expected.txt").read_text().splitlines()[7:]
    assert got["stream"].split("\n")[:-1] == expected
    sales = table(got["sales"])
    assert sum(sales.values()) == len(rows)
    assert Counter((u, str(a)) for u, a in rows) == sales
    on_master = env.run("-exp", "shop:sales", tool="aq_udb", timeout=120, check=True).stdout
    assert table(on_master) == sales  # one partition map: the master sees what the workers do

    local = make_env(tmp_path / "local")
    write_sales(local.root)
    try:
        want = user_session(local)
    finally:
        local.ess("cluster", "terminate", "-y", timeout=120)
    assert got["stream"] == want["stream"]
    assert table(got["sales"]) == table(want["sales"])
    assert table(got["totals"]) == table(want["totals"])
    assert got["totals"].splitlines()[0] == want["totals"].splitlines()[0]

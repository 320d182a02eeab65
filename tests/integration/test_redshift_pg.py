"""`ess redshift` into a real PostgreSQL server from a real 2-worker local cluster.

Spec 6.3 (woodworking purchases) and 6.4 (access log) end to end, exactly-once re-runs, a
worker killed mid-load, MAXERROR/TRUNCATECOLUMNS emulation, a hostile table name, wrong
password / server down, and the password in no state file, log or command line.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BIN, DATA, WOODWORKING, EssEnv, make_env
from tests.integration.pg_harness import Postgres, postgres  # noqa: F401 - fixture
from tests.integration.test_local_cluster import _kill_all, daemon_pids

pytestmark = pytest.mark.slow

PURCHASE_SPEC = "S:purchaseDate I:userID I:articleID F:price I:referrerID"
PURCHASE_CMD = f"aq_pp -f,+1,eok - -d {PURCHASE_SPEC} -o,notitle -"
APACHE = DATA / "etl-engine" / "apache.log"
APACHE_CMD = (
    "aq_pp -f,qui,eok,div - -d ip:ip sep:' ' X sep:' ' X sep:' [' s:time_s sep:'] \"' "
    "X sep:' ' X sep:' ' X sep:'\" ' i:res_status sep:' ' i:res_size sep:' \"' X sep:'\" \"' "
    "X sep:'\"' -eval i:time 'DateToTime(time_s, \"d.b.Y.H.M.S.z\")' "
    "-eval s:day 'TimeToDate(time, \"%Y-%m-%d\")' -eval s:hour 'TimeToDate(time, \"%H\")' "
    "-eval i:hitcount 1 -eval i:pagecount '(res_status == 200)' -eval i:pagebytes res_size "
    "-o,notitle - -c day hour hitcount pagecount pagebytes ip"
)
SLOW_FILES = 8
SLOW_ROWS = 50


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory, postgres: Postgres) -> Iterator[EssEnv]:  # noqa: F811
    """A 2-worker local cluster, categories, and the server registered with --url."""
    env = make_env(tmp_path_factory.mktemp("redshift"))
    env.env["PGPASSWORD"] = postgres.password
    slow = env.root / "slow"
    slow.mkdir()
    for i in range(SLOW_FILES):
        rows = "".join(f'{i},{j},"text {j}"\n' for j in range(SLOW_ROWS))
        (slow / f"part_201401{i + 1:02d}.csv.gz").write_bytes(gzip.compress(rows.encode()))
    bad = env.root / "bad"
    bad.mkdir()
    (bad / "good_20140101.csv").write_text("1,abcdefgh\n2,ok\n")
    (bad / "bad_20140102.csv").write_text("3,fine\nx,oops\n5,fine\ny,again\n")
    logs = env.root / "logs"
    logs.mkdir()
    (logs / "125-access_log-20140406").write_bytes(APACHE.read_bytes())
    for args in (
        ("select", "local"),
        ("category", "add", "purchase", f"{WOODWORKING}/*purchase*"),
        ("category", "change", "columnspec", "purchase", PURCHASE_SPEC),
        ("category", "add", "slow", f"{slow}/part_*"),
        ("category", "add", "bad", f"{bad}/*"),
        ("category", "add", "April2014", f"{logs}/125-access_log-201404*"),
        ("category", "add", "redtable", f"{logs}/125-access_log-20140406"),
        (
            "category",
            "change",
            "columnspec",
            "redtable",
            "s:day s:hour i:hitcount i:pagecount i:pagebytes ip:ip X X X X X X",
        ),
        ("redshift", "register", "--url", postgres.url()),
    ):
        env.ess(*args, check=True)
    seen: dict[str, int] = {}
    try:
        env.ess("cluster", "create", "--number", "2", check=True, timeout=180)
        seen.update(daemon_pids(env))
        yield env
    finally:
        seen.update(daemon_pids(env))
        env.ess("cluster", "terminate", "-y", timeout=60)
        _kill_all(seen)


def _sql(env: EssEnv, statement: str) -> list[str]:
    return env.ess("redshift", "sql", statement, check=True).stdout.splitlines()


def _aq_pp_reference(days: list[str]) -> tuple[int, float]:
    """Row count and sum(price) of aq_pp run directly on the same files."""
    data = b"".join(gzip.decompress((WOODWORKING / f"purchase_{d}.gz").read_bytes()) for d in days)
    out = subprocess.run(
        [str(BIN / "aq_pp"), *PURCHASE_CMD.split()[1:]],
        input=data,
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout.decode()
    prices = [float(line.split(",")[3]) for line in out.splitlines()]
    return len(prices), sum(prices)


def test_purchase_example_equals_aq_pp_and_loads_once(box: EssEnv, postgres: Postgres) -> None:  # noqa: F811
    gen = box.ess("redshift", "gentable", "purchase", "purchase", "--key", "userID = distkey")
    assert gen.returncode == 0, gen.stderr
    assert 'CREATE TABLE "purchase" (' in gen.stderr and "BIGINT DISTKEY" not in gen.stderr
    args = ("purchase", "2014-09-01", "2014-09-03", PURCHASE_CMD, "purchase")
    r = box.ess("redshift", "stream", *args, "--options", "TRUNCATECOLUMNS", timeout=180)
    assert r.returncode == 0, r.stderr
    assert "from 3 files into purchase" in r.stderr
    rows, total = _aq_pp_reference(["20140901", "20140902", "20140903"])
    lines = _sql(box, "select count(*), sum(price) from purchase")
    assert lines[0] == '"count","sum"'
    count, db_sum = lines[1].split(",")
    assert int(count) == rows and abs(float(db_sum) - total) < 1e-6
    again = box.ess("redshift", "stream", *args, timeout=180)
    assert again.returncode == 0 and "3 files already loaded, skipped" in again.stderr
    assert _sql(box, "select count(*) from purchase")[1] == str(rows)
    ledger = _sql(box, "select file, rows, loads from ess_load_ledger where \"table\" = 'purchase'")
    assert len(ledger) == 4 and all(line.endswith(",1") for line in ledger[1:])
    # aq conventions: quoted header and strings, bare numbers
    first = _sql(box, "select purchasedate, userid, price from purchase order by 1, 2 limit 1")
    assert first == ['"purchasedate","userid","price"', '"2014-09-01T00:00:02",4084,2.73']


def test_access_log_example(box: EssEnv) -> None:
    gen = box.ess("redshift", "gentable", "april2014", "redtable", "--key", "day = distkey")
    assert gen.returncode == 0, gen.stderr
    args = ("April2014", "2014-04-01", "2014-04-30", APACHE_CMD, "April2014")
    r = box.ess("redshift", "stream", *args, "--options", "TRUNCATECOLUMNS", timeout=180)
    assert r.returncode == 0, r.stderr
    lines = _sql(
        box,
        "select distinct day, hour, sum(hitcount) Hits, sum(pagecount) Pages, "
        "sum(pagebytes) Bandwidth, count(distinct ip) IPs from April2014 "
        "group by day, hour order by day, hour",
    )
    assert lines[0] == '"day","hour","hits","pages","bandwidth","ips"'
    assert len(lines) >= 2
    log = APACHE.read_text().splitlines()
    assert sum(int(line.split(",")[2]) for line in lines[1:]) == len(log)
    assert sum(int(line.split(",")[3]) for line in lines[1:]) == sum('" 200 ' in x for x in log)


def test_maxerror_fails_only_the_bad_file(box: EssEnv) -> None:
    box.ess("redshift", "sql", 'create table "b;x" (id integer, name varchar(4))', check=True)
    r = box.ess("redshift", "stream", "bad", "*", "*", "b;x", "--options", "MAXERROR", "1")
    assert r.returncode != 0
    assert "1 of 2 files not loaded" in r.stderr
    assert "bad_20140102.csv: line 2, column id" in r.stderr and "MAXERROR 1" in r.stderr
    # the good file: its long name failed too without TRUNCATECOLUMNS... so it loaded with
    # that row rejected (1 <= MAXERROR 1); the bad file: nothing
    assert _sql(box, 'select id from "b;x" order by id') == ['"id"', "2"]
    errs = _sql(box, "select filename, line_number, colname from ess_load_errors order by 1, 2")
    assert any('good_20140101.csv",1,"name"' in e for e in errs)
    assert any('bad_20140102.csv",2,"id"' in e for e in errs)
    ok = box.ess(
        "redshift", "stream", "bad", "*", "*", "b;x", "--options", "MAXERROR 5", "TRUNCATECOLUMNS"
    )
    assert ok.returncode == 0, ok.stderr
    assert "bad_20140102.csv: 2 rows rejected" in ok.stderr
    assert _sql(box, 'select id, name from "b;x" order by id') == [
        '"id","name"',
        '2,"ok"',
        '3,"fine"',
        '5,"fine"',
    ]


def test_hostile_table_name_is_just_a_name(box: EssEnv) -> None:
    name = 'x"; drop table purchase; --'
    gen = box.ess("redshift", "gentable", name, "purchase")
    assert gen.returncode == 0, gen.stderr
    r = box.ess("redshift", "stream", "purchase", "2014-09-01", "2014-09-01", PURCHASE_CMD, name)
    assert r.returncode == 0, r.stderr
    assert _sql(box, 'select count(*) from "x""; drop table purchase; --"')[1] == "1528"
    assert _sql(box, "select count(*) > 0 from purchase")[1] == "true"


def test_wrong_password_and_server_down(tmp_path: Path, postgres: Postgres) -> None:  # noqa: F811
    env = make_env(tmp_path)
    env.env["PGPASSWORD"] = "not-the-password"
    r = env.ess("redshift", "register", "--url", postgres.url())
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1
    assert "rejected the password" in r.stderr and "not-the-password" not in r.stderr
    assert not (env.work_dir / "redshift.json").exists()
    down = env.ess("redshift", "register", "--url", "postgresql://u@127.0.0.1:9/db")
    assert down.returncode != 0 and len(down.stderr.strip().splitlines()) == 1
    assert "cannot connect to u@127.0.0.1:9/db" in down.stderr
    assert not (env.work_dir / "redshift.password").exists()


def test_changed_file_is_reported_and_reload_appends(box: EssEnv) -> None:
    chg = box.root / "chg"
    chg.mkdir()
    data = chg / "c_20140101.csv"
    data.write_text("1\n2\n")
    box.ess("category", "add", "chg", f"{chg}/*", check=True)
    box.ess("redshift", "sql", "create table chg (n integer)", check=True)
    box.ess("redshift", "stream", "chg", "*", "*", "chg", check=True)
    data.write_text("1\n2\n3\n")
    again = box.ess("redshift", "stream", "chg", "*", "*", "chg")
    assert again.returncode != 0 and "changed since it was loaded" in again.stderr
    assert _sql(box, "select count(*) from chg")[1] == "2"
    box.ess("redshift", "stream", "chg", "*", "*", "chg", "--reload", check=True)
    assert _sql(box, "select count(*) from chg")[1] == "5"  # the earlier rows stay
    assert _sql(box, "select loads, rows from ess_load_ledger where \"table\" = 'chg'")[1] == "2,3"


def test_two_loaders_of_one_file_race_to_one_load(postgres: Postgres) -> None:  # noqa: F811
    """The ledger claim: a second loader waits for the first one's transaction, then skips
    the file if it committed, or loads it if it rolled back."""
    import threading

    import psycopg

    from ess.load.ledger import FileKey, claim, ensure_tables, record

    def conn() -> psycopg.Connection:
        return psycopg.connect(
            host=postgres.host,
            port=postgres.port,
            user=postgres.user,
            password=postgres.password,
            dbname=postgres.dbname,
        )

    first, second = conn(), conn()
    ensure_tables(first)
    key = FileKey("race", f"/data/race-{time.time_ns()}", 10, 1.0)
    answers: list[str | None] = []
    with first.transaction():
        assert claim(first, key, reload=False) is None
        waiter = threading.Thread(target=lambda: answers.append(claim(second, key, reload=False)))
        waiter.start()
        time.sleep(0.5)
        assert waiter.is_alive() and not answers  # blocked behind the first transaction
        record(first, key, rows=3, rejected=0)
    waiter.join(10)
    assert answers == ["skipped"]
    second.rollback()
    # a loader that dies (rolls back) leaves the file to the next one
    key2 = FileKey("race", f"/data/race2-{time.time_ns()}", 10, 1.0)
    with contextlib.suppress(RuntimeError), first.transaction():
        assert claim(first, key2, reload=False) is None
        raise RuntimeError("killed mid-load")
    with second.transaction():
        assert claim(second, key2, reload=False) is None
    first.close()
    second.close()


def _ledgered(pg: Postgres, table: str) -> int:
    import psycopg

    with pg.connect() as conn:  # type: ignore[attr-defined]
        try:
            sql = 'select count(*) from ess_load_ledger where "table" = %s'
            return int(conn.execute(sql, (table,)).fetchone()[0])
        except psycopg.errors.UndefinedTable:
            return 0


def _cmdlines() -> bytes:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry.name}/cmdline", "rb") as f:
                found.append(f.read())
    return b"\n".join(found)


def test_worker_killed_mid_load_loads_each_file_once(box: EssEnv, postgres: Postgres) -> None:  # noqa: F811
    """Runs last in the module: it kills a worker (the next command revives it)."""
    box.ess(
        "redshift", "sql", "create table slow (f integer, n integer, t varchar(20))", check=True
    )
    argv = [str(BIN / "ess"), "redshift", "stream", "slow", "*", "*", "sleep 1; cat", "slow"]
    proc = subprocess.Popen(argv, cwd=box.root, env=box.env, stderr=subprocess.PIPE)
    password_seen = False
    try:
        deadline = time.monotonic() + 60
        while _ledgered(postgres, "slow") < 2:
            password_seen |= postgres.password.encode() in _cmdlines()
            assert time.monotonic() < deadline, "no file loaded"
            time.sleep(0.2)
        password_seen |= postgres.password.encode() in _cmdlines()
        victim = daemon_pids(box)["worker-2"]
        os.kill(victim, signal.SIGKILL)
        at_kill = _ledgered(postgres, "slow")
        proc.wait(180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not password_seen, "the password is on a command line"
    assert at_kill < SLOW_FILES, "the kill came after the load"
    rerun = box.ess("redshift", "stream", "slow", "*", "*", "slow", timeout=180)
    assert rerun.returncode == 0, rerun.stderr
    per_file = _sql(box, "select f, count(*) from slow group by f order by f")
    assert per_file[1:] == [f"{i},{SLOW_ROWS}" for i in range(SLOW_FILES)]
    secret = box.work_dir / "redshift.password"
    for path in [*box.work_dir.rglob("*"), *box.cache_dir.rglob("*")]:
        if path.is_file() and path != secret:
            assert postgres.password.encode() not in path.read_bytes(), path
    assert secret.stat().st_mode & 0o777 == 0o600

"""The UDB on a custom cluster of real SSH hosts (sshd on 127.0.0.2-4, user esstest).

``ess stream`` runs ``aq_pp -imp`` on the remote workers, which have no ``.conf`` of the
master: they reach the scheduler with their own worker certificate and read the database
definitions the master ships (ess.udb.remote). ``aq_udb`` on the master must then see every
row. Then ``ess cluster remove`` drains the removed worker's partitions first (ess.udb.drain);
removing workers is refused while their data cannot be moved (the UDB not started after a
cluster restart) or when no worker would remain.
"""

from __future__ import annotations

import csv
import gzip
import io
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import EssEnv
from tests.integration.test_custom_cluster import (  # noqa: F401 - fixtures
    SshdHosts,
    add_pem,
    env,
    sshd_hosts,
    write_reservation,
)

#: three SSH hosts started, stopped, restarted and drained: minutes on a busy machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

CLUSTER = "udb_remote"
DAYS = 6


def write_sales(root: Path) -> list[tuple[str, int]]:
    """Six daily gzip files only root can read (the workers get the bytes shipped)."""
    data = root / "data"
    data.mkdir(mode=0o700)
    rng = random.Random(5)
    rows: list[tuple[str, int]] = []
    for day in range(1, DAYS + 1):
        day_rows = [(f"u{rng.randrange(40)}", rng.randrange(0, 1000)) for _ in range(300)]
        with gzip.open(data / f"sales_2020010{day}.csv.gz", "wt") as f:
            f.writelines(f"{user},{amount}\n" for user, amount in day_rows)
        rows += day_rows
    return rows


def exported(ess: EssEnv, target: str) -> list[dict[str, str]]:
    out = ess.run("-exp", target, tool="aq_udb", timeout=120)
    assert out.returncode == 0, out.stderr
    return list(csv.DictReader(io.StringIO(out.stdout)))


def check_everything_there(ess: EssEnv, rows: list[tuple[str, int]]) -> None:
    table = exported(ess, "shop:sales")
    assert Counter((r["user"], int(r["amount"])) for r in table) == Counter(rows)
    totals: Counter[str] = Counter()
    for user, amount in rows:
        totals[user] += amount
    vector = exported(ess, "shop:totals")
    assert {r["user"]: int(r["amount"]) for r in vector} == dict(totals)
    assert len(vector) == len(totals)


def top(totals: Counter[str], n: int) -> list[int]:
    return sorted(totals.values(), reverse=True)[:n]


def check_exec_runs_udb_commands_once(ess: EssEnv, rows: list[tuple[str, int]]) -> None:
    """ess exec runs a command on each of the 3 hosts, but aq_udb only on the first: the
    database is one for the cluster, so a query prints every row once (-sort/-top global)
    and an export piped into an import (Essentia's tutorial step 12) imports every row once."""
    nodes = ess.ess("exec", 'echo "%node_id/%num_nodes exec-node=$ESS_EXEC_NODE"')
    assert nodes.stdout.splitlines() == [f"{i}/3 exec-node={i}" for i in (1, 2, 3)]
    count = ess.run("-cnt", "shop:sales", tool="aq_udb")
    assert count.returncode == 0, count.stderr
    on_workers = ess.ess("exec", "aq_udb -cnt shop:sales")
    assert on_workers.returncode == 0, on_workers.stderr
    assert on_workers.stdout == count.stdout
    totals: Counter[str] = Counter()
    for user, amount in rows:
        totals[user] += amount
    top3 = ess.ess("exec", "aq_udb -exp shop:totals -sort,dec amount -top 3")
    assert top3.returncode == 0, top3.stderr
    lines = top3.stdout.splitlines()
    assert lines[0] == '"user","amount"' and len(lines) == 4, top3.stdout
    assert [int(line.split(",")[1]) for line in lines[1:]] == top(totals, 3)
    # step 12: export -> aq_pp -imp, run by ess exec on every host
    step12 = "aq_udb -exp shop:sales -o,notitle - | aq_pp -f - -d s:user i:amount -imp shop:resum"
    piped = ess.ess("exec", step12, timeout=240)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == ""
    resum = exported(ess, "shop:resum")
    assert {r["user"]: int(r["amount"]) for r in resum} == dict(totals)
    assert len(resum) == len(totals)
    cleared = ess.ess("exec", "aq_udb -clr shop:resum")
    assert cleared.returncode == 0 and cleared.stdout == "", cleared.stderr


def test_udb_imports_on_remote_workers_and_drains_on_remove(
    env: EssEnv,  # noqa: F811
    sshd_hosts: SshdHosts,  # noqa: F811
) -> None:
    add_pem(env, sshd_hosts)
    hosts = [sshd_hosts.entry(i) for i in (1, 2, 3)]
    write_reservation(env, hosts, id=CLUSTER, pem="dev")
    rows = write_sales(env.root)
    env.ess("select", "local", check=True)
    env.ess("category", "add", "sales", "data/*.csv.gz", check=True)
    snapshots = sshd_hosts.home / ".ess-udb" / CLUSTER
    try:
        started = env.ess("cluster", "start", timeout=240)
        assert started.returncode == 0, started.stderr
        env.ess("create", "database", "shop", check=True)
        env.ess("create", "table", "sales", "s,pkey:user", "i:amount", check=True)
        env.ess("create", "vector", "totals", "s,pkey:user", "i,+add:amount", check=True)
        env.ess("create", "vector", "resum", "s,pkey:user", "i,+add:amount", check=True)
        env.ess("udbd", "start", check=True, timeout=120)

        # the import runs on the remote hosts, as their SSH user
        command = (
            "aq_pp -f - -d s:user i:amount -imp shop:sales -imp shop:totals"
            ' && echo "imported-on $(whoami) $ESS_NODE_ID"'
        )
        out = env.ess("stream", "sales", "*", "*", command, timeout=240)
        assert out.returncode == 0, out.stderr
        ran = [ln.split()[1:] for ln in out.stdout.splitlines() if ln.startswith("imported-on")]
        assert len(ran) == DAYS
        assert {user for user, _ in ran} == {"esstest"}
        assert len({node for _, node in ran}) >= 2, ran
        check_everything_there(env, rows)

        check_exec_runs_udb_commands_once(env, rows)

        # bad input from a worker: an undefined table is named, the stream fails, nothing lost
        bad = env.ess("stream", "sales", "*", "*", "aq_pp -f - -d s:user i:amount -imp shop:nosuch")
        assert bad.returncode != 0
        assert "nosuch" in bad.stderr and "shop" in bad.stderr, bad.stderr
        bad = env.ess("exec", "aq_udb -exp nodb:t")
        assert bad.returncode != 0
        assert "'nodb' is not defined" in bad.stderr, bad.stderr
        check_everything_there(env, rows)

        # a restarted cluster does not run the UDB until 'ess udbd start': the data on the
        # hosts' disks cannot be moved, so the removal is refused
        held = sorted(p.name for p in snapshots.iterdir())
        assert held == ["worker-1", "worker-2", "worker-3"]
        assert env.ess("cluster", "stop", timeout=120).returncode == 0
        assert env.ess("cluster", "start", timeout=240).returncode == 0
        refused = env.ess("cluster", "remove", hosts[0], timeout=120)
        assert refused.returncode == 9, refused.stderr
        assert "not running" in refused.stderr and "ess udbd start" in refused.stderr
        assert "shop" in refused.stderr
        assert env.ess("exec", "echo %node_id").stdout.split() == ["1", "2", "3"]
        env.ess("udbd", "start", check=True, timeout=120)  # reloads the snapshots
        check_everything_there(env, rows)

        # removing the first host: its partitions move first; the others are renumbered
        removed = env.ess("cluster", "remove", hosts[0], timeout=240)
        assert removed.returncode == 0, removed.stderr
        assert env.ess("exec", "echo %node_id").stdout.split() == ["1", "2"]
        check_everything_there(env, rows)
        assert sorted(p.name for p in snapshots.iterdir()) == ["worker-1", "worker-2"]
        # the partition map matches the renumbered workers: imports are accepted again
        more = env.run(
            "-f", "-", "-d", "s:user", "i:amount", "-imp", "shop:sales", "-imp", "shop:totals",
            tool="aq_pp", input="u1,7\nnew,3\n",
        )  # fmt: skip
        assert more.returncode == 0, more.stderr
        rows += [("u1", 7), ("new", 3)]
        check_everything_there(env, rows)

        # no worker would remain: refused, naming the database; nothing removed or lost
        refused = env.ess("cluster", "remove", hosts[1], hosts[2], timeout=120)
        assert refused.returncode == 9, refused.stderr
        assert "no worker would remain" in refused.stderr and "shop" in refused.stderr
        assert env.ess("exec", "echo %node_id").stdout.split() == ["1", "2"]
        check_everything_there(env, rows)
    finally:
        env.ess("udbd", "stop", timeout=120)
        shutil.rmtree(snapshots, ignore_errors=True)

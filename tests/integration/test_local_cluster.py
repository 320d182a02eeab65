"""A real local cluster of 2 TLS workers, driven through the `ess` command line.

One cluster for the whole module (started once, torn down by pid in a finalizer, whatever
happens). Tests run in file order: the supervision, stop/start and terminate tests come last.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BIN, GOLDEN, WOODWORKING, EssEnv, make_env

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def daemon_pids(env: EssEnv) -> dict[str, int]:
    pids = {}
    for pid_file in (env.work_dir / "cluster").glob("*.pid"):
        with contextlib.suppress(ValueError):
            pids[pid_file.stem] = int(pid_file.read_text())
    return pids


def _kill_all(pids: dict[str, int]) -> None:
    for pid in pids.values():
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EssEnv]:
    env = make_env(tmp_path_factory.mktemp("cluster"))
    env.ess("select", "local", check=True)
    env.ess("category", "add", "browse", f"{WOODWORKING}/*browse_*", check=True)
    env.ess("category", "add", "purchase", f"{WOODWORKING}/*purchase_*", check=True)
    seen: dict[str, int] = {}
    try:
        env.ess("cluster", "create", "--number", "2", check=True, timeout=120)
        seen.update(daemon_pids(env))
        env.seen_pids = seen  # type: ignore[attr-defined]
        yield env
    finally:
        seen.update(daemon_pids(env))
        env.ess("cluster", "terminate", "-y", timeout=60)
        _kill_all(seen)


def test_status_lists_master_and_two_running_workers(cluster: EssEnv) -> None:
    r = cluster.ess("cluster", "status", check=True)
    lines = r.stdout.splitlines()
    assert lines[0].startswith("Summary for cluster local-")
    assert lines[1] == ""
    assert lines[2].split() == ["ID", "state", "publicIP", "privateIP", "cpu", "mem", "disk"]
    rows = [line.split() for line in lines[4:]]
    assert [row[:4] for row in rows] == [
        ["master", "running", "127.0.0.1", "127.0.0.1"],
        ["worker-1", "running", "127.0.0.1", "127.0.0.1"],
        ["worker-2", "running", "127.0.0.1", "127.0.0.1"],
    ]
    pids = daemon_pids(cluster)
    assert set(pids) == {"scheduler", "worker-1", "worker-2"}
    assert all(_alive(p) for p in pids.values())
    assert cluster.ess("cluster", "iplist", check=True).stdout == "127.0.0.1\n127.0.0.1\n"
    # keys of the cluster CA are private
    for key in (cluster.work_dir / "cluster" / "tls").glob("*.key"):
        assert key.stat().st_mode & 0o077 == 0


def test_stream_prints_the_golden_counts_in_order(cluster: EssEnv) -> None:
    expected = (GOLDEN / "ep_woodworking_2etl" / "expected.txt").read_text().splitlines()[7:]
    r = cluster.ess("stream", "browse", "2014-09-01", "2014-09-07", "wc -l", check=True)
    assert r.stdout.split("\n")[:-1] == expected
    assert [int(x) for x in expected] == [9896, 10120, 9692, 9936, 10210, 10008, 9823]


def test_bz2_step_writes_thirty_files_in_the_callers_directory(cluster: EssEnv) -> None:
    (cluster.root / "bz2").mkdir()
    r = cluster.ess(
        "stream",
        "browse",
        "2014-09-01",
        "2014-09-30",
        "cat | bzip2 - -c > ./bz2/%file.bz2",
        check=True,
    )
    assert r.stdout == ""
    made = sorted(p.name for p in (cluster.root / "bz2").iterdir())
    assert made == [f"browse_201409{d:02d}.bz2" for d in range(1, 31)]
    got = subprocess.run(
        ["bzip2", "-dc", str(cluster.root / "bz2" / "browse_20140915.bz2")],
        capture_output=True,
        check=True,
    ).stdout
    assert got == gzip.decompress((WOODWORKING / "browse_20140915.gz").read_bytes())


def test_exec_runs_once_on_this_machine(cluster: EssEnv) -> None:
    # the 2 workers are processes of one machine: one node for exec (docs/udb.md)
    r = cluster.ess("exec", "echo %node_id/%num_nodes $ESS_EXEC_NODE; pwd", check=True)
    assert r.stdout == f"1/1 1\n{cluster.root}\n"
    r = cluster.ess("exec", "--debug", "echo hi %node_id", check=True)
    assert r.stdout == "echo hi %node_id\nhi 1\n"
    r = cluster.ess("exec", "echo out; echo err >&2; exit 3")
    assert r.returncode == 6
    assert r.stdout == "out\n"
    assert "command failed on 1 node(s)\n  worker-1: exit status 3" in r.stderr


def test_dask_client_path_when_the_gateway_is_gone(cluster: EssEnv) -> None:
    # commands normally go through the scheduler's gateway; without it a Dask client does it
    gateway = cluster.work_dir / "cluster" / "gateway.address"
    saved = gateway.read_text()
    gateway.unlink()
    try:
        r = cluster.ess("exec", "echo %node_id/%num_nodes", check=True)
        assert r.stdout == "1/1\n"
        r = cluster.ess("stream", "browse", "2014-09-01", "2014-09-03", "wc -l", check=True)
        assert r.stdout == "9896\n10120\n9692\n"
        r = cluster.ess("stream", "purchase", "*", "*", "exit 5", "--quitonerror")
        assert r.returncode == 6 and "exit status 5" in r.stderr
    finally:
        gateway.write_text(saved)


def test_file_push_mkdir_get(cluster: EssEnv) -> None:
    src = cluster.root / "upload"
    src.mkdir()
    (src / "data.csv").write_text("a,b\n1,2\n")
    cluster.ess("file", "mkdir", "made", check=True)
    assert (cluster.root / "made").is_dir()
    cluster.ess("file", "push", str(src / "data.csv"), "--dest", "in/", check=True)
    assert (cluster.root / "in" / "data.csv").read_text() == "a,b\n1,2\n"
    r = cluster.ess("exec", "cat in/data.csv", check=True)
    assert r.stdout == "a,b\n1,2\n"
    cluster.ess("exec", "mkdir -p out && echo result > out/r.txt", check=True)
    fetch = cluster.root / "fetch"
    fetch.mkdir()
    r = cluster.run("file", "get", str(cluster.root / "out" / "r.txt"), check=True)
    assert (cluster.root / "r.txt").read_text() == "result\n"


def test_hostile_file_name_is_just_a_file(cluster: EssEnv) -> None:
    data = cluster.root / "evil"
    data.mkdir()
    names = ["a; touch PWNED", "b$(touch PWNED).log", "c'touch PWNED'.log"]
    for i, name in enumerate(names):
        (data / name).write_text(f"line {i}\n")
    cluster.ess("category", "add", "evil", f"{data}/*", check=True)
    (cluster.root / "copies").mkdir()
    r = cluster.ess(
        "stream",
        "evil",
        "*",
        "*",
        "cat > copies/%FILE; echo '%FILE' \"%file\"",
        "--debug",
        check=True,
    )
    for name in names:
        assert (cluster.root / "copies" / name).read_text().startswith("line")
    assert not list(cluster.root.rglob("PWNED"))
    assert not (data / "PWNED").exists()
    lines = r.stdout.splitlines()
    assert lines[0].startswith("set -o pipefail; localget -f  '")
    assert [line for line in lines if not line.startswith("set -o")] == [
        f"{n} {n.rsplit('.', 1)[0] if '.' in n else n}" for n in sorted(names)
    ]
    # a construct ess cannot quote is refused rather than risked
    r = cluster.ess("stream", "evil", "*", "*", "echo $(echo %FILE)")
    assert r.returncode == 2 and "ESS_FILE" in r.stderr
    assert not list(cluster.root.rglob("PWNED"))


def _tls_probe(address: str, ca: Path, cert: tuple[Path, Path] | None) -> str:
    """Handshake with the scheduler and wait for its verdict: "refused" or "accepted"."""
    host, port = address.removeprefix("tls://").rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                tls.settimeout(1.5)
                data = tls.recv(1)  # TLS 1.3: the server's verdict arrives as an alert
                return "refused" if data == b"" else "accepted"
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return "refused"
        except TimeoutError:
            return "accepted"  # the server kept the connection open, waiting for a request


def test_client_without_the_clusters_certificate_is_refused(
    cluster: EssEnv, tmp_path: Path
) -> None:
    from distributed import Client

    from ess.engine.security import create_tls

    tls_dir = cluster.work_dir / "cluster" / "tls"
    address = (tls_dir.parent / "scheduler.address").read_text().strip()
    assert address.startswith("tls://127.0.0.1:")
    ca = tls_dir / "ca.crt"
    stranger = create_tls(tmp_path / "tls", cluster_id="stranger")
    # control: the cluster's own client certificate is accepted
    assert _tls_probe(address, ca, (tls_dir / "client.crt", tls_dir / "client.key")) == "accepted"
    assert _tls_probe(address, ca, None) == "refused"
    assert _tls_probe(address, ca, (stranger.cert("client"), stranger.key("client"))) == "refused"
    gateway = "tls://" + (tls_dir.parent / "gateway.address").read_text().strip()
    assert gateway.startswith("tls://127.0.0.1:")
    assert _tls_probe(gateway, ca, (tls_dir / "client.crt", tls_dir / "client.key")) == "accepted"
    assert _tls_probe(gateway, ca, None) == "refused"
    assert _tls_probe(gateway, ca, (stranger.cert("client"), stranger.key("client"))) == "refused"
    # and through Dask itself
    with pytest.raises((OSError, TimeoutError)):
        Client(address, security=stranger.dask_security("client"), timeout=3, set_as_default=False)
    # plain TCP speakers get nothing either
    host, port = address.removeprefix("tls://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.settimeout(3)
        raw.sendall(b"\x00" * 64)
        with contextlib.suppress(ConnectionResetError):
            assert raw.recv(100) == b""


def test_failed_command_names_the_file_and_shows_stderr(cluster: EssEnv) -> None:
    r = cluster.ess(
        "stream",
        "purchase",
        "2014-09-01",
        "2014-09-03",
        "if grep -q 2014-09-02 ; then echo boom >&2; exit 4; fi; echo fine",
    )
    assert r.returncode == 6
    assert r.stdout == "fine\nfine\n"
    assert "purchase_20140902.gz: exit status 4" in r.stderr
    assert "boom" in r.stderr


def test_worker_killed_mid_stream_every_file_once(cluster: EssEnv) -> None:
    data = cluster.root / "many"
    data.mkdir()
    for i in range(200):
        (data / f"log_{i:03d}.txt").write_text(f"file {i:03d}\n")
    cluster.ess("category", "add", "many", f"{data}/log_*", check=True)
    victim = daemon_pids(cluster)["worker-1"]
    errors = cluster.root / "fault.err"
    with open(errors, "wb") as err:
        proc = subprocess.Popen(
            [str(BIN / "ess"), "stream", "many", "*", "*", "sleep 0.03; cat"],
            cwd=cluster.root,
            env=cluster.env,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # the stream is under way
    time.sleep(0.5)
    os.kill(victim, signal.SIGKILL)
    rest = proc.stdout.read()
    assert proc.wait(timeout=120) == 0, errors.read_text()
    lines = (first + rest).decode().splitlines()
    assert lines == [f"file {i:03d}" for i in range(200)]
    assert not _alive(victim)


def test_exec_fails_cleanly_when_its_worker_dies(cluster: EssEnv) -> None:
    errors = cluster.root / "exec.err"
    with open(errors, "wb") as err:
        proc = subprocess.Popen(
            [str(BIN / "ess"), "exec", "touch started-%node_id; sleep 30"],
            cwd=cluster.root,
            env=cluster.env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    deadline = time.monotonic() + 60
    while not list(cluster.root.glob("started-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    victim = daemon_pids(cluster)["worker-1"]  # exec's one node on a local cluster
    cluster.seen_pids[f"worker-1-{victim}"] = victim  # type: ignore[attr-defined]
    os.kill(victim, signal.SIGKILL)
    start = time.monotonic()
    proc.wait(timeout=60)
    assert time.monotonic() - start < 20  # neither the 30 s of the command nor a hang
    assert proc.returncode == 5, errors.read_text()
    assert "worker-1 went away" in errors.read_text()


def test_threads_per_worker_and_node_ids(cluster: EssEnv) -> None:
    r = cluster.ess(
        "stream",
        "many",
        "*",
        "*",
        "sleep 0.05; echo %node_id:%thread_id:%num_threads",
        "--threads",
        "3",
        "--limit",
        "40",
        check=True,
    )
    seen = [tuple(int(x) for x in line.split(":")) for line in r.stdout.splitlines()]
    assert len(seen) == 40
    assert {n for n, _, _ in seen} <= {1, 2} and {k for _, _, k in seen} == {3}
    assert {t for _, t, _ in seen} <= {1, 2, 3}
    assert max(t for _, t, _ in seen) > 1  # really more than one pipeline at a time


def test_dead_daemons_are_reported_and_revived(cluster: EssEnv) -> None:
    # worker-1 was killed by the previous test (or kill it now if run alone)
    pids = daemon_pids(cluster)
    if _alive(pids["worker-1"]):
        os.kill(pids["worker-1"], signal.SIGKILL)
    os.kill(pids["scheduler"], signal.SIGKILL)
    time.sleep(0.2)
    r = cluster.ess("cluster", "status")
    assert r.returncode == 1
    states = {row.split()[0]: row.split()[1] for row in r.stdout.splitlines()[4:]}
    assert states["master"] == "dead" and states["worker-1"] == "dead"
    assert "scheduler is not running" in r.stderr
    # the next command that needs the cluster brings it back, pid files and all
    r = cluster.ess("stream", "browse", "2014-09-01", "2014-09-02", "wc -l", check=True)
    assert r.stdout == "9896\n10120\n"
    new = daemon_pids(cluster)
    cluster.seen_pids.update({f"{k}-2": v for k, v in new.items()})  # type: ignore[attr-defined]
    assert new["scheduler"] != pids["scheduler"] and all(_alive(p) for p in new.values())
    r = cluster.ess("cluster", "status", check=True)
    assert [row.split()[1] for row in r.stdout.splitlines()[4:]] == ["running"] * 3


def test_stop_then_start(cluster: EssEnv) -> None:
    before = daemon_pids(cluster)
    cluster.ess("cluster", "stop", check=True)
    assert not any(_alive(p) for p in before.values())
    r = cluster.ess("cluster", "status")
    assert [row.split()[1] for row in r.stdout.splitlines()[4:]] == ["stopped"] * 3
    # a stopped cluster is left alone: work runs on this machine
    r = cluster.ess("stream", "browse", "2014-09-01", "2014-09-01", "wc -l", check=True)
    assert r.stdout == "9896\n"
    assert not any(_alive(p) for p in daemon_pids(cluster).values())
    cluster.ess("cluster", "start", check=True, timeout=120)
    after = daemon_pids(cluster)
    cluster.seen_pids.update({f"{k}-3": v for k, v in after.items()})  # type: ignore[attr-defined]
    assert set(after) == {"scheduler", "worker-1", "worker-2"}
    assert all(_alive(p) for p in after.values())
    r = cluster.ess("exec", "echo %node_id", check=True)
    assert r.stdout == "1\n"
    r = cluster.ess("stream", "browse", "2014-09-01", "2014-09-02", "echo %num_nodes", check=True)
    assert r.stdout == "2\n2\n"


def test_create_add_adds_workers(cluster: EssEnv) -> None:
    cluster.ess("cluster", "create", "--add", "--number", "1", check=True, timeout=120)
    pids = daemon_pids(cluster)
    cluster.seen_pids.update({f"{k}-4": v for k, v in pids.items()})  # type: ignore[attr-defined]
    assert set(pids) == {"scheduler", "worker-1", "worker-2", "worker-3"}
    r = cluster.ess("stream", "browse", "2014-09-01", "2014-09-03", "echo %num_nodes", check=True)
    assert r.stdout == "3\n3\n3\n"
    r = cluster.ess("exec", "echo %node_id/%num_nodes", check=True)
    assert r.stdout == "1/1\n"
    r = cluster.ess("cluster", "create", "--number", "1")
    assert r.returncode == 5 and "already exists" in r.stderr


def test_terminate_leaves_no_process_behind(cluster: EssEnv) -> None:
    pids = daemon_pids(cluster)
    assert len(pids) == 4
    cluster.ess("cluster", "terminate", "-y", check=True)
    assert not any(_alive(p) for p in pids.values())
    assert not (cluster.work_dir / "cluster").exists()
    r = cluster.ess("cluster", "status", check=True)
    assert r.stdout.startswith("Summary for cluster local\n")
    assert [row.split()[0] for row in r.stdout.splitlines()[4:]] == ["master"]
    r = cluster.ess("cluster", "stop")
    assert r.returncode == 5 and "no local cluster" in r.stderr
    # without a cluster, stream and exec still run here
    r = cluster.ess("exec", "echo %node_id/%num_nodes", check=True)
    assert r.stdout == "1/1\n"


def _daemon_rows(env: EssEnv) -> dict[int, tuple[str, str]]:
    """``ess cluster status --all``: pid -> (state, directory) of every listed daemon."""
    r = env.ess("cluster", "status", "--all", check=True)
    rows = {}
    for line in r.stdout.splitlines()[2:]:
        cols = line.split()
        state = " ".join(cols[6:-1]) if cols[-1] != "(gone)" else " ".join(cols[6:-2])
        directory = cols[-1] if cols[-1] != "(gone)" else cols[-2]
        rows[int(cols[0])] = (state, directory)
    return rows


def test_status_all_and_terminate_orphans(tmp_path: Path) -> None:
    # two clusters of two work dirs; one loses its work dir while its daemons are stopped
    # (SIGSTOP: their pid-file watch cannot end them), so only a census finds them
    keep, lose = make_env(tmp_path / "keep"), make_env(tmp_path / "lose")
    keep.root.mkdir()
    lose.root.mkdir()
    seen: dict[str, int] = {}
    try:
        for env in (keep, lose):
            env.ess("select", "local", check=True)
            env.ess("cluster", "create", "--number", "1", check=True, timeout=120)
        kept = set(daemon_pids(keep).values())
        lost = set(daemon_pids(lose).values())
        seen.update({f"k{p}": p for p in kept} | {f"l{p}": p for p in lost})
        rows = _daemon_rows(keep)
        assert kept | lost <= set(rows)
        for pid in kept | lost:
            assert rows[pid][0] == "ok"
        lose_dir = str(lose.work_dir / "cluster")
        lost |= {pid for pid, (_, d) in rows.items() if d == lose_dir}  # its warm service too
        assert len(lost) == 3
        seen.update({f"l{p}": p for p in lost})
        for pid in lost:
            os.kill(pid, signal.SIGSTOP)
        subprocess.run(["rm", "-rf", str(lose.work_dir)], check=True)
        rows = _daemon_rows(keep)
        assert {rows[p][0] for p in lost} == {"orphan: work dir gone"}
        assert {rows[p][0] for p in kept} == {"ok"}
        r = keep.ess("cluster", "terminate", "--orphans", check=True)
        ended = {int(line.split(" pid ")[1].split()[0]) for line in r.stderr.splitlines()}
        assert lost <= ended and not kept & ended
        deadline = time.monotonic() + 15
        while any(_alive(p) for p in lost) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(p) for p in lost)
        assert all(_alive(p) for p in kept)
        # the cluster that kept its work dir still works
        r = keep.ess("exec", "echo %num_nodes", check=True)
        assert r.stdout == "1\n"
    finally:
        for pid in seen.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        keep.ess("cluster", "terminate", "-y", timeout=60)
        _kill_all(seen)

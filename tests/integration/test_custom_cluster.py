"""Custom clusters against real OpenSSH servers on loopback addresses.

``scripts/sshd-hosts.sh`` (run as root) starts one sshd per host on 127.0.0.2, 127.0.0.3, ...
(port 2222), each with its own host key, accepting the test user ``esstest`` with one key. The
master (this test process, root) bootstraps them exactly as it would real hosts: the wheel of
this build goes over SFTP and the production bootstrap script installs it in a virtualenv (made
with --system-site-packages: the dependencies come from the machine, see sshd-hosts.sh) and
starts a worker, running as esstest, that dials the master's scheduler over TLS.
"""

from __future__ import annotations

import gzip
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sysconfig
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import PROJECT, EssEnv

pytestmark = pytest.mark.slow

SCRIPT = PROJECT / "scripts" / "sshd-hosts.sh"
SSHD_DIR = Path(os.environ.get("ESS_SSHD_DIR", "/var/tmp/ess-sshd"))
PORT = 2222
USER = "esstest"
N_HOSTS = 4  # 1-3: the cluster; 4: host-key and user tests


@dataclass(frozen=True)
class SshdHosts:
    client_key: Path
    home: Path

    def entry(self, i: int) -> str:
        return f"127.0.0.{i + 1}:{PORT}"

    def sh(self, *args: str) -> str:
        return subprocess.run(
            ["bash", str(SCRIPT), *args], check=True, capture_output=True, text=True
        ).stdout


@pytest.fixture(scope="session")
def sshd_hosts() -> Iterator[SshdHosts]:
    if os.geteuid() != 0:
        pytest.skip("starting sshd on loopback addresses needs root (CI runs as root)")
    site = sysconfig.get_paths()["purelib"]
    subprocess.run(
        ["bash", str(SCRIPT), "start", str(N_HOSTS), "--deps-site", site],
        check=True,
        capture_output=True,
    )
    hosts = SshdHosts(SSHD_DIR / "client_key", Path(pwd.getpwnam(USER).pw_dir))
    try:
        yield hosts
    finally:
        leftovers = kill_leftover_workers(hosts.home / ".ess-node")
        hosts.sh("stop")
        shutil.rmtree(hosts.home / ".ess-node", ignore_errors=True)
        if leftovers:
            pytest.fail(f"worker loops left running by the tests (now killed): {leftovers}")


def kill_leftover_workers(root: Path) -> list[str]:
    """Kill worker loops still running under ``root`` (by their pid files); name them."""
    found = []
    for pid_file in root.glob("*/*/worker.pid"):
        try:
            pgid = int(pid_file.read_text())
            cmd = Path(f"/proc/{pgid}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if str(pid_file.parent / "run-worker.sh").encode() in cmd:
            os.killpg(pgid, signal.SIGKILL)
            found.append(str(pid_file.parent))
    return found


@pytest.fixture
def env(ess_env: EssEnv) -> Iterator[EssEnv]:
    """``ess_env`` whose custom cluster, if a test started one, is reset even when it fails."""
    yield ess_env
    if (ess_env.work_dir / "custom").exists():
        ess_env.ess("cluster", "reset", timeout=120)


def write_reservation(env: EssEnv, hosts: list[str], **extra: object) -> None:
    env.work_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "id": extra.pop("id", f"t-{env.root.name[-12:]}"),
        "user": USER,
        "ip_list": hosts,
        "system_site_packages": True,
        "venv_args": "--without-pip",  # pip comes from the machine too (faster bootstrap)
        "pip_args": "--no-index --no-deps",
        **extra,
    }
    (env.work_dir / "reservation.json").write_text(json.dumps(data, indent=1))
    env.ess("cluster", "set", "custom", check=True)


def add_pem(env: EssEnv, sshd: SshdHosts, name: str = "dev") -> None:
    env.work_dir.mkdir(parents=True, exist_ok=True)
    pem = env.work_dir / f"{name}.pem"
    shutil.copy(sshd.client_key, pem)
    pem.chmod(0o400)


def node_dirs(sshd: SshdHosts, cluster: str) -> list[Path]:
    # a node's warm service keeps NODE.warm.sock/.log and its launchers' NODE.warm.sock.bin/
    # beside the node's directory
    return sorted(p for p in (sshd.home / ".ess-node" / cluster).glob("*")
                  if p.is_dir() and not p.name.endswith(".warm.sock.bin"))  # fmt: skip


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def wait_gone(pids: list[int], groups: list[int], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids) and not any(group_alive(g) for g in groups):
            return
        time.sleep(0.1)
    raise AssertionError(
        f"stray processes: pids {[p for p in pids if alive(p)]}, "
        f"groups {[g for g in groups if group_alive(g)]}"
    )


def status_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and (parts[0] == "master" or parts[0].startswith("worker-")):
            rows[parts[0]] = parts
    return rows


# -- the whole life of a 3-host cluster --------------------------------------------------------
def test_three_host_cluster_end_to_end(env: EssEnv, sshd_hosts: SshdHosts) -> None:
    add_pem(env, sshd_hosts)
    hosts = [sshd_hosts.entry(i) for i in (1, 2, 3)]
    write_reservation(env, hosts, id="e2e_cluster", pem="dev")

    # Data only root can read: the workers (esstest) get the bytes shipped by the master.
    data = env.root / "data"
    data.mkdir(mode=0o700)
    for day in range(1, 7):
        with gzip.open(data / f"log_2020010{day}.csv.gz", "wt") as f:
            f.write(f"day{day},{day}\nday{day},{day * 10}\n")
    env.ess("select", "local", check=True)
    env.ess("category", "add", "logs", "data/*.csv.gz", check=True)

    t0 = time.monotonic()
    started = env.ess("cluster", "start", timeout=240)
    boot_time = time.monotonic() - t0
    assert started.returncode == 0, started.stderr
    assert "cluster e2e_cluster running" in started.stderr
    print(f"bootstrap of 3 hosts: {boot_time:.1f} s")

    nodes = node_dirs(sshd_hosts, "e2e-cluster")
    assert [n.name for n in nodes] == ["127.0.0.2_2222", "127.0.0.3_2222", "127.0.0.4_2222"]
    for node in nodes:
        tls = node / "tls"
        assert oct(tls.stat().st_mode & 0o777) == "0o700"
        assert oct((tls / "worker.key").stat().st_mode & 0o777) == "0o600"
        assert not (tls / "ca.key").exists()  # the CA key never leaves the master
        assert not (node / "stage").exists()
        assert (node / "venv" / "bin" / "python").exists()
        assert (node / "worker.pid").read_text().strip().isdigit()
    known = (env.work_dir / "known_hosts").read_text().splitlines()
    assert sorted(line.split()[0] for line in known) == [f"[127.0.0.{i}]:2222" for i in (2, 3, 4)]

    status = env.ess("cluster", "status")
    rows = status_rows(status.stdout)
    assert status.stdout.startswith("Summary for cluster e2e_cluster")
    assert [rows[f"worker-{i}"][1:4] for i in (1, 2, 3)] == [
        ["running", f"127.0.0.{i + 1}", f"127.0.0.{i + 1}"] for i in (1, 2, 3)
    ]
    for i in (1, 2, 3):
        cpu, (mem, disk, version) = " ".join(rows[f"worker-{i}"][4:-3]), rows[f"worker-{i}"][-3:]
        assert cpu.startswith("[") and cpu.endswith("]")
        assert float(mem) > 0 and float(disk) > 0
        assert version == (nodes[i - 1] / "installed").read_text().strip()
    assert status.returncode == 0 or "runs ess" in status.stderr, status.stderr

    # exec: on every host, as the SSH user, in its own working directory
    out = env.ess("exec", "echo $(whoami) %node_id $(basename $(dirname $PWD))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        f"{USER} 1 127.0.0.2_2222",
        f"{USER} 2 127.0.0.3_2222",
        f"{USER} 3 127.0.0.4_2222",
    ]

    # stream: files only the master can read, in order, spread over the three workers
    out = env.ess("stream", "logs", "*", "*", "echo $(whoami) $ESS_NODE_ID; cat")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [ln for ln in lines if ln.startswith("day")] == [
        f"day{d},{v}" for d in range(1, 7) for v in (d, d * 10)
    ]
    ran_on = {ln.split()[1] for ln in lines if ln.startswith(USER)}
    assert ran_on == {"1", "2", "3"}

    # file push / get
    (env.root / "lookup.txt").write_text("k,v\n")
    pushed = env.ess("file", "push", "lookup.txt")
    assert pushed.returncode == 0, pushed.stderr
    for node in nodes:
        assert (node / "work" / "lookup.txt").read_text() == "k,v\n"
    out = env.ess("exec", "cat lookup.txt > got-%node_id.txt; echo ok")
    assert out.stdout.split() == ["ok", "ok", "ok"]
    got = env.ess("file", "get", "lookup.txt")
    assert got.returncode == 0, got.stderr
    for i in (1, 2, 3):
        assert (env.root / f"worker-{i}.lookup.txt").read_text() == "k,v\n"

    # a host that is down is reported without stalling the others (and can be removed)
    t0 = time.monotonic()
    added = env.ess("cluster", "add", "127.0.0.9:2222", timeout=120)
    assert "worker-4" in added.stderr and "connection refused" in added.stderr, added.stderr
    status = env.ess("cluster", "status")
    assert status.returncode == 1
    assert "worker-4: 127.0.0.9:2222: unreachable (connection refused)" in status.stderr
    assert status_rows(status.stdout)["worker-3"][1] == "running"
    out = env.ess("exec", "echo %node_id")
    assert out.returncode == 0 and out.stdout.split() == ["1", "2", "3"], out.stderr
    removed = env.ess("cluster", "remove", "127.0.0.9:2222", timeout=120)
    assert removed.returncode == 0, removed.stderr
    reservation = json.loads((env.work_dir / "reservation.json").read_text())
    assert reservation["ip_list"] == hosts and reservation["pem"] == "dev"
    assert time.monotonic() - t0 < 60

    # removing the first host: its worker is stopped, its files removed, the others renumbered
    first_pgid = int((nodes[0] / "worker.pid").read_text())
    removed = env.ess("cluster", "remove", hosts[0], timeout=120)
    assert removed.returncode == 0, removed.stderr
    wait_gone([], [first_pgid])
    assert not nodes[0].exists()
    out = env.ess("exec", "echo %node_id $(basename $(dirname $PWD))")
    assert out.stdout.splitlines() == ["1 127.0.0.3_2222", "2 127.0.0.4_2222"], out.stderr
    nodes, hosts = nodes[1:], hosts[1:]

    # stop: every process we started is gone (checked by pid and process group)
    pgids = [int((n / "worker.pid").read_text()) for n in nodes]
    sched = int((env.work_dir / "custom" / "scheduler.pid").read_text())
    assert all(group_alive(g) for g in pgids) and alive(sched)
    stopped = env.ess("cluster", "stop", timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    wait_gone([sched], pgids)
    status = env.ess("cluster", "status")
    assert [status_rows(status.stdout)[f"worker-{i}"][1] for i in (1, 2)] == ["stopped"] * 2

    # start again (installed already), then reset removes what ess put on the hosts
    again = env.ess("cluster", "start", timeout=240)
    assert again.returncode == 0, again.stderr
    pgids = [int((n / "worker.pid").read_text()) for n in nodes]
    sched = int((env.work_dir / "custom" / "scheduler.pid").read_text())
    assert env.ess("exec", "echo %node_id").stdout.split() == ["1", "2"]
    reset = env.ess("cluster", "reset", timeout=120)
    assert reset.returncode == 0, reset.stderr
    wait_gone([sched], pgids)
    assert not (sshd_hosts.home / ".ess-node" / "e2e-cluster").exists()
    assert not (env.work_dir / "custom").exists()
    assert (env.work_dir / "reservation.json").exists()


def test_machine_commands_do_not_apply(env: EssEnv, sshd_hosts: SshdHosts) -> None:
    write_reservation(env, [sshd_hosts.entry(1)])
    for args in (("create", "--number", "2"), ("terminate", "-y")):
        r = env.ess("cluster", *args)
        assert r.returncode == 5
        assert "your own" in r.stderr or "does not own" in r.stderr, r.stderr
    assert env.ess("cluster", "iplist").stdout.split() == ["127.0.0.2"]


# -- reaching hosts: keys, users, host keys, dead hosts ----------------------------------------
def test_no_pem_uses_default_key(env: EssEnv, sshd_hosts: SshdHosts) -> None:
    env.env.pop("SSH_AUTH_SOCK", None)
    write_reservation(env, [sshd_hosts.entry(1), sshd_hosts.entry(2)])
    denied = env.ess("cluster", "status")
    assert denied.returncode == 1
    assert "permission denied for user 'esstest'" in denied.stderr
    assert "the SSH agent and default keys" in denied.stderr

    ssh_dir = env.root / ".ssh"  # the test HOME
    ssh_dir.mkdir(mode=0o700)
    shutil.copy(sshd_hosts.client_key, ssh_dir / "id_ed25519")
    (ssh_dir / "id_ed25519").chmod(0o600)
    ok = env.ess("cluster", "status")
    assert ok.returncode == 0, ok.stderr
    rows = status_rows(ok.stdout)
    assert rows["worker-1"][1] == "stopped" and rows["worker-2"][1] == "stopped"


def test_no_pem_uses_the_agent(env: EssEnv, sshd_hosts: SshdHosts) -> None:
    sock = env.root / "agent.sock"
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        added = subprocess.run(
            ["ssh-add", str(sshd_hosts.client_key)],
            env={**os.environ, "SSH_AUTH_SOCK": str(sock)},
            capture_output=True,
        )
        assert added.returncode == 0, added.stderr
        env.env["SSH_AUTH_SOCK"] = str(sock)
        write_reservation(env, [sshd_hosts.entry(1)])
        ok = env.ess("cluster", "status")
        assert ok.returncode == 0, ok.stderr
        assert status_rows(ok.stdout)["worker-1"][2] == "127.0.0.2"
        # Essentia's workflow: no 'start'; the first command bootstraps the cluster
        out = env.ess("exec", "echo %node_id $(whoami)", timeout=240)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["1", USER]
        reset = env.ess("cluster", "reset", timeout=120)  # while the agent still runs
        assert reset.returncode == 0, reset.stderr
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(10)


def test_wrong_user_is_refused_clearly(env: EssEnv, sshd_hosts: SshdHosts) -> None:
    add_pem(env, sshd_hosts)
    write_reservation(env, [sshd_hosts.entry(1)], pem="dev", user="ec2-user")
    r = env.ess("cluster", "start", timeout=120)
    assert r.returncode == 5, r.stderr
    assert "127.0.0.2:2222: permission denied for user 'ec2-user'" in r.stderr
    assert "dev.pem" in r.stderr


def test_pem_readable_by_others_is_refused(env: EssEnv, sshd_hosts: SshdHosts) -> None:
    add_pem(env, sshd_hosts)
    (env.work_dir / "dev.pem").chmod(0o644)
    write_reservation(env, [sshd_hosts.entry(1)], pem="dev")
    r = env.ess("cluster", "status")
    assert r.returncode == 3
    assert "chmod 400" in r.stderr


def test_changed_host_key_is_a_hard_error(env: EssEnv, sshd_hosts: SshdHosts) -> None:
    add_pem(env, sshd_hosts)
    write_reservation(env, [sshd_hosts.entry(1), sshd_hosts.entry(4)], pem="dev")
    first = env.ess("cluster", "status")
    assert first.returncode == 0, first.stderr
    known = (env.work_dir / "known_hosts").read_text()
    assert "[127.0.0.5]:2222 ssh-ed25519 " in known

    sshd_hosts.sh("rekey", "4")
    changed = env.ess("cluster", "status")
    assert changed.returncode == 1
    assert "127.0.0.5:2222: HOST KEY CHANGED" in changed.stderr
    assert (
        "[127.0.0.5]:2222" in changed.stderr and str(env.work_dir / "known_hosts") in changed.stderr
    )
    assert status_rows(changed.stdout)["worker-1"][1] == "stopped"  # the other host is fine
    assert (env.work_dir / "known_hosts").read_text() == known  # never overwritten

    # the user accepts the new key by deleting the line: recorded again on first use
    kept = [ln for ln in known.splitlines() if not ln.startswith("[127.0.0.5]")]
    (env.work_dir / "known_hosts").write_text("\n".join(kept) + "\n")
    again = env.ess("cluster", "status")
    assert again.returncode == 0, again.stderr


def test_strict_policy_refuses_unknown_hosts(env: EssEnv, sshd_hosts: SshdHosts) -> None:
    add_pem(env, sshd_hosts)
    write_reservation(env, [sshd_hosts.entry(1)], pem="dev", host_key_policy="strict")
    r = env.ess("cluster", "status")
    assert r.returncode == 1
    assert "unknown host key, and host_key_policy is strict" in r.stderr
    assert not (env.work_dir / "known_hosts").exists()


def test_silent_host_costs_one_deadline(env: EssEnv, sshd_hosts: SshdHosts) -> None:
    """A host that accepts TCP but never speaks SSH: the others answer, the sweep waits for
    one connect timeout, not one per attempt or per host."""
    listeners = []
    for addr in ("127.0.0.40", "127.0.0.41"):
        s = socket.socket()
        s.bind((addr, 0))
        s.listen(16)
        listeners.append(s)
    held: list[socket.socket] = []

    def accept(s: socket.socket) -> None:
        while True:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            held.append(conn)

    for s in listeners:
        threading.Thread(target=accept, args=(s,), daemon=True).start()
    try:
        add_pem(env, sshd_hosts)
        silent = [f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s in listeners]
        write_reservation(env, [sshd_hosts.entry(1), *silent], pem="dev", connect_timeout=3)
        t0 = time.monotonic()
        r = env.ess("cluster", "status")
        elapsed = time.monotonic() - t0
        assert r.returncode == 1
        assert status_rows(r.stdout)["worker-1"][1] == "stopped"
        assert r.stderr.count("timed out") == 2, r.stderr
        assert elapsed < 3 * 2 + 4, elapsed  # one deadline, not one per host
    finally:
        for s in listeners:
            s.close()
        for c in held:
            c.close()

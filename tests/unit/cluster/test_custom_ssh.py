"""ess.cluster.ssh: host parsing, the known-hosts file, and the fan-out's guarantees
(throttled starts, deadlines that do not add up, retries) against a scripted connector."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from ess.cluster.ssh import Host, HostError, KnownHosts, SshSession, SshSettings
from ess.errors import ConfigError


@pytest.mark.parametrize(
    ("entry", "address", "port", "label"),
    [
        ("10.1.0.10", "10.1.0.10", 22, "10.1.0.10"),
        ("10.1.0.10:2222", "10.1.0.10", 2222, "10.1.0.10:2222"),
        ("node-1.example.com", "node-1.example.com", 22, "node-1.example.com"),
        ("[fe80::1]:2200", "fe80::1", 2200, "[fe80::1]:2200"),
        ("fe80::1", "fe80::1", 22, "fe80::1"),
        (" 127.0.0.2:22 ", "127.0.0.2", 22, "127.0.0.2"),
    ],
)
def test_host_parse(entry: str, address: str, port: int, label: str) -> None:
    host = Host.parse(entry)
    assert (host.address, host.port, host.label) == (address, port, label)


@pytest.mark.parametrize(
    "entry", ["", "a b", "h:0", "h:70000", "h:x", "-oProxyCommand=x", "u@h", "[::1", "a/b", "zz::1"]
)
def test_host_parse_rejects(entry: str) -> None:
    with pytest.raises(ValueError):
        Host.parse(entry)


def test_host_names() -> None:
    assert Host.parse("127.0.0.2:2222").known_hosts_name == "[127.0.0.2]:2222"
    assert Host.parse("127.0.0.2").known_hosts_name == "127.0.0.2"
    assert Host.parse("127.0.0.2:2222").slug == "127.0.0.2_2222"
    assert Host.parse("[fe80::1]:2200").slug == "fe80__1_2200"


def _key() -> str:
    pub = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode()
    kind, b64 = pub.split()[:2]
    return f"{kind} {b64}"


def test_known_hosts_record_and_changed(tmp_path: Path) -> None:
    known = KnownHosts(tmp_path / "known_hosts")
    a, b = Host.parse("10.0.0.1"), Host.parse("10.0.0.1:2222")
    ka, kb = _key(), _key()
    assert known.keys_for(a) == []
    known.record(a, ka)
    known.record(b, kb)
    known.record(a, ka)  # idempotent
    assert known.keys_for(a) == [ka] and known.keys_for(b) == [kb]
    assert (tmp_path / "known_hosts").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigError, match=r"HOST KEY CHANGED.*10\.0\.0\.1"):
        known.record(a, kb)
    assert known.keys_for(a) == [ka]


def test_known_hosts_reads_openssh_lines(tmp_path: Path) -> None:
    k = _key()
    (tmp_path / "kh").write_text(f"# comment\nother,10.0.0.7 {k} a comment\n@revoked * {k}\n")
    assert KnownHosts(tmp_path / "kh").keys_for(Host.parse("10.0.0.7")) == [k]
    assert KnownHosts(tmp_path / "kh").keys_for(Host.parse("10.0.0.7:23")) == []


# -- the session against a scripted connector --------------------------------------------------
class FakeConn:
    def __init__(self, host: Host, key: Any) -> None:
        self.host = host
        self.key = key
        self.closed = False

    def get_server_host_key(self) -> Any:
        return self.key

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 40000) if name == "sockname" else None

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        return None


class Scripted:
    """Connects after ``delay``; raises the queued errors of a host first."""

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.errors: dict[str, list[BaseException]] = {}
        self.hang: set[str] = set()
        self.active = 0
        self.peak = 0
        self.calls: dict[str, int] = {}
        self.key = asyncssh.generate_private_key("ssh-ed25519")
        self.options: list[dict[str, Any]] = []

    async def __call__(self, host: Host, **options: Any) -> FakeConn:
        self.calls[host.label] = self.calls.get(host.label, 0) + 1
        self.options.append(options)
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            if host.address in self.hang:
                await asyncio.sleep(3600)
            await asyncio.sleep(self.delay)
            queued = self.errors.get(host.label)
            if queued:
                raise queued.pop(0)
            return FakeConn(host, self.key)
        finally:
            self.active -= 1


def settings(tmp_path: Path, **kw: Any) -> SshSettings:
    return SshSettings(user="u", known_hosts=tmp_path / "known_hosts", **kw)


def fan_out(
    tmp_path: Path, hosts: list[Host], connector: Scripted, *, timeout: float = 5, **kw: Any
) -> dict[Host, Any]:
    async def go() -> dict[Host, Any]:
        async with SshSession(settings(tmp_path, **kw), connector=connector) as ssh:

            async def job(host: Host, deadline: float) -> str:
                await ssh.connection(host, deadline)
                await ssh.connection(host, deadline)  # reused, not reopened
                return "ok"

            return await ssh.map(hosts, job, timeout=timeout)

    return asyncio.run(go())


def test_connection_starts_are_throttled_per_server_and_in_total(tmp_path: Path) -> None:
    same_server = [Host("10.0.0.1", 2200 + i) for i in range(20)]
    conn = Scripted()
    results = fan_out(tmp_path, same_server, conn)
    assert all(v == "ok" for v in results.values())
    assert conn.peak == 8  # OpenSSH MaxStartups begins dropping at 10
    assert all(n == 1 for n in conn.calls.values())

    many = [Host(f"10.0.1.{i}") for i in range(60)]
    conn = Scripted()
    fan_out(tmp_path, many, conn, max_starts=32)
    assert conn.peak == 32


def test_first_use_records_keys_then_pins_them(tmp_path: Path) -> None:
    hosts = [Host("10.0.0.1"), Host("10.0.0.2", 2222)]
    conn = Scripted()
    fan_out(tmp_path, hosts, conn)
    assert all(o["known_hosts"] is None for o in conn.options)
    lines = (tmp_path / "known_hosts").read_text().splitlines()
    assert sorted(ln.split()[0] for ln in lines) == ["10.0.0.1", "[10.0.0.2]:2222"]
    conn.options.clear()
    fan_out(tmp_path, hosts, conn)
    for o in conn.options:
        trusted, _cas, _revoked = o["known_hosts"]
        assert [k.export_public_key() for k in trusted] == [conn.key.export_public_key()]


def test_strict_policy_refuses_unknown_host(tmp_path: Path) -> None:
    results = fan_out(tmp_path, [Host("10.0.0.1")], Scripted(), policy="strict")
    error = results[Host("10.0.0.1")]
    assert isinstance(error, HostError) and error.kind == "hostkey"
    assert not (tmp_path / "known_hosts").exists()


def test_transient_errors_are_retried(tmp_path: Path) -> None:
    host = Host("10.0.0.1")
    conn = Scripted(delay=0)
    conn.errors[host.label] = [ConnectionRefusedError(), ConnectionResetError()]
    results = fan_out(tmp_path, [host], conn, backoff=(0.01, 0.01, 0.01))
    assert results[host] == "ok" and conn.calls[host.label] == 3


def test_retries_give_up_with_the_reason(tmp_path: Path) -> None:
    host = Host("10.0.0.1")
    conn = Scripted(delay=0)
    conn.errors[host.label] = [ConnectionRefusedError() for _ in range(10)]
    results = fan_out(tmp_path, [host], conn, backoff=(0.01, 0.01))
    error = results[host]
    assert isinstance(error, HostError) and error.kind == "unreachable"
    assert str(error) == "10.0.0.1: unreachable (connection refused)"
    assert conn.calls[host.label] == 3


@pytest.mark.parametrize(
    ("exc", "kind", "text"),
    [
        (asyncssh.PermissionDenied("no"), "auth", "permission denied for user 'u'"),
        (asyncssh.HostKeyNotVerifiable("bad"), "hostkey", "HOST KEY CHANGED"),
    ],
)
def test_auth_and_host_key_errors_are_not_retried(
    tmp_path: Path, exc: BaseException, kind: str, text: str
) -> None:
    host = Host("10.0.0.1")
    conn = Scripted(delay=0)
    conn.errors[host.label] = [exc, exc]
    results = fan_out(tmp_path, [host], conn)
    error = results[host]
    assert isinstance(error, HostError) and error.kind == kind and text in str(error)
    assert conn.calls[host.label] == 1


def test_hung_hosts_cost_one_deadline_and_do_not_stall_others(tmp_path: Path) -> None:
    hosts = [Host(f"10.0.0.{i}") for i in range(1, 13)]
    conn = Scripted()
    conn.hang = {f"10.0.0.{i}" for i in range(1, 11)}  # 10 hung hosts: more than the throttle
    t0 = time.monotonic()
    results = fan_out(tmp_path, hosts, conn, timeout=0.5, max_starts_per_server=8)
    elapsed = time.monotonic() - t0
    assert results[Host("10.0.0.11")] == "ok" and results[Host("10.0.0.12")] == "ok"
    hung = [results[h] for h in hosts[:10]]
    assert all(isinstance(e, HostError) and e.kind == "timeout" for e in hung)
    assert elapsed < 1.5, elapsed

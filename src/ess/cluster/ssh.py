"""SSH fan-out to the hosts of a custom cluster (asyncssh).

One :class:`SshSession` lives for one ``ess`` command and opens at most one connection per host,
reused by every step of that command (probe, upload, bootstrap, ...). What it guarantees:

* **Throttled connection starts.** OpenSSH's ``MaxStartups`` (default ``10:30:100``) starts
  dropping connections once 10 are unauthenticated at one server. At most
  :data:`MAX_STARTS_PER_SERVER` handshakes run at once against one server address, and at most
  :data:`MAX_STARTS` in total (key exchanges cost CPU on the master too); a connection releases
  its slot as soon as it is authenticated.
* **Per-host deadlines that do not add up.** :meth:`SshSession.map` runs a job on every host
  concurrently; each host has one absolute deadline for everything (waiting for a slot,
  connecting, retries, commands), so N slow hosts cost one timeout, not N.
* **Retries on transient errors** (connection refused/reset/lost during the handshake, e.g. a
  ``MaxStartups`` drop or an sshd restarting), with a short backoff, within the deadline.
  Authentication and host-key failures are never retried, nor is a connect timeout (a host
  that does not answer would otherwise cost several timeouts).
* **An unreachable host is reported, never stalls the others**: ``map`` returns a
  :class:`HostError` for it beside the other hosts' results.

Host keys: trust on first use, stored in our own known-hosts file (``.conf/known_hosts``,
OpenSSH format, one ``NAME KEYTYPE BASE64`` line per host, ``NAME`` being ``address`` or
``[address]:port``). A host seen for the first time is recorded; a host whose key no longer
matches its line is a hard error naming the host and the file, never retried and never
overwritten. With the ``strict`` policy an unknown host is refused instead of recorded (lines
can be copied from ``~/.ssh/known_hosts`` or ``ssh-keyscan``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ess.errors import ConfigError
from ess.workspace import locked, write_bytes_atomic

DEFAULT_PORT = 22
#: Concurrent SSH handshakes against one server (OpenSSH drops past 10 by default).
MAX_STARTS_PER_SERVER = 8
#: Concurrent SSH handshakes in total.
MAX_STARTS = 32
CONNECT_TIMEOUT = 10.0
#: Pauses between connection attempts on a transient error.
BACKOFF = (0.2, 0.5, 1.0)
POLICIES = ("tofu", "strict")

T = TypeVar("T")


# -- hosts -------------------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class Host:
    """One entry of ``ip_list``: ``address``, ``address:port`` or ``[v6address]:port``."""

    address: str
    port: int = DEFAULT_PORT

    @classmethod
    def parse(cls, entry: str) -> Host:
        text = str(entry).strip()
        if not text or any(c.isspace() for c in text):
            raise ValueError(f"bad host {entry!r}")
        address, port = text, DEFAULT_PORT
        if text.startswith("["):
            inner, sep, rest = text[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise ValueError(f"bad host {entry!r}")
            address = inner
            if rest:
                port = _port(rest[1:], entry)
        elif text.count(":") == 1:
            address, port_text = text.split(":")
            port = _port(port_text, entry)
        elif text.count(":") > 1:
            ipaddress.ip_address(text)  # a bare IPv6 address (port 22)
        if not address or address.startswith("-") or "/" in address or "@" in address:
            raise ValueError(f"bad host {entry!r}")
        return cls(address, port)

    @property
    def label(self) -> str:
        """How ess names the host (``ip_list`` style)."""
        if self.port == DEFAULT_PORT:
            return self.address
        return f"[{self.address}]:{self.port}" if ":" in self.address else self.label_port

    @property
    def label_port(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """The host's name in a known-hosts file (OpenSSH convention)."""
        return self.address if self.port == DEFAULT_PORT else f"[{self.address}]:{self.port}"

    @property
    def slug(self) -> str:
        """A file-name-safe form, unique per host (used for its directory on the node)."""
        text = self.address if self.port == DEFAULT_PORT else f"{self.address}_{self.port}"
        return "".join(c if c.isalnum() or c in "-._" else "_" for c in text)


def _port(text: str, entry: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad port in host {entry!r}")
    return int(text)


# -- errors and results ------------------------------------------------------------------------
class HostError(Exception):
    """A host could not be reached or a command on it failed. ``kind`` says which."""

    def __init__(self, host: Host, kind: str, message: str) -> None:
        super().__init__(f"{host.label}: {message}")
        self.host = host
        self.kind = kind  # unreachable | timeout | auth | hostkey | command


@dataclass(frozen=True)
class RunResult:
    exit_status: int
    stdout: str
    stderr: str


# -- known hosts -------------------------------------------------------------------------------
@dataclass(frozen=True)
class KnownHosts:
    """Our known-hosts file: exact ``NAME`` matches only (no patterns, hashes or markers)."""

    path: Path

    def keys_for(self, host: Host) -> list[str]:
        """The ``KEYTYPE BASE64`` strings recorded for ``host``."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        found = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) < 3 or parts[0].startswith(("#", "@", "|")):
                continue
            if host.known_hosts_name in parts[0].split(","):
                found.append(f"{parts[1]} {parts[2]}")
        return found

    def record(self, host: Host, key: str) -> None:
        """Add ``host``'s key; fail if another key was recorded for it meanwhile."""
        with locked(self.path):
            known = self.keys_for(host)
            if key in known:
                return
            if known:
                raise ConfigError(changed_key_message(host, self.path))
            try:
                old = self.path.read_bytes()
            except FileNotFoundError:
                old = b""
            if old and not old.endswith(b"\n"):
                old += b"\n"
            line = f"{host.known_hosts_name} {key}\n".encode()
            write_bytes_atomic(self.path, old + line, mode=0o600)


def changed_key_message(host: Host, path: Path) -> str:
    return (
        f"HOST KEY CHANGED: the key {host.label} offers does not match the one recorded in "
        f"{path}. Someone may be intercepting the connection, or the host was reinstalled; "
        f"if you trust the new key, delete the line for {host.known_hosts_name} from {path}"
    )


# -- the session -------------------------------------------------------------------------------
@dataclass(frozen=True)
class SshSettings:
    user: str
    known_hosts: Path
    key_file: Path | None = None  # None: the SSH agent and the default keys (~/.ssh/id_*)
    policy: str = "tofu"
    connect_timeout: float = CONNECT_TIMEOUT
    max_starts: int = MAX_STARTS
    max_starts_per_server: int = MAX_STARTS_PER_SERVER
    backoff: tuple[float, ...] = BACKOFF

    def describe_auth(self) -> str:
        return f"key {self.key_file}" if self.key_file else "the SSH agent and default keys"


Connector = Callable[..., Awaitable[Any]]


async def _asyncssh_connect(host: Host, **kwargs: Any) -> Any:
    import asyncssh

    return await asyncssh.connect(host.address, host.port, **kwargs)


@dataclass
class SshSession:
    """Connections to many hosts within one command. Use as ``async with``."""

    settings: SshSettings
    connector: Connector = _asyncssh_connect
    _conns: dict[Host, Any] = field(default_factory=dict)
    _opening: dict[Host, asyncio.Lock] = field(default_factory=dict)
    _starts: asyncio.Semaphore | None = None
    _per_server: dict[str, asyncio.Semaphore] = field(default_factory=dict)

    async def __aenter__(self) -> SshSession:
        self._starts = asyncio.Semaphore(self.settings.max_starts)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            conn.close()
        for conn in conns:
            with contextlib.suppress(Exception):  # closing anyway
                await asyncio.wait_for(conn.wait_closed(), 2)

    def local_address(self, host: Host) -> str | None:
        """The master's address as seen by ``host`` (the source address of our connection)."""
        conn = self._conns.get(host)
        if conn is None:
            return None
        sockname = conn.get_extra_info("sockname")
        return str(sockname[0]) if sockname else None

    # -- connecting ----------------------------------------------------------------------------
    async def connection(self, host: Host, deadline: float) -> Any:
        """The open connection to ``host``, opened now if needed (once, whoever asks)."""
        lock = self._opening.setdefault(host, asyncio.Lock())
        async with lock:
            if host not in self._conns:
                self._conns[host] = await self._open(host, deadline)
            return self._conns[host]

    def _server_slot(self, host: Host) -> asyncio.Semaphore:
        sem = self._per_server.get(host.address)
        if sem is None:
            sem = self._per_server[host.address] = asyncio.Semaphore(
                self.settings.max_starts_per_server
            )
        return sem

    async def _open(self, host: Host, deadline: float) -> Any:
        import asyncssh

        assert self._starts is not None, "use SshSession as 'async with'"
        known = KnownHosts(self.settings.known_hosts)
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HostError(host, "timeout", "timed out connecting")
            trusted = known.keys_for(host)
            if not trusted and self.settings.policy == "strict":
                raise HostError(
                    host,
                    "hostkey",
                    f"unknown host key, and host_key_policy is strict: add the host's key to "
                    f"{self.settings.known_hosts} (e.g. from ssh-keyscan)",
                )
            try:
                async with self._server_slot(host), self._starts:
                    conn = await asyncio.wait_for(
                        self.connector(host, **self._options(trusted, remaining)),
                        max(0.01, deadline - time.monotonic()),
                    )
            except asyncssh.HostKeyNotVerifiable as exc:
                raise HostError(
                    host, "hostkey", changed_key_message(host, self.settings.known_hosts)
                ) from exc
            except asyncssh.PermissionDenied as exc:
                raise HostError(
                    host,
                    "auth",
                    f"permission denied for user {self.settings.user!r} "
                    f"(tried {self.settings.describe_auth()})",
                ) from exc
            except asyncssh.KeyImportError as exc:
                raise HostError(host, "auth", f"cannot use the key: {exc}") from exc
            except socket.gaierror as exc:
                raise HostError(host, "unreachable", f"unknown host ({exc.strerror})") from exc
            except TimeoutError as exc:
                # not retried: a host that does not answer would cost the whole deadline
                raise HostError(host, "timeout", "timed out connecting") from exc
            except (OSError, asyncssh.Error) as exc:
                error: Exception = exc
            else:
                if not trusted:
                    await self._record_key(host, conn)
                return conn
            if attempt >= len(self.settings.backoff):
                raise HostError(host, "unreachable", f"unreachable ({_describe(error)})")
            pause = self.settings.backoff[attempt]
            attempt += 1
            if time.monotonic() + pause >= deadline:
                raise HostError(host, "unreachable", f"unreachable ({_describe(error)})")
            await asyncio.sleep(pause)

    def _options(self, trusted: list[str], timeout: float) -> dict[str, Any]:
        import asyncssh

        s = self.settings
        opts: dict[str, Any] = {
            "username": s.user,
            "connect_timeout": min(s.connect_timeout, timeout),
            "login_timeout": min(s.connect_timeout, timeout),
            "keepalive_interval": 15,
        }
        if trusted:
            keys = [asyncssh.import_public_key(k) for k in trusted]
            opts["known_hosts"] = (keys, [], [])
        else:
            opts["known_hosts"] = None  # first use: recorded right after the handshake
        if s.key_file is not None:
            opts["client_keys"] = [str(s.key_file)]
            opts["agent_path"] = None
        return opts

    async def _record_key(self, host: Host, conn: Any) -> None:
        key = conn.get_server_host_key()
        if key is None:
            return
        text = key.export_public_key("openssh").decode().split()
        try:
            await asyncio.to_thread(
                KnownHosts(self.settings.known_hosts).record, host, f"{text[0]} {text[1]}"
            )
        except ConfigError as exc:
            conn.close()
            raise HostError(host, "hostkey", str(exc)) from exc

    # -- using a connection --------------------------------------------------------------------
    async def run(
        self, host: Host, command: str, *, deadline: float, input: str | None = None
    ) -> RunResult:
        """Run ``command`` (already shell-quoted) on ``host``; a non-zero exit is returned."""
        import asyncssh

        conn = await self.connection(host, deadline)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise HostError(host, "timeout", "timed out")
        try:
            proc = await conn.run(command, input=input, check=False, timeout=remaining)
        except asyncssh.TimeoutError as exc:
            raise HostError(host, "timeout", f"command timed out after {remaining:.0f} s") from exc
        except (OSError, asyncssh.Error) as exc:
            self._conns.pop(host, None)
            raise HostError(host, "unreachable", f"connection lost ({_describe(exc)})") from exc
        status = proc.exit_status if proc.exit_status is not None else 255
        return RunResult(status, str(proc.stdout or ""), str(proc.stderr or ""))

    async def check(
        self, host: Host, command: str, *, deadline: float, input: str | None = None, what: str
    ) -> str:
        """``run``, turning a non-zero exit into a HostError naming ``what`` and stderr."""
        result = await self.run(host, command, deadline=deadline, input=input)
        if result.exit_status != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-10:])
            raise HostError(
                host, "command", f"{what} failed (exit {result.exit_status}){': ' + tail}"
            )
        return result.stdout

    async def put(
        self, host: Host, files: Sequence[tuple[Path, str]], *, deadline: float, mode: int = 0o600
    ) -> None:
        """Copy local files to remote paths over SFTP; each ends up with ``mode``.

        The remote directories must exist (create them 0700 first for secrets)."""
        import asyncssh

        conn = await self.connection(host, deadline)
        remaining = max(0.01, deadline - time.monotonic())

        async def copy() -> None:
            async with conn.start_sftp_client() as sftp:
                for local, remote in files:
                    await sftp.put(str(local), remote)
                    await sftp.chmod(remote, mode)

        try:
            await asyncio.wait_for(copy(), remaining)
        except TimeoutError as exc:
            raise HostError(host, "timeout", "file upload timed out") from exc
        except (OSError, asyncssh.Error) as exc:
            raise HostError(host, "command", f"file upload failed ({_describe(exc)})") from exc

    async def map(
        self,
        hosts: Sequence[Host],
        job: Callable[[Host, float], Awaitable[T]],
        *,
        timeout: float,
    ) -> dict[Host, T | HostError]:
        """``job(host, deadline)`` on every host at once; each host's failure is its own."""
        deadline = time.monotonic() + timeout

        async def one(host: Host) -> T | HostError:
            try:
                return await asyncio.wait_for(job(host, deadline), max(0.01, timeout))
            except HostError as exc:
                return exc
            except TimeoutError:
                return HostError(host, "timeout", f"no answer within {timeout:.0f} s")

        results = await asyncio.gather(*(one(h) for h in hosts))
        return dict(zip(hosts, results, strict=True))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timed out"
    text = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
    return str(text) or type(exc).__name__

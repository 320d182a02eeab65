"""The service's reusable children (ess.warm.reuse): which wait for a command, and for which.

A child is reused only for a command with its first command's tool and start-up environment
(:func:`reuse_key`): everything but the variables that differ from one file of a stream to
the next and are read afresh by every command. So a thread pool sized by POLARS_MAX_THREADS,
a C helper chosen by ESS_NATIVE or an allocator set by MALLOC_CONF is always the one a fresh
process would have made.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass, field

from ess.warm import protocol as p
from ess.warm.request import Request

#: The service's setting: 0 forks a fresh child for every command (the path before reuse).
ENV_REUSE = "ESS_WARM_REUSE"
#: Variables that differ between the commands of a stream, or a shell's, read per command.
PER_COMMAND = (b"_", b"PWD", b"OLDPWD", b"SHLVL", b"ESS_STDIN_NAME")
PER_COMMAND_PREFIXES = (b"ESS_FILE", b"ESS_UDB_")
#: Idle children kept per start-up environment (a worker runs up to about one command per
#: core at once), and how long one waits before it is ended.
MAX_IDLE = max(4, os.cpu_count() or 1)
IDLE_SECONDS = 30.0
#: Seconds to hand a command to an idle child (it is waiting for it: this is a bound).
SEND_TIMEOUT = 10.0

Key = tuple[bytes, ...]


def reuse_key(req: Request) -> Key:
    """The tool and the start-up environment of a command."""
    env = sorted(e for e in req.env if not _per_command(e.partition(b"=")[0]))
    return (req.tool.encode(), *env)


def _per_command(name: bytes) -> bool:
    return name in PER_COMMAND or name.startswith(PER_COMMAND_PREFIXES)


def reuse_enabled() -> bool:
    return os.environ.get(ENV_REUSE, "1") != "0"


@dataclass
class Executor:
    pid: int
    control: socket.socket  # the service's end
    key: Key
    since: float = 0.0  # when it last became idle


@dataclass
class Executors:
    """Every reusable child of the service, running a command or idle."""

    by_pid: dict[int, Executor] = field(default_factory=dict)
    idle: dict[Key, list[int]] = field(default_factory=dict)

    def add(self, pid: int, control: socket.socket, key: Key) -> None:
        control.settimeout(SEND_TIMEOUT)
        self.by_pid[pid] = Executor(pid, control, key)

    def hand(self, req: Request, fds: list[int]) -> tuple[int | None, list[Executor]]:
        """(the pid of an idle child now running `req`, or None; children found broken)."""
        waiting = self.idle.get(reuse_key(req), [])
        broken: list[Executor] = []
        while waiting:
            ex = self.by_pid[waiting.pop()]
            data = p.encode(tool=req.tool, cwd=req.cwd, argv=list(req.argv), env=list(req.env))
            try:
                sent = socket.send_fds(ex.control, [data[: p.HEADER.size]], fds)
                ex.control.sendall(data[sent:])
            except OSError:
                broken.append(self.forget(ex.pid) or ex)
                continue
            return ex.pid, broken
        return None, broken

    def park(self, pid: int) -> Executor | None:
        """A child finished its command: keep it waiting, or return it to be retired."""
        ex = self.by_pid.get(pid)
        if ex is None:
            return None
        waiting = self.idle.setdefault(ex.key, [])
        if len(waiting) >= MAX_IDLE:
            return self.forget(pid)
        ex.since = time.monotonic()
        waiting.append(pid)
        return None

    def forget(self, pid: int) -> Executor | None:
        ex = self.by_pid.pop(pid, None)
        if ex is not None:
            with contextlib.suppress(ValueError):
                self.idle.get(ex.key, []).remove(pid)
        return ex

    def expired(self) -> list[Executor]:
        """The idle children that waited too long, forgotten (to be retired)."""
        now = time.monotonic()
        old = [pid for pids in self.idle.values() for pid in pids
               if now - self.by_pid[pid].since > IDLE_SECONDS]  # fmt: skip
        return [ex for pid in old if (ex := self.forget(pid)) is not None]

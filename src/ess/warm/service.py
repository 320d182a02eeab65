"""The supervisor of a warm server, and how other code starts and stops one.

``python -m ess.warm.service --socket PATH [--watch-pid PID] [--idle S]`` runs the fork server
(:mod:`ess.warm.server`) as its child and starts it again when it crashes (at most
``MAX_RESTARTS`` times a minute, then every ``BACKOFF`` seconds; meanwhile commands run cold)
or when its sources changed. It stops, taking the server and its commands with it, on
SIGTERM, when the process it watches is gone (the node's worker, the ``ess stream`` that
started it) or when the server stopped after ``--idle`` seconds without a command.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from ess.engine import daemon
from ess.engine.hugepages import no_huge_pages
from ess.warm.paths import socket_for
from ess.warm.server import EXIT_STALE

MAX_RESTARTS = 5
BACKOFF = 30.0  # seconds between tries once the server crashed MAX_RESTARTS times in a minute
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Service:
    """A running supervisor: its pid and the socket its server listens on."""

    pid: int
    socket: str
    proc: subprocess.Popen[bytes] | None = None

    def ready(self, *, timeout: float) -> bool:
        """True once the server answers (tests and benchmarks wait for it; commands do not)."""
        from ess.warm.server import _answers

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _answers(self.socket):
                return True
            if self.proc is not None and self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def stop(self, *, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; the server's commands die with it."""
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGTERM)
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)


def start(*, socket: str, watch_pid: int = 0, idle: float = 0, log: Path | None = None) -> Service:
    """Start a supervisor in its own session (a Ctrl-C at the terminal is not for it)."""
    socket = socket_for(socket)
    argv = [sys.executable, "-m", "ess.warm.service", "--socket", socket, "--idle", str(idle)]
    if watch_pid:
        argv += ["--watch-pid", str(watch_pid)]
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    finally:
        if log is not None:
            out.close()  # type: ignore[union-attr]
    return Service(pid=proc.pid, socket=socket, proc=proc)


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _alive(pid: int) -> bool:
    """Whether the watched process (0: none) still runs. A killed process stays a zombie
    until its parent reaps it, which can take seconds (a worker revived by a long-lived
    process, or reparented to a container's init): the daemons' own test counts it as gone,
    or this service would go on serving the worker's socket, and the commands of the worker
    started in its place, until the reap ended it and them."""
    return not pid or daemon.alive(pid)


def supervise(*, socket: str, watch_pid: int, idle: float) -> int:
    term = {"got": False}
    signal.signal(signal.SIGTERM, lambda *_: term.update(got=True))
    signal.signal(signal.SIGINT, lambda *_: term.update(got=True))
    crashes: deque[float] = deque(maxlen=MAX_RESTARTS)
    argv = [sys.executable, "-m", "ess.warm.server", "--socket", socket, "--idle", str(idle)]
    while True:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        while proc.poll() is None:
            if term["got"] or not _alive(watch_pid):
                _stop_server(proc)
                return 0
            time.sleep(0.25)
        if proc.returncode == 0 or term["got"] or not _alive(watch_pid):
            return 0
        if proc.returncode == EXIT_STALE:
            continue
        now = time.monotonic()
        crashes.append(now)
        print(f"ess.warm: server exited with {proc.returncode}; restarting", file=sys.stderr)
        pause = 0.5
        if len(crashes) == MAX_RESTARTS and now - crashes[0] < 60:
            print(
                f"ess.warm: crashing; next try in {BACKOFF} s (commands run cold)", file=sys.stderr
            )
            pause = BACKOFF
        if _sleep_watching(pause, term, watch_pid):
            return 0


def _sleep_watching(seconds: float, term: dict[str, bool], watch_pid: int) -> bool:
    """Sleep; True when told to stop meanwhile."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if term["got"] or not _alive(watch_pid):
            return True
        time.sleep(0.25)
    return False


def _stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ess.warm.service")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--watch-pid", type=int, default=0)
    parser.add_argument("--idle", type=float, default=0)
    args = parser.parse_args(argv)
    no_huge_pages()  # inherited by the server and the children that run the commands
    # the launchers' directory is named after the socket the caller asked for (its PATH names
    # it), the socket itself may be one in the runtime dir when that name is too long for it
    launchers = _install_launchers(args.socket)
    args.socket = socket_for(args.socket)
    try:
        return supervise(socket=args.socket, watch_pid=args.watch_pid, idle=args.idle)
    finally:
        from ess.warm.server import _answers

        if not _answers(args.socket):  # a crashed server's socket: remove it
            with contextlib.suppress(OSError):
                os.unlink(args.socket)
        if launchers is not None:
            shutil.rmtree(launchers, ignore_errors=True)  # no server follows this one


def _install_launchers(socket: str) -> Path | None:
    """The commands' fast launchers (ess.warm.fast), or None: they then use the entry points."""
    from ess.warm.fastbin import install

    try:
        return install(socket)
    except OSError as exc:
        print(f"ess.warm: no fast launchers ({exc}); the commands use the entry points",
              file=sys.stderr)  # fmt: skip
        return None


if __name__ == "__main__":
    sys.exit(main())

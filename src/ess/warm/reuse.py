"""A child that runs one command after another (an executor), as fresh processes would.

Forking a child per command costs the fork, the new process's page faults on every batch's
memory, the start of Polars' thread pool and the exit's teardown: about 30 ms of CPU per
``aq_pp`` on the benchmark's files, a quarter of its work. A child whose command ended
cleanly tells the service its exit code (``DONE``) instead of exiting, and waits on its
control socket for the next command with the same start-up environment
(:func:`ess.warm.server.reuse_key`): the memory, threads and imports of the last command are
reused, nothing else is.

What a fresh process would not carry over, an executor does not either:

* descriptors 0-2 are the new command's; the last command's are replaced by /dev/null before
  its exit code is reported (its reader sees end of file when the launcher exits, as before);
* environment, cwd, argv, sys.stdin/stdout/stderr, signal handlers: set anew per command
  (:func:`ess.warm.command.take`);
* exit functions: a command's ``atexit`` registrations and pending ``weakref.finalize``
  callbacks run when it ends, as at a process's exit (the ones inherited from the service
  stay for the executor's own end, which never runs them: it ends with ``os._exit``);
* a signal relayed after the command ended (the launcher got it late) is ignored, not
  delivered to the next command.

A command that ends with a non-zero code, a signal or an exception, or leaves anything behind
(a thread other than the writer's pool, a descriptor, more than ``MAX_RSS`` of memory), ends
its executor: the service forks a fresh one for the next command.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import threading
import traceback
import weakref
from collections.abc import Callable
from typing import Any, NoReturn

from ess.warm import protocol as p
from ess.warm.command import flush_streams, outcome, take
from ess.warm.request import receive_request

#: Commands one executor runs before it ends (its frozen objects and heap only grow).
MAX_COMMANDS = 256
#: Resident memory above which an executor ends after its command instead of waiting.
MAX_RSS = 1 << 30
#: Threads a command may leave running: module-level pools made for any command.
SHARED_THREADS = ("ess-aq-writer",)
_PAGE = os.sysconf("SC_PAGE_SIZE")


class CommandExits:
    """``atexit`` for one command at a time: what a command registers runs when it ends."""

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []
        self.first_finalizer = next(weakref.finalize._index_iter)  # type: ignore[attr-defined]

    def install(self) -> None:
        atexit.register = self.register  # type: ignore[assignment]
        atexit.unregister = self.unregister

    def register(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
        self.calls.append((func, args, kwargs))
        return func

    def unregister(self, func: Callable[..., Any]) -> None:
        self.calls = [call for call in self.calls if call[0] != func]

    def run(self) -> bool:
        """Run and forget the command's exit functions, last first; True after a Ctrl-C."""
        while self.calls:
            func, args, kwargs = self.calls.pop()
            try:
                func(*args, **kwargs)
            except KeyboardInterrupt:
                self.calls.clear()
                return True
            except BaseException:
                traceback.print_exc()
        return self._run_finalizers()

    def _run_finalizers(self) -> bool:
        registry: dict[Any, Any] = weakref.finalize._registry  # type: ignore[attr-defined]
        mine = [(info.index, f) for f, info in registry.items()
                if info.atexit and info.index > self.first_finalizer]  # fmt: skip
        for _index, finalizer in sorted(mine, key=lambda pair: -pair[0]):
            try:
                finalizer()
            except KeyboardInterrupt:
                return True
            except BaseException:
                traceback.print_exc()
        return False


def serve_commands(control: socket.socket, main: Callable[[list[str]], object]) -> NoReturn:
    """Run the command already set up (``main``), then the ones the service sends, until one
    does not end cleanly or the service closes the control socket. Never returns."""
    code = 1
    try:
        exits = CommandExits()
        exits.install()
        devnull = os.open(os.devnull, os.O_RDWR)
        baseline = _open_fds()
        served = 0
        while True:
            code = flush_streams(outcome(main, exits.run))
            served += 1
            _ignore_late_signals()
            if code != 0 or served >= MAX_COMMANDS or not _clean(baseline):
                break
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            main = _next_command(control, code)
    except BaseException:  # never back into the service's code, whatever happens here
        traceback.print_exc()
    os._exit(code)


def _next_command(control: socket.socket, code: int) -> Callable[[list[str]], object]:
    try:
        control.sendall(p.number(p.DONE, code))
        req, fds = receive_request(control)
    except (OSError, ValueError):  # the service retired this executor (or died)
        os._exit(0)
    try:
        return take(req, fds)  # sets the signals' handlers anew
    except BaseException:  # the command never started: say why on its stderr, as a fork would
        traceback.print_exc()
        os._exit(flush_streams(1))


def _ignore_late_signals() -> None:
    """Ignore (and so drop: POSIX discards a pending signal set to SIG_IGN) what a launcher
    relays until the next command's handlers are set. Not a mask: a mask is per thread, and
    a signal for the process goes to any thread (Polars' pool) that does not block it."""
    for sig in p.RELAYED:
        signal.signal(sig, signal.SIG_IGN)


def _open_fds() -> frozenset[int]:
    """This process's descriptors other than 0-2 and than the event descriptors libraries
    keep for their runtimes (Polars' epoll and eventfd, made on first use and reused)."""
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("anon_inode:"):
                fds.add(int(name))
        except OSError:  # the listing's own descriptor, closed by now
            continue
    return frozenset(fds - {0, 1, 2})


def _clean(baseline: frozenset[int]) -> bool:
    """Whether the last command left nothing a fresh process would not have."""
    for thread in threading.enumerate():
        if thread is threading.main_thread() or thread.name.startswith(SHARED_THREADS):
            continue
        thread.join(0.05)  # a pool shut down without waiting: its threads are on their way out
        if thread.is_alive():
            return False
    if _open_fds() != baseline:
        return False
    with open("/proc/self/statm", "rb") as statm:
        resident = int(statm.read().split()[1]) * _PAGE
    return resident <= MAX_RSS

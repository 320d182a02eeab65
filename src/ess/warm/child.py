"""What a forked child of the service does: become the command, as a cold start would be.

The child takes the launcher's descriptors as 0-2, its cwd, environment and argv, rebuilds
``sys.stdin/stdout/stderr`` as Python would at start-up (line buffering on a terminal), dies
with the service (PR_SET_PDEATHSIG), and runs the tool's entry point, turning its ending into
the exit status a cold process would have had: SystemExit's code, 1 after a traceback, and
death by SIGINT after an uncaught KeyboardInterrupt (what Python itself does).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import traceback
from collections.abc import Iterable

from ess.warm.command import at_exit, flush_and_exit, outcome, quiet_close, take
from ess.warm.request import Request

PR_SET_PDEATHSIG = 1


def become(
    req: Request,
    fds: list[int],
    *,
    server_pid: int,
    close: Iterable[int],
    control: socket.socket | None = None,
) -> None:
    """Never returns: runs ``req`` in this (just forked) process and exits; with a `control`
    socket, goes on running the service's next commands (:mod:`ess.warm.reuse`)."""
    try:
        _die_with(server_pid)
        for fd in close:
            quiet_close(fd)
        os.setpgid(0, 0)  # signals for the service's group (its log, a Ctrl-C) are not ours
        main = take(req, fds)
    except BaseException:  # the command never started: say why on its stderr
        traceback.print_exc()
        flush_and_exit(1)
    if control is None:
        flush_and_exit(outcome(main, at_exit))
    from ess.warm.reuse import serve_commands

    serve_commands(control, main)


def _die_with(server_pid: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != server_pid:  # the service died before prctl took effect
        os._exit(1)

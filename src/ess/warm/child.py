"""What a forked child of the service does: become the command, as a cold start would be.

The child takes the launcher's descriptors as 0-2, its cwd, environment and argv, rebuilds
``sys.stdin/stdout/stderr`` as Python would at start-up (line buffering on a terminal), dies
with the service (PR_SET_PDEATHSIG), and runs the tool's entry point, turning its ending into
the exit status a cold process would have had: SystemExit's code, 1 after a traceback, and
death by SIGINT after an uncaught KeyboardInterrupt (what Python itself does).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib
import io
import os
import signal
import sys
import traceback
from collections.abc import Iterable

from ess.warm.request import Request

#: The entry points the service runs, by name (as the console scripts name them).
ENTRY_POINTS = {"aq_pp": "ess.cli.aq_pp", "aq_udb": "ess.cli.aq_udb"}
PR_SET_PDEATHSIG = 1
#: Variables read once when the C helper is loaded: a child that differs reloads it.
NATIVE_VARS = ("ESS_NATIVE", "ESS_NATIVE_CFLAGS", "ESS_NATIVE_DIR", "XDG_CACHE_HOME", "CC")


def become(req: Request, fds: list[int], *, server_pid: int, close: Iterable[int]) -> None:
    """Never returns: runs ``req`` in this (just forked) process and exits."""
    try:
        _die_with(server_pid)
        for fd in close:
            _quiet_close(fd)
        os.setpgid(0, 0)  # signals for the service's group (its log, a Ctrl-C) are not ours
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                _quiet_close(fd)
        before = {k: os.environ.get(k) for k in NATIVE_VARS}
        os.environ.clear()
        for entry in req.env:
            name, _, value = entry.partition(b"=")
            os.environb[name] = value
        os.chdir(req.cwd)
        sys.argv = [os.fsdecode(a) for a in req.argv]
        _fresh_streams()
        if "random" in sys.modules:  # a cold process seeds from the OS, not from its parent
            sys.modules["random"].seed()
        if any(os.environ.get(k) != v for k, v in before.items()):
            from ess.aq.native import native_library

            native_library.cache_clear()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        main = importlib.import_module(ENTRY_POINTS[req.tool]).main
    except BaseException:  # the command never started: say why on its stderr
        traceback.print_exc()
        _flush_and_exit(1)
    _run(main)


def _run(main: object) -> None:
    code = 0
    try:
        main(sys.argv[1:])  # type: ignore[operator]  # an argv: main does not hand off again
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except KeyboardInterrupt:  # as the cold command: no traceback, death by SIGINT
        _at_exit()
        _die_of_sigint()
    except BaseException:
        traceback.print_exc()
        code = 1
    if _at_exit():  # a Ctrl-C while finishing ends the command as one during its work
        _die_of_sigint()
    _flush_and_exit(code)


def _die_of_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
    _flush_and_exit(130)


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _at_exit() -> bool:
    """Run the exit functions; True when a Ctrl-C interrupted them."""
    try:
        atexit._run_exitfuncs()
    except KeyboardInterrupt:
        return True
    except BaseException:
        traceback.print_exc()
    return False


def _flush_and_exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: what a cold exit would ignore too
            code = code or 120
    os._exit(code)


def _fresh_streams() -> None:
    """sys.stdin/stdout/stderr over fds 0-2 as a starting interpreter makes them."""
    enc = sys.stdout.encoding
    stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "rb", closefd=False)), encoding=enc)
    out = io.FileIO(1, "wb", closefd=False)
    stdout = io.TextIOWrapper(io.BufferedWriter(out), encoding=enc, line_buffering=out.isatty())
    err = io.BufferedWriter(io.FileIO(2, "wb", closefd=False))
    stderr = io.TextIOWrapper(err, encoding=enc, errors="backslashreplace", line_buffering=True)
    sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = stdin, stdout, stderr  # type: ignore[misc]


def _die_with(server_pid: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != server_pid:  # the service died before prctl took effect
        os._exit(1)


def _quiet_close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)

"""What a child of the service does for each command: become it as a process start would,
run it, and turn its ending into the exit status a cold process would have had.

Shared by a freshly forked child (:mod:`ess.warm.child`) and a reused one
(:mod:`ess.warm.reuse`).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import io
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

from ess.warm.protocol import RELAYED
from ess.warm.request import Request

#: The entry points the service runs, by name (as the console scripts name them).
ENTRY_POINTS = {"aq_pp": "ess.cli.aq_pp", "aq_udb": "ess.cli.aq_udb"}
#: Variables read once when the C helper is loaded: a child that differs reloads it.
NATIVE_VARS = ("ESS_NATIVE", "ESS_NATIVE_CFLAGS", "ESS_NATIVE_DIR", "XDG_CACHE_HOME", "CC")


def take(req: Request, fds: list[int]) -> Callable[[list[str]], object]:
    """Make this process the command's (descriptors 0-2, environment, cwd, argv, streams,
    signal handlers); its entry point."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            quiet_close(fd)
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
    for sig in (*(set(RELAYED) - {signal.SIGINT}), signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    return importlib.import_module(ENTRY_POINTS[req.tool]).main


def outcome(main: Callable[[list[str]], object], exit_functions: Callable[[], bool]) -> int:
    """Run the command; its exit code as a cold process's (a Ctrl-C: this process dies of
    SIGINT here). `exit_functions` runs what the command left for its exit (True: a Ctrl-C
    came meanwhile)."""
    code = 0
    try:
        main(sys.argv[1:])  # an argv: main does not hand off again
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except KeyboardInterrupt:  # as the cold command: no traceback, death by SIGINT
        exit_functions()
        _die_of_sigint()
    except BaseException:
        traceback.print_exc()
        code = 1
    if exit_functions():  # a Ctrl-C while finishing ends the command as one during its work
        _die_of_sigint()
    return code


def _die_of_sigint() -> NoReturn:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
    flush_and_exit(130)


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def at_exit() -> bool:
    """Run the exit functions; True when a Ctrl-C interrupted them."""
    try:
        atexit._run_exitfuncs()
    except KeyboardInterrupt:
        return True
    except BaseException:
        traceback.print_exc()
    return False


def flush_and_exit(code: int) -> NoReturn:
    os._exit(flush_streams(code))


def flush_streams(code: int) -> int:
    """Flush sys.stdout/stderr as an exiting interpreter does; the exit code after that."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: what a cold exit would ignore too
            code = code or 120
    return code


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


def quiet_close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)

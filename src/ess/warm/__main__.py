"""``python -m ess.warm start|stop|status``: this user's own service, for aq_pp and aq_udb
typed in a shell (``ess stream`` and cluster workers start their own)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

from ess.warm import service
from ess.warm.paths import runtime_dir
from ess.warm.server import _answers


def _pid_file(base: str) -> str:
    return os.path.join(base, "user.pid")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in (["start"], ["stop"], ["status"]):
        print("usage: python -m ess.warm start|stop|status", file=sys.stderr)
        return 2
    base = runtime_dir(create=True)
    if base is None:
        print("ess.warm: no private runtime directory (0700, ours)", file=sys.stderr)
        return 1
    sock = os.path.join(base, "user.sock")
    pid_file = _pid_file(base)
    running = _answers(sock)
    if args == ["status"]:
        print(f"warm service: {'running' if running else 'stopped'} ({sock})")
        return 0 if running else 3
    if args == ["start"]:
        if running:
            return 0
        svc = service.start(socket=sock)
        with open(pid_file, "w") as f:
            f.write(f"{svc.pid}\n")
        return 0 if svc.ready(timeout=120) else 1
    return _stop(sock, pid_file)


def _stop(sock: str, pid_file: str) -> int:
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        pid = 0
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _answers(sock) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(OSError):
        os.unlink(pid_file)
    return 0 if not _answers(sock) else 1


if __name__ == "__main__":
    sys.exit(main())

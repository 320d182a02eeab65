"""Daemons stop themselves when the state that owns them disappears.

A scheduler or worker started by ``ess`` outlives the command that started it; what ends it is
``ess cluster stop/terminate``, which finds it through its pid file. When that file is gone —
the working directory was deleted (a temporary folder of a test or a script), or the cluster
was torn down by hand — nothing can find the daemon any more, and it would run forever. So each
daemon watches its own pid file from a background thread and exits once the file has vanished
or names another process (a newer daemon of the same name took its place).

The watch arms only after the pid file has been seen holding this process's pid: the starter
writes it just after the process starts, and daemons started by other means (a remote worker's
supervisor loop) have no such file and are left alone.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

logger = logging.getLogger("ess.engine.watchdog")

#: seconds between two looks at the pid file
INTERVAL = 2.0
#: how long a new daemon waits for its starter to write the pid file before giving up watching
ARM_WITHIN = 60.0
#: consecutive failed looks before exiting (a look never races a write: pid files are
#: replaced by rename, but one extra look costs only INTERVAL seconds)
MISSES = 2


def _holds(pid_file: Path, pid: int) -> bool:
    try:
        return int(pid_file.read_text().strip()) == pid
    except (OSError, ValueError):
        return False


def _watch(pid_file: Path, pid: int, interval: float, arm_within: float) -> None:
    deadline = time.monotonic() + arm_within
    while not _holds(pid_file, pid):
        if time.monotonic() > deadline:
            return  # not started through a pid file: nothing to watch
        time.sleep(min(interval, 0.5))
    misses = 0
    while True:
        time.sleep(interval)
        misses = 0 if _holds(pid_file, pid) else misses + 1
        if misses >= MISSES:
            break
    logger.warning("%s is gone or names another process: this daemon stops", pid_file)
    # the same end as 'ess cluster stop' (SIGTERM); SIGKILL if something holds the exit back
    os.kill(pid, signal.SIGTERM)
    time.sleep(10)
    os.kill(pid, signal.SIGKILL)


def watch_pid_file(pid_file: Path, *, interval: float = INTERVAL,
                   arm_within: float = ARM_WITHIN) -> threading.Thread:  # fmt: skip
    """Start the watch in a daemon thread; returns the thread (tests join it)."""
    thread = threading.Thread(
        target=_watch,
        args=(pid_file, os.getpid(), interval, arm_within),
        name="ess-watchdog",
        daemon=True,
    )
    thread.start()
    return thread

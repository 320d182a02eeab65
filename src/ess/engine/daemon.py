"""Start, find and stop daemon processes (scheduler, workers) by pid file.

A pid file alone is not trusted: a pid is ours only while ``/proc/PID/cmdline`` still contains
the daemon's marker (its cluster directory), so a stale pid file whose number the kernel gave to
another process is treated as "not running" and never signalled. That is what lets ``ess cluster
start`` bring back a dead daemon without anyone cleaning pid files by hand.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DaemonSpec:
    name: str
    argv: tuple[str, ...]
    pid_file: Path
    log_file: Path
    marker: str  # a string that appears in argv and identifies this daemon as ours


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _cmdline(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if not raw:  # zombie or kernel thread
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0")


def is_ours(pid: int, marker: str) -> bool:
    cmd = _cmdline(pid)
    return cmd is not None and marker in cmd


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (right after ``start`` its cmdline may still
    be empty while the kernel finishes the exec, so this does not look at the cmdline)."""
    with contextlib.suppress(ChildProcessError, OSError):
        wpid, _ = os.waitpid(pid, os.WNOHANG)
        if wpid == pid:
            return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


#: Pids this process started: until its exec completes a new daemon's cmdline reads empty.
_started: set[int] = set()


def owned(pid: int, marker: str) -> bool:
    """Ours: the marker is in its cmdline, or we just started it and it is finishing its exec."""
    if is_ours(pid, marker):
        return True
    return pid in _started and _cmdline(pid) is None and alive(pid)


def running_pid(spec: DaemonSpec) -> int | None:
    """The daemon's pid if it is alive and really ours, else None."""
    pid = read_pid(spec.pid_file)
    if pid is not None and owned(pid, spec.marker):
        return pid
    return None


def start(spec: DaemonSpec, *, env: dict[str, str] | None = None) -> int:
    """Start the daemon in its own session (it outlives this command); record its pid."""
    spec.pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(spec.log_file, "ab") as log, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(
            list(spec.argv),
            stdin=devnull,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
    _started.add(proc.pid)
    tmp = spec.pid_file.with_name(spec.pid_file.name + ".tmp")
    tmp.write_text(f"{proc.pid}\n")
    os.replace(tmp, spec.pid_file)
    # The Popen object is dropped on purpose; keep Python from warning that it still runs.
    proc.returncode = 0
    return proc.pid


def stop(spec: DaemonSpec, *, timeout: float = 5.0) -> int | None:
    """Stop the daemon (SIGTERM, then SIGKILL after ``timeout``); remove its pid file.

    Returns the pid that was stopped, or None if it was not running.
    """
    pid = running_pid(spec)
    if pid is not None:
        kill_and_wait(pid, spec.marker, timeout=timeout)
    with contextlib.suppress(FileNotFoundError):
        spec.pid_file.unlink()
    return pid


def kill_and_wait(pid: int, marker: str, *, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.02)
    if not owned(pid, marker):
        return  # gone, and the number may already belong to someone else
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect the exit status if the daemon is our own child (same process started it)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)

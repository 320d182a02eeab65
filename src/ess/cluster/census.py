"""Every ess daemon of this user on this machine, whichever work directory started it.

``ess cluster status``/``stop``/``terminate`` find a cluster's daemons through the pid files
of one work directory. A daemon whose directory was deleted, or whose pid file is gone, can no
longer be found that way; the daemons stop themselves then (:mod:`ess.engine.watchdog`), but a
stopped (SIGSTOP), wedged or older daemon does not. This module finds them by their command
lines instead: schedulers and workers (``python -m ess.engine.serve ... --cluster-dir
MARKER``) and the warm services beside the workers (``python -m ess.warm.service --socket
MARKER.warm.sock``), only among this user's processes.

A daemon is an *orphan* when the directory of its marker is gone, or, for a daemon that
``ess`` started detached (its parent is not a worker loop of a cloud or custom node), when its
pid file is gone or names another process; a warm service is one when the worker it serves
is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ess.engine.daemon import read_pid

#: seconds between SIGTERM and SIGKILL when ending daemons
STOP_WAIT = 5.0
#: seconds a new daemon is given before its missing pid file counts (its starter writes the
#: file just after the process starts)
PID_FILE_GRACE = 10.0
#: the loop script that supervises a cloud or custom node's worker (ess.cluster.bootstrap)
WORKER_LOOP = "run-worker.sh"


@dataclass(frozen=True)
class DaemonProcess:
    pid: int
    role: str  # scheduler, worker, warm
    name: str  # worker-1, scheduler, ...
    directory: str  # the cluster directory (under a work dir) holding its pid/log files
    cluster_id: str  # "-" when the directory does not say
    started: float  # epoch seconds
    rss: int  # bytes
    orphan: str | None  # why nothing can find or stop it any more, or None

    @property
    def directory_exists(self) -> bool:
        return os.path.isdir(self.directory)


def _option(argv: list[str], name: str) -> str | None:
    with contextlib.suppress(ValueError, IndexError):
        return argv[argv.index(name) + 1]
    return None


def _module(argv: list[str]) -> str | None:
    return _option(argv, "-m")


def _cluster_id(directory: str) -> str:
    try:
        with open(os.path.join(directory, "cluster.json")) as f:
            return str(json.load(f).get("id") or "-")
    except (OSError, ValueError, AttributeError):
        return "-"


def _parent_is_loop(proc: Any) -> bool:
    with contextlib.suppress(Exception):
        parent = proc.parent()
        return parent is not None and any(WORKER_LOOP in a for a in parent.cmdline())
    return False


def _daemon_orphan(proc: Any, marker: str) -> str | None:
    directory = os.path.dirname(marker)
    if not os.path.isdir(directory):
        return "work dir gone"
    if _parent_is_loop(proc):
        return None  # a node's worker loop owns it (no pid file of its own)
    if time.time() - float(proc.info.get("create_time") or 0.0) < PID_FILE_GRACE:
        return None  # just started: its pid file may not be written yet
    pid = read_pid(Path(marker + ".pid"))
    if pid is None:
        return "pid file gone"
    if pid != proc.pid:
        return f"pid file names {pid}"
    return None


def _warm_orphan(argv: list[str], marker: str) -> str | None:
    if not os.path.isdir(os.path.dirname(marker)):
        return "work dir gone"
    watched = _option(argv, "--watch-pid")
    if watched and watched.isdigit() and int(watched) > 0:
        import psutil

        if not psutil.pid_exists(int(watched)):
            return "its worker is gone"
    return None


def _describe(proc: Any) -> DaemonProcess | None:
    argv = proc.info["cmdline"] or []
    module = _module(argv)
    if module == "ess.engine.serve":
        marker = _option(argv, "--cluster-dir")
        role = next((a for a in argv if a in ("scheduler", "worker")), None)
        if not marker or role is None:
            return None
        orphan = _daemon_orphan(proc, marker)
        name = _option(argv, "--name") or os.path.basename(marker)
    elif module == "ess.warm.service":
        socket = _option(argv, "--socket") or ""
        if not socket.endswith(".warm.sock"):
            return None  # the service of one `ess stream` without a cluster: it ends with it
        marker = socket.removesuffix(".warm.sock")
        role, name = "warm", os.path.basename(marker)
        orphan = _warm_orphan(argv, marker)
    else:
        return None
    memory = proc.info.get("memory_info")
    directory = os.path.dirname(marker)
    return DaemonProcess(
        pid=proc.pid,
        role=role,
        name=name,
        directory=directory,
        cluster_id=_cluster_id(directory),
        started=float(proc.info.get("create_time") or 0.0),
        rss=int(memory.rss) if memory is not None else 0,
        orphan=orphan,
    )


def find_daemons() -> list[DaemonProcess]:
    """This user's ess daemons on this machine, by directory then pid."""
    import psutil

    uid = os.getuid()
    found = []
    for proc in psutil.process_iter(["cmdline", "uids", "create_time", "memory_info"]):
        uids = proc.info.get("uids")
        if uids is None or uids.real != uid:
            continue  # never another user's process
        with contextlib.suppress(psutil.Error):
            daemon = _describe(proc)
            if daemon is not None:
                found.append(daemon)
    return sorted(found, key=lambda d: (d.directory, d.role != "scheduler", d.name, d.pid))


def _same(daemon: DaemonProcess) -> Any:
    """The process if it is still that daemon (not a new process with a reused pid)."""
    import psutil

    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(daemon.pid)
        if abs(proc.create_time() - daemon.started) < 0.01 and proc.uids().real == os.getuid():
            return proc
    return None


def end_daemons(daemons: list[DaemonProcess], *, timeout: float = STOP_WAIT) -> list[int]:
    """SIGTERM each daemon (resumed first if it was stopped), SIGKILL those left after
    ``timeout``; returns the pids that were ended."""
    import psutil

    procs = [p for p in (_same(d) for d in daemons) if p is not None]
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
            proc.resume()  # a stopped process handles SIGTERM only once it runs again
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=timeout)
    return [p.pid for p in procs]


def age(started: float, *, now: float | None = None) -> str:
    seconds = int(max(0.0, (now or time.time()) - started))
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def mib(size: int) -> str:
    return f"{size / (1 << 20):.0f}M"

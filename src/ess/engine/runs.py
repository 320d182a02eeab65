"""Cancelled command runs, in the process that runs their pipelines (a worker, or ``ess`` itself).

Every pipeline of one ``ess stream``/``ess exec`` carries the run's id. Dask can drop a run's
queued tasks but cannot stop a task that is running, and a task holds a batch of pipelines, so
cancelling futures alone lets a run go on starting commands. Here each process keeps the ids of
the runs it was told to cancel (consulted before a pipeline starts) and the process groups of
the pipelines it is running: :func:`cancel` remembers the id and ends those groups (SIGTERM,
then SIGKILL after :data:`GRACE` seconds). Whoever cancels a run calls :func:`cancel` on every
worker (``Client.run``; the gateway does it also when its client's connection drops).
"""

from __future__ import annotations

import os
import signal
import threading
from collections import OrderedDict

from ess.errors import ClusterError

#: Set in a worker's environment: a directory that goes first on the PATH of every command the
#: worker runs, after whatever the pipeline's own environment says (the worker's warm service's
#: fast launchers: a stream on workers of this machine passes the caller's PATH, and a UDB
#: command puts its worker's tools first; both would hide them)
ENV_COMMAND_PATH = "ESS_COMMAND_PATH"
#: seconds between SIGTERM and SIGKILL of a cancelled run's process groups
GRACE = 1.0
#: cancelled run ids remembered per process (oldest forgotten first; a run id is never reused)
REMEMBERED = 4096

_lock = threading.Lock()
_cancelled: OrderedDict[str, None] = OrderedDict()
_groups: dict[str, set[int]] = {}


class RunCancelled(ClusterError):
    """The run this pipeline belongs to was cancelled before it started."""


def is_cancelled(run_id: str) -> bool:
    with _lock:
        return bool(run_id) and run_id in _cancelled


def track(run_id: str, pgid: int) -> bool:
    """Record a started pipeline's process group; False (and the group is killed) when the run
    was cancelled meanwhile, so a pipeline started during a cancel does not survive it."""
    with _lock:
        if run_id in _cancelled:
            doomed = True
        else:
            _groups.setdefault(run_id, set()).add(pgid)
            doomed = False
    if doomed:
        _end_groups([pgid])
    return not doomed


def untrack(run_id: str, pgid: int) -> None:
    with _lock:
        groups = _groups.get(run_id)
        if groups is not None:
            groups.discard(pgid)
            if not groups:
                del _groups[run_id]


def cancel(run_id: str) -> int:
    """Cancel ``run_id`` in this process: no pipeline of it starts from now on, and the running
    ones' process groups are ended. Returns how many groups were signalled."""
    if not run_id:
        return 0
    with _lock:
        _cancelled[run_id] = None
        while len(_cancelled) > REMEMBERED:
            _cancelled.popitem(last=False)
        groups = sorted(_groups.pop(run_id, ()))
    _end_groups(groups)
    return len(groups)


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _end_groups(groups: list[int]) -> None:
    """SIGTERM now, SIGKILL after GRACE (on a timer thread: callers include event loops)."""
    alive = [g for g in groups if _signal_group(g, signal.SIGTERM)]
    if alive:
        timer = threading.Timer(GRACE, _kill_groups, args=(alive,))
        timer.daemon = True
        timer.start()


def _kill_groups(groups: list[int]) -> None:
    for g in groups:
        _signal_group(g, signal.SIGKILL)

"""The entry of stream/exec/file: the platform's running cluster as a task pool."""

from __future__ import annotations

from ess.cluster.provider import provider_for
from ess.engine.pool import TaskPool
from ess.engine.session import pool_for
from ess.workspace import Workspace


def open_pool(ws: Workspace, *, master: bool = False, threads: int | None = None) -> TaskPool:
    """``master``: this machine only, ``threads`` at a time (default 1, Essentia's sequential
    local mode). Otherwise the platform's running cluster (dead daemons are revived first), or,
    with no cluster running, this machine with one task per core."""
    if master:
        return pool_for(None, master=True, threads=threads)
    return pool_for(provider_for(ws).connection(revive=True), threads=threads)

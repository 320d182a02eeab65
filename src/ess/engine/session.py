"""Choose where a command's tasks run: the running cluster, or this machine's cores."""

from __future__ import annotations

import os

from ess.cluster.provider import provider_for
from ess.engine.pool import DaskPool, LocalPool, TaskPool
from ess.workspace import Workspace


def open_pool(ws: Workspace, *, master: bool = False, threads: int | None = None) -> TaskPool:
    """``master``: this machine only, ``threads`` at a time (default 1, Essentia's sequential
    local mode). Otherwise the platform's running cluster (dead daemons are revived first), or,
    with no cluster running, this machine with one task per core."""
    if master:
        return LocalPool(threads=threads or 1)
    conn = provider_for(ws).connection(revive=True)
    if conn is None:
        return LocalPool(threads=threads or os.cpu_count() or 1)
    from ess.engine.client import connect

    return DaskPool(connect(conn), shared_filesystem=conn.shared_filesystem, threads=threads)

"""Choose where a command's tasks run: a running cluster, or this machine's cores.

Which cluster is running is the providers' business (``provider_for(ws).connection()``
asks the platform for its :class:`Connection`); from there on everything is the engine's.
"""

from __future__ import annotations

import os

from ess.engine.connection import Connection
from ess.engine.pool import LocalPool, TaskPool


def pool_for(
    conn: Connection | None, *, master: bool = False, threads: int | None = None
) -> TaskPool:
    """``master``: this machine only, ``threads`` at a time (default 1, Essentia's sequential
    local mode). Otherwise the cluster of ``conn``, or, with none (no cluster running), this
    machine with one task per core."""
    if master:
        return LocalPool(threads=threads or 1)
    if conn is None:
        return LocalPool(threads=threads or os.cpu_count() or 1)
    return cluster_pool(conn, threads=threads)


def cluster_pool(conn: Connection, *, threads: int | None = None) -> TaskPool:
    """Through the scheduler's gateway when it answers (no Dask import here), else a Dask
    client."""
    from ess.engine.gateway import GatewayPool, gateway_file

    path = gateway_file(conn.tls)
    # a cluster someone else runs (external TLS files) has no gateway of ours
    if conn.tls.external is None and path.exists() and not os.environ.get("ESS_NO_GATEWAY"):
        try:
            return GatewayPool(
                path,
                conn.tls,
                expected_workers=conn.worker_names,
                shared_filesystem=conn.shared_filesystem,
                threads=threads,
            )
        except (OSError, ConnectionError, ValueError, TimeoutError):
            pass  # no gateway listening (older daemon, or it died): use a Dask client
    from ess.engine.client import connect
    from ess.engine.pool import DaskPool

    return DaskPool(connect(conn), shared_filesystem=conn.shared_filesystem, threads=threads)

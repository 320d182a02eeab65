"""Connect a Dask client to a cluster's scheduler over mutual TLS."""

from __future__ import annotations

import logging
from typing import Any

from ess.cluster.provider import Connection
from ess.errors import ClusterError


def _quiet_logs() -> None:
    # The client runs inside the user's command: Dask's informational logging (and warnings
    # about a worker that was just killed and whose tasks are being re-run) are not for them.
    for name in ("distributed", "distributed.client", "distributed.worker", "tornado"):
        logging.getLogger(name).setLevel(logging.ERROR)


def connect(conn: Connection, *, timeout: float = 30.0) -> Any:
    """A ``distributed.Client`` for ``conn`` once all its workers have registered."""
    import dask
    from distributed import Client

    _quiet_logs()
    dask.config.set({"distributed.comm.timeouts.connect": f"{timeout}s"})
    try:
        client = Client(
            conn.address,
            security=conn.tls.dask_security("client"),
            timeout=timeout,
            set_as_default=False,
        )
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"cannot connect to the scheduler of cluster {conn.cluster_id} at {conn.address}: {exc}"
        ) from exc
    try:
        client.wait_for_workers(len(conn.worker_names), timeout=timeout)
    except (TimeoutError, OSError) as exc:
        have = len(client.scheduler_info(n_workers=-1)["workers"])
        client.close()
        raise ClusterError(
            f"cluster {conn.cluster_id}: {have} of {len(conn.worker_names)} "
            f"workers registered after {timeout:.0f} s"
        ) from exc
    return client

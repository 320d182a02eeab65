"""Connect a Dask client to a cluster's scheduler over mutual TLS: the one place a
``distributed.Client`` is made (task pools, the UDB session, the providers' status checks)."""

from __future__ import annotations

import logging
import warnings
from typing import Any, Literal

from ess.engine.connection import Connection
from ess.errors import ClusterError

#: "all": wait for every expected worker, fail naming how many came; "try": wait, but a worker
#: still missing is left for the caller to report; "none": do not wait.
WaitMode = Literal["all", "try", "none"]


class SchedulerUnreachable(ClusterError):
    """The scheduler did not answer; ``reason`` is the network's own word for it."""

    def __init__(self, message: str, *, reason: BaseException) -> None:
        super().__init__(message)
        self.reason = reason


def quiet_logs() -> None:
    # The client runs inside the user's command: Dask's informational logging (and warnings
    # about a worker that was just killed and whose tasks are being re-run) are not for them.
    for name in ("distributed", "distributed.client", "distributed.worker", "tornado"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # When a worker dies mid-gather, Dask's client leaves a task whose AllExit nobody retrieves;
    # asyncio then logs "Task exception was never retrieved" with a traceback on the user's
    # stderr. The failure itself reaches us through the gather; the log line is noise.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)


def connect(
    conn: Connection,
    *,
    timeout: float = 30.0,
    wait: WaitMode = "all",
    wait_timeout: float | None = None,
    hide_version_warnings: bool = False,
) -> Any:
    """A ``distributed.Client`` for ``conn`` (by default once all its workers have registered).

    ``hide_version_warnings``: a host's Python patch level may differ from the master's
    (custom clusters); Dask's version table on stderr of every aq_pp/aq_udb is noise there.
    """
    import dask
    from distributed import Client

    quiet_logs()
    dask.config.set({"distributed.comm.timeouts.connect": f"{timeout}s"})
    try:
        with warnings.catch_warnings():
            if hide_version_warnings:
                warnings.simplefilter("ignore")
            client = Client(
                conn.address,
                security=conn.tls.dask_security("client"),
                timeout=timeout,
                set_as_default=False,
            )
    except (OSError, TimeoutError) as exc:
        raise SchedulerUnreachable(
            f"cannot connect to the scheduler of cluster {conn.cluster_id} at {conn.address}: "
            f"{exc}",
            reason=exc,
        ) from exc
    if wait != "none":
        _wait_for_workers(
            client, conn, wait=wait, timeout=timeout if wait_timeout is None else wait_timeout
        )
    return client


def _wait_for_workers(client: Any, conn: Connection, *, wait: WaitMode, timeout: float) -> None:
    try:
        client.wait_for_workers(len(conn.worker_names), timeout=timeout)
    except (TimeoutError, OSError) as exc:
        if wait == "try":
            return
        have = len(client.scheduler_info(n_workers=-1)["workers"])
        client.close()
        raise ClusterError(
            f"cluster {conn.cluster_id}: {have} of {len(conn.worker_names)} "
            f"workers registered after {timeout:.0f} s"
        ) from exc


def joined_workers(client: Any) -> dict[str, str]:
    """Worker name -> address of the workers registered with the scheduler."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return {str(info.get("name", addr)): addr for addr, info in workers.items()}

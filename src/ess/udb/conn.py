"""The cluster a command run by ``ess stream``/``ess exec`` on a worker of another machine
belongs to, from the variables :func:`ess.udb.remote.command_env` set (see that module)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

from ess.engine.connection import Connection
from ess.engine.security import TlsFiles
from ess.errors import EssError
from ess.workspace import Workspace

ENV_ADDRESS = "ESS_SCHEDULER_ADDRESS"
ENV_TLS_DIR = "ESS_TLS_DIR"
ENV_WORKERS = "ESS_CLUSTER_WORKERS"
ENV_CLUSTER = "ESS_CLUSTER_ID"
#: The worker's own CA, certificate and key files (os.pathsep-separated): a worker of a cluster
#: someone else runs (the dask platform) keeps them under names of its own.
ENV_TLS_FILES = "ESS_TLS_FILES"
#: How long an operation waits for a dead worker it needs to come back (revived).
REVIVE_WAIT = 30.0
#: How long one UDB task may run before the operation fails.
TASK_TIMEOUT = 600.0


def connection_from_env(environ: Mapping[str, str] | None = None) -> Connection | None:
    """The cluster a command on a remote worker belongs to, or None outside such a command."""
    env = os.environ if environ is None else environ
    address, tls_dir = env.get(ENV_ADDRESS, ""), env.get(ENV_TLS_DIR, "")
    if not address or not tls_dir:
        return None
    names = tuple(n for n in env.get(ENV_WORKERS, "").split(",") if n)
    files = [Path(f) for f in env.get(ENV_TLS_FILES, "").split(os.pathsep) if f]
    external = (files[0], files[1], files[2]) if len(files) == 3 else None
    return Connection(
        cluster_id=env.get(ENV_CLUSTER, "") or address,
        address=address,
        tls=TlsFiles(Path(tls_dir), client_identity="worker", external=external),
        worker_names=names,
        shared_filesystem=False,
    )


def revive(ws: Workspace) -> None:
    """Restart dead daemons of this work directory's cluster (a no-op where the platform
    cannot, e.g. a command on a worker of another machine)."""
    if connection_from_env() is not None:
        return
    from ess.cluster.provider import provider_for

    with contextlib.suppress(EssError):
        provider_for(ws).connection(revive=True)

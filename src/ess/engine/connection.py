"""How to reach the Dask scheduler of a running cluster: the engine's side of every platform.

The cluster providers (:mod:`ess.cluster`) make a :class:`Connection`; the engine (task pools,
the UDB session, the providers' own status checks) turns it into a Dask client with
:func:`ess.engine.client.connect`. Living here, below the providers, it lets the engine run a
cluster without knowing which platform made it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ess.engine.security import TlsFiles


@dataclass(frozen=True)
class Connection:
    """How to reach the Dask scheduler of a running cluster."""

    cluster_id: str
    address: str
    tls: TlsFiles
    worker_names: tuple[str, ...]
    #: Workers see the master's files and current directory (local clusters): commands run in
    #: the caller's directory and ``ess file`` operations need only be done once.
    shared_filesystem: bool

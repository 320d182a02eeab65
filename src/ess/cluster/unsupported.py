"""A base for platforms registered before they are implemented (none at the moment: ``cloud``
is in ec2.py, ``custom`` in custom.py).

Such a placeholder lets ``ess cluster set NAME`` work while every operation fails with a clear
NotSupportedError instead of silently running somewhere else.
"""

from __future__ import annotations

from ess.cluster.provider import (
    CloudAuth,
    ClusterProvider,
    ClusterStatus,
    Connection,
    CreateOptions,
)
from ess.errors import NotSupportedError


class _NotYet(ClusterProvider):
    def _no(self, what: str) -> NotSupportedError:
        return NotSupportedError(f"ess cluster {what} ({self.platform} clusters)")

    def create(self, options: CreateOptions) -> ClusterStatus:
        raise self._no("create")

    def start(self, auth: CloudAuth) -> ClusterStatus:
        raise self._no("start")

    def stop(self, auth: CloudAuth) -> None:
        raise self._no("stop")

    def terminate(self, *, forget: bool, auth: CloudAuth) -> None:
        raise self._no("terminate")

    def status(self) -> ClusterStatus:
        raise self._no("status")

    def reset(self) -> None:
        raise self._no("reset")

    def iplist(self, *, kind: str | None = None) -> list[str]:
        raise self._no("iplist")

    def connection(self, *, revive: bool = True) -> Connection | None:
        raise NotSupportedError(f"running commands on {self.platform} clusters")

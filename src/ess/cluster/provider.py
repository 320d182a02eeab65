"""The ``ClusterProvider`` interface, its registry, and the platform choice (``.platform``).

A provider knows how to create, start, stop and describe the nodes of one kind of cluster and
how to reach its Dask scheduler. The command line only ever calls :func:`provider_for`, so a new
provider (EC2, SSH) plugs in by subclassing and registering, never by ``if platform == ...``.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, TypeVar

from ess.engine.connection import Connection
from ess.errors import ConfigError, NotSupportedError
from ess.workspace import Workspace, locked, write_bytes_atomic

DEFAULT_PLATFORM = "local"


@dataclass(frozen=True)
class NodeStatus:
    """One row of ``ess cluster status``."""

    id: str
    state: str
    public_ip: str
    private_ip: str
    cpu: str
    mem: str
    disk: str
    reservation: str | None = None  # cloud providers only
    version: str | None = None  # providers that install ess on remote nodes


@dataclass(frozen=True)
class ClusterStatus:
    cluster_id: str
    nodes: tuple[NodeStatus, ...]
    problems: tuple[str, ...] = ()  # e.g. "worker-2 is not running (pid 123 died)"


@dataclass(frozen=True)
class CloudAuth:
    """AWS credentials given on the command line; ``repr`` never shows the secret."""

    credentials_file: Path | None = None
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class CreateOptions:
    number: int | None = None
    instance_type: str | None = None
    add: bool = False
    auth: CloudAuth = field(default_factory=CloudAuth)
    error_return_code: bool = False


@dataclass(frozen=True)
class AttachOptions:
    """Where a cluster someone else runs is (``ess cluster set dask --scheduler ...``)."""

    scheduler: str | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def given(self) -> bool:
        values = (self.scheduler, self.tls_ca, self.tls_cert, self.tls_key)
        return any(v is not None for v in values)


class ClusterProvider(ABC):
    """One kind of cluster. Methods raise ``EssError`` subclasses, never print."""

    platform: ClassVar[str]
    #: True when the provider keeps the cluster alive by itself (local daemons); False when
    #: ``create/stop/start/terminate`` do not apply (custom clusters are the user's machines).
    manages_nodes: ClassVar[bool] = True

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    @abstractmethod
    def create(self, options: CreateOptions) -> ClusterStatus: ...

    @abstractmethod
    def start(self, auth: CloudAuth) -> ClusterStatus: ...

    @abstractmethod
    def stop(self, auth: CloudAuth) -> None: ...

    @abstractmethod
    def terminate(self, *, forget: bool, auth: CloudAuth) -> None: ...

    @abstractmethod
    def status(self) -> ClusterStatus: ...

    @abstractmethod
    def reset(self) -> None: ...

    @abstractmethod
    def iplist(self, *, kind: str | None = None) -> list[str]:
        """Worker addresses; ``kind`` is "private", "public" or None (both, private first)."""

    @abstractmethod
    def connection(self, *, revive: bool = True) -> Connection | None:
        """The running cluster to use for stream/exec, or None to run on this machine.

        With ``revive`` a daemon that died is restarted first (supervision).
        """

    def configure(self, options: AttachOptions) -> None:
        """``ess cluster set PLATFORM [options]``: record the platform's settings."""
        if options.given():
            raise ConfigError(
                f"--scheduler and --tls-* attach a cluster someone else runs: "
                f"'ess cluster set dask ...', not {self.platform}"
            )

    def add(self, reservations: list[str]) -> ClusterStatus:
        raise NotSupportedError(f"ess cluster add ({self.platform} clusters)")

    def remove(self, reservations: list[str]) -> ClusterStatus:
        raise NotSupportedError(f"ess cluster remove ({self.platform} clusters)")

    def names_after_removal(self, reservations: list[str]) -> dict[str, str | None]:
        """What ``remove(reservations)`` will do to the running workers' names: current name
        → name afterwards (None: the worker leaves). Lets the UDB drain them first
        (:mod:`ess.udb.drain`); raises like ``remove`` on unknown reservations."""
        return {}


P = TypeVar("P", bound=type[ClusterProvider])
_REGISTRY: dict[str, type[ClusterProvider]] = {}


def register_provider(cls: P) -> P:
    _REGISTRY[cls.platform] = cls
    return cls


#: Where each built-in platform's provider lives. Only the platform in use is imported: the EC2
#: and SSH providers pull in boto3 and asyncssh, which every other command should not pay for.
_BUILTIN_MODULES = {
    "local": "ess.cluster.local",
    "cloud": "ess.cluster.ec2",
    "custom": "ess.cluster.custom",
    "dask": "ess.cluster.attached",
}


def _load_provider(name: str) -> None:
    module = _BUILTIN_MODULES.get(name)
    if module is not None and name not in _REGISTRY:
        importlib.import_module(module)  # registers itself with @register_provider


def platforms() -> list[str]:
    return sorted(set(_BUILTIN_MODULES) | set(_REGISTRY))


def platform_file(ws: Workspace) -> Path:
    return ws.work_dir / ".platform"


def current_platform(ws: Workspace) -> str:
    try:
        name = platform_file(ws).read_text().strip()
    except FileNotFoundError:
        return DEFAULT_PLATFORM
    return name or DEFAULT_PLATFORM


def set_platform(ws: Workspace, name: str, options: AttachOptions | None = None) -> None:
    """Choose the platform; its settings (``options``) are checked and kept first, so a
    refused setting leaves the platform as it was."""
    if name not in platforms():
        raise ConfigError(f"unknown platform {name!r} (choose from {', '.join(platforms())})")
    provider_for(ws, name).configure(options or AttachOptions())
    path = platform_file(ws)
    with locked(path):
        write_bytes_atomic(path, f"{name}\n".encode())


def provider_for(ws: Workspace, platform: str | None = None) -> ClusterProvider:
    name = platform or current_platform(ws)
    _load_provider(name)
    factory: Callable[[Workspace], ClusterProvider] | None = _REGISTRY.get(name)
    if factory is None:
        raise ConfigError(f"{platform_file(ws)}: unknown platform {name!r}")
    return factory(ws)

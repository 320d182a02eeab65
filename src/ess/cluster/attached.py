"""The ``dask`` platform: a Dask cluster someone else runs (Kubernetes, HPC, dask-gateway).

``ess cluster set dask --scheduler tls://HOST:PORT --tls-ca CA --tls-cert CERT --tls-key KEY``
records where the scheduler is and which files prove who we are, in
``<ESS_WORK_DIR>/dask/cluster.json`` (paths only: the key stays where the user keeps it, and
must be readable by its owner alone). From then on stream, exec, file and the UDB run on that
cluster's workers.

The cluster is not ours: creating, resizing, stopping or terminating it is done with the tools
that run it, so those commands refuse. Its workers have no ess state and are taken not to share
this machine's disk (like EC2 and SSH workers): commands get the UDB definitions shipped with
them (:mod:`ess.udb.remote`), local input files are read here and sent. The workers (and the
scheduler, which runs the UDB's checks) need the ess package installed, same version.
"""

from __future__ import annotations

import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ess.cluster.provider import (
    AttachOptions,
    CloudAuth,
    ClusterProvider,
    ClusterStatus,
    CreateOptions,
    NodeStatus,
    register_provider,
)
from ess.engine.connection import Connection
from ess.engine.security import TlsFiles
from ess.errors import ClusterError, ConfigError, EssError, NotSupportedError
from ess.workspace import read_json, write_json_atomic

CONNECT_TIMEOUT = 30.0


class NotOurCluster(NotSupportedError):
    """A command that makes, resizes or stops machines, asked of a cluster someone else runs."""

    def __init__(self, command: str) -> None:
        EssError.__init__(
            self,
            f"ess cluster {command}: the dask platform attaches to a cluster you run; "
            "start, resize and stop it with the tools that run it (see docs/cluster.md)",
        )


@dataclass(frozen=True)
class AttachedState:
    scheduler: str
    tls_ca: Path
    tls_cert: Path
    tls_key: Path

    @property
    def cluster_id(self) -> str:
        """A name fit for paths (the UDB's snapshot directory on the workers)."""
        where = urlsplit(self.scheduler).netloc or self.scheduler
        return "dask-" + re.sub(r"[^A-Za-z0-9.]+", "-", where).strip("-")

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles.of_files(ca=self.tls_ca, cert=self.tls_cert, key=self.tls_key)

    def to_json(self) -> dict[str, str]:
        return {
            "scheduler": self.scheduler,
            "tls_ca": str(self.tls_ca),
            "tls_cert": str(self.tls_cert),
            "tls_key": str(self.tls_key),
        }


def check_options(options: AttachOptions) -> AttachedState:
    """The state ``options`` describe, or a clear error naming the option at fault."""
    missing = [
        flag
        for flag, value in (
            ("--scheduler tls://HOST:PORT", options.scheduler),
            ("--tls-ca CA", options.tls_ca),
            ("--tls-cert CERT", options.tls_cert),
            ("--tls-key KEY", options.tls_key),
        )
        if value is None
    ]
    if missing:
        raise ConfigError(f"ess cluster set dask: missing {' '.join(missing)}")
    assert options.scheduler and options.tls_ca and options.tls_cert and options.tls_key
    url = urlsplit(options.scheduler)
    if url.scheme != "tls" or not url.hostname or url.port is None:
        raise ConfigError(
            f"--scheduler {options.scheduler}: expected tls://HOST:PORT (ess talks to "
            "schedulers over mutual TLS only)"
        )
    files = {}
    for flag, path in (
        ("--tls-ca", options.tls_ca),
        ("--tls-cert", options.tls_cert),
        ("--tls-key", options.tls_key),
    ):
        full = path.expanduser().resolve()
        if not full.is_file():
            raise ConfigError(f"{flag} {path}: no such file")
        files[flag] = full
    mode = stat.S_IMODE(files["--tls-key"].stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"--tls-key {options.tls_key}: the key is readable by others (mode {mode:04o}); "
            f"'chmod 600 {options.tls_key}' first"
        )
    return AttachedState(
        scheduler=options.scheduler,
        tls_ca=files["--tls-ca"],
        tls_cert=files["--tls-cert"],
        tls_key=files["--tls-key"],
    )


@register_provider
class AttachedProvider(ClusterProvider):
    platform = "dask"
    manages_nodes = False

    @property
    def directory(self) -> Path:
        return (self.ws.work_dir / "dask").resolve()

    @property
    def state_file(self) -> Path:
        return self.directory / "cluster.json"

    def load_state(self) -> AttachedState | None:
        data = read_json(self.state_file)
        if data is None:
            return None
        try:
            return AttachedState(
                scheduler=str(data["scheduler"]),
                tls_ca=Path(data["tls_ca"]),
                tls_cert=Path(data["tls_cert"]),
                tls_key=Path(data["tls_key"]),
            )
        except (KeyError, TypeError) as exc:
            raise ClusterError(f"{self.state_file}: corrupt cluster state ({exc})") from exc

    def _require_state(self) -> AttachedState:
        state = self.load_state()
        if state is None:
            raise ConfigError(
                "no dask cluster attached here; 'ess cluster set dask --scheduler "
                "tls://HOST:PORT --tls-ca CA --tls-cert CERT --tls-key KEY' attaches one"
            )
        return state

    def configure(self, options: AttachOptions) -> None:
        if not options.given() and self.load_state() is not None:
            return  # 'ess cluster set dask' again: keep the attached cluster
        write_json_atomic(self.state_file, check_options(options).to_json())

    # -- the scheduler's view ------------------------------------------------------------------
    def _client(self, state: AttachedState) -> Any:
        from ess.engine.client import connect

        conn = Connection(
            cluster_id=state.cluster_id,
            address=state.scheduler,
            tls=state.tls,
            worker_names=(),
            shared_filesystem=False,
        )
        return connect(conn, timeout=CONNECT_TIMEOUT, wait="none")

    def _workers(self, state: AttachedState) -> dict[str, dict[str, Any]]:
        """Worker address -> the scheduler's record of it."""
        client = self._client(state)
        try:
            return dict(client.scheduler_info(n_workers=-1)["workers"])
        finally:
            client.close()

    # -- interface -----------------------------------------------------------------------------
    def connection(self, *, revive: bool = True) -> Connection:
        state = self._require_state()
        workers = self._workers(state)
        if not workers:
            raise ClusterError(f"the dask cluster at {state.scheduler} has no workers")
        names = tuple(sorted(str(w.get("name", a)) for a, w in workers.items()))
        return Connection(
            cluster_id=state.cluster_id,
            address=state.scheduler,
            tls=state.tls,
            worker_names=names,
            shared_filesystem=False,
        )

    def status(self) -> ClusterStatus:
        state = self._require_state()
        host = urlsplit(state.scheduler).hostname or "-"
        rows = [NodeStatus("scheduler", "running", host, host, "-", "-", "-")]
        workers = self._workers(state)
        for address, info in sorted(workers.items(), key=lambda kv: str(kv[1].get("name"))):
            rows.append(_worker_row(address, info))
        problems = () if workers else (f"the dask cluster at {state.scheduler} has no workers",)
        return ClusterStatus(cluster_id=state.cluster_id, nodes=tuple(rows), problems=problems)

    def iplist(self, *, kind: str | None = None) -> list[str]:
        state = self._require_state()
        return sorted({urlsplit(a).hostname or a for a in self._workers(state)})

    def reset(self) -> None:
        """Forget the attached cluster (it keeps running: it is not ours)."""
        shutil.rmtree(self.directory, ignore_errors=True)

    def create(self, options: CreateOptions) -> ClusterStatus:
        raise NotOurCluster("create")

    def start(self, auth: CloudAuth) -> ClusterStatus:
        raise NotOurCluster("start")

    def stop(self, auth: CloudAuth) -> None:
        raise NotOurCluster("stop")

    def terminate(self, *, forget: bool, auth: CloudAuth) -> None:
        raise NotOurCluster("terminate")

    def add(self, reservations: list[str]) -> ClusterStatus:
        raise NotOurCluster("add")

    def remove(self, reservations: list[str]) -> ClusterStatus:
        raise NotOurCluster("remove")

    def names_after_removal(self, reservations: list[str]) -> dict[str, str | None]:
        raise NotOurCluster("remove")


def _worker_row(address: str, info: dict[str, Any]) -> NodeStatus:
    """A worker as the scheduler reports it: CPU and memory use from its last heartbeat."""
    host = urlsplit(address).hostname or address
    metrics = info.get("metrics") or {}
    limit = info.get("memory_limit") or 0
    used = metrics.get("memory")
    mem = f"{100 * used / limit:.1f}" if used is not None and limit else "-"
    cpu = metrics.get("cpu")
    return NodeStatus(
        id=str(info.get("name", address)),
        state=str(info.get("status", "running")).removeprefix("Status."),
        public_ip=host,
        private_ip=host,
        cpu=f"{cpu:.1f}" if isinstance(cpu, int | float) else "-",
        mem=mem,
        disk="-",
    )

"""Local clusters: a TLS Dask scheduler and N worker processes on this machine, as daemons.

State lives in ``<ESS_WORK_DIR>/cluster/``: ``cluster.json`` (id, port, number of workers,
stopped flag; no secrets), ``tls/`` (the cluster CA and certificates, keys 0600), and a
``NAME.pid`` / ``NAME.log`` pair per daemon (``scheduler``, ``worker-1`` ... ``worker-N``).
Everything binds to 127.0.0.1.

Supervision: :meth:`LocalProvider.connection` (used by every command that needs the cluster)
and ``ess cluster start`` restart whichever daemon is not running, under a lock, so a crashed
scheduler or worker never needs manual pid-file cleanup.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ess.cluster.daemons import DaemonCluster, free_port
from ess.cluster.provider import (
    CloudAuth,
    ClusterProvider,
    ClusterStatus,
    CreateOptions,
    NodeStatus,
    register_provider,
)
from ess.engine import daemon
from ess.engine.connection import Connection
from ess.engine.security import TlsFiles
from ess.errors import ClusterError
from ess.workspace import read_json, write_json_atomic

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class LocalState:
    id: str
    workers: int
    port: int
    stopped: bool = False


def worker_name(index: int) -> str:
    return f"worker-{index}"


@register_provider
class LocalProvider(ClusterProvider):
    platform = "local"

    # -- files ---------------------------------------------------------------------------------
    @property
    def core(self) -> DaemonCluster:
        return DaemonCluster.at(self.ws.work_dir / "cluster", lock_name="daemons")

    @property
    def directory(self) -> Path:
        return self.core.directory

    @property
    def state_file(self) -> Path:
        return self.directory / "cluster.json"

    @property
    def tls(self) -> TlsFiles:
        return self.core.tls

    def load_state(self) -> LocalState | None:
        data = read_json(self.state_file)
        if not data:
            return None
        try:
            return LocalState(
                id=str(data["id"]),
                workers=int(data["workers"]),
                port=int(data["port"]),
                stopped=bool(data.get("stopped", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ClusterError(f"{self.state_file}: corrupt cluster state ({exc})") from exc

    def _save(self, state: LocalState) -> None:
        write_json_atomic(self.state_file, asdict(state))

    # -- daemons: the nodes of a local cluster are processes of this machine -------------------
    def specs(self, state: LocalState) -> list[daemon.DaemonSpec]:
        core = self.core
        scheduler = f"tls://{LOOPBACK}:{state.port}"
        return [core.scheduler_spec(LOOPBACK, state.port)] + [
            core.worker_spec(worker_name(i), host=LOOPBACK, scheduler=scheduler)
            for i in range(1, state.workers + 1)
        ]

    def _revive(self, state: LocalState) -> list[str]:
        sched, *workers = self.specs(state)
        return self.core.revive(sched, workers)

    def _connection(self, state: LocalState) -> Connection:
        names = tuple(worker_name(i) for i in range(1, state.workers + 1))
        return self.core.connection(state.id, worker_names=names, shared_filesystem=True)

    def _wait_for_workers(self, conn: Connection) -> None:
        from ess.engine.client import connect

        client = connect(conn, timeout=START_TIMEOUT)
        client.close()

    # -- interface -----------------------------------------------------------------------------
    def create(self, options: CreateOptions) -> ClusterStatus:
        number = options.number if options.number is not None else (os.cpu_count() or 1)
        if number < 1:
            raise ClusterError("--number must be at least 1")
        with self.core.lock():
            state = self.load_state()
            if state is not None and not options.add:
                raise ClusterError(
                    f"cluster {state.id} already exists in {self.directory}; use "
                    "'ess cluster start', 'ess cluster create --add', or "
                    "'ess cluster terminate' first"
                )
            if state is None:
                cluster_id = f"local-{secrets.token_hex(4)}"
                self.core.create_tls(cluster_id=cluster_id, hosts=(LOOPBACK,))
                state = LocalState(id=cluster_id, workers=number, port=free_port(LOOPBACK))
            else:
                state = replace(state, workers=state.workers + number, stopped=False)
            self._save(state)
            try:
                self._revive(state)
            except BaseException:
                self._stop_all(state)
                raise
        self._wait_for_workers(self._connection(state))
        return self.status()

    def start(self, auth: CloudAuth) -> ClusterStatus:
        state = self._require_state()
        with self.core.lock():
            state = replace(state, stopped=False)
            self._save(state)
            self._revive(state)
        self._wait_for_workers(self._connection(state))
        return self.status()

    def _stop_all(self, state: LocalState) -> None:
        sched, *workers = self.specs(state)
        for spec in [*workers, sched]:
            daemon.stop(spec)

    def stop(self, auth: CloudAuth) -> None:
        state = self._require_state()
        with self.core.lock():
            self._stop_all(state)
            self._save(replace(state, stopped=True))

    def terminate(self, *, forget: bool, auth: CloudAuth) -> None:
        state = self.load_state()
        if state is None:
            return
        with self.core.lock():
            self._stop_all(state)
            shutil.rmtree(self.directory, ignore_errors=True)

    def reset(self) -> None:
        self.terminate(forget=True, auth=CloudAuth())

    def iplist(self, *, kind: str | None = None) -> list[str]:
        state = self.load_state()
        return [LOOPBACK] * state.workers if state is not None else []

    def connection(self, *, revive: bool = True) -> Connection | None:
        state = self.load_state()
        if state is None or state.stopped:
            return None
        if revive:
            specs = self.specs(state)
            if any(daemon.running_pid(s) is None for s in specs):
                with self.core.lock():
                    self._revive(state)
        return self._connection(state)

    def status(self) -> ClusterStatus:
        from ess.cluster.metrics import sample

        state = self.load_state()
        if state is None:
            # Essentia's local mode: the master alone; stream/exec run on it.
            m = sample({"scheduler": os.getpid()}, work_dir=self.ws.work_dir)["scheduler"]
            master = NodeStatus(
                id="master",
                state="running",
                public_ip=LOOPBACK,
                private_ip=LOOPBACK,
                cpu=m.cpu,
                mem=m.mem,
                disk=m.disk,
            )
            return ClusterStatus(cluster_id="local", nodes=(master,))

        pids: dict[str, int | None] = {s.name: daemon.running_pid(s) for s in self.specs(state)}
        metrics = sample(pids, work_dir=self.directory)
        nodes, problems = [], []
        for name, pid in pids.items():
            if state.stopped:
                st = "stopped"
            elif pid is None:
                st = "dead"
                problems.append(
                    f"{name} is not running (see {self.directory / name}.log); "
                    "'ess cluster start' restarts it"
                )
            else:
                st = "running"
            m = metrics[name]
            nodes.append(
                NodeStatus(
                    id="master" if name == "scheduler" else name,
                    state=st,
                    public_ip=LOOPBACK,
                    private_ip=LOOPBACK,
                    cpu=m.cpu,
                    mem=m.mem,
                    disk=m.disk,
                )
            )
        return ClusterStatus(cluster_id=state.id, nodes=tuple(nodes), problems=tuple(problems))

    def _require_state(self) -> LocalState:
        state = self.load_state()
        if state is None:
            raise ClusterError(
                "no local cluster here; create one with 'ess cluster create --number N'"
            )
        return state

    def pids(self) -> dict[str, int | None]:
        """Pids of the running daemons (tests and ``status`` use them)."""
        state = self._require_state()
        return {s.name: daemon.running_pid(s) for s in self.specs(state)}

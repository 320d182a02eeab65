"""The daemon-cluster core: what every platform that runs its scheduler on this machine shares.

A platform (local processes, EC2 instances, SSH hosts) differs only in how it provisions worker
nodes and starts a process on them. The rest is here, once:

* the directory layout, ``<ESS_WORK_DIR>/<platform dir>/``: ``tls/`` (the cluster CA and
  certificates, keys 0600), ``scheduler.address``, ``gateway.address``, a ``NAME.pid`` /
  ``NAME.log`` pair per daemon started here, and the state lock;
* the daemons' command lines (``python -m ess.engine.serve scheduler|worker ...``);
* starting the scheduler and waiting until it listens, reviving dead daemons;
* the :class:`~ess.engine.connection.Connection` the engine connects with;
* the master's row of ``ess cluster status``.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ess.cluster.provider import NodeStatus
from ess.engine import daemon
from ess.engine.connection import Connection
from ess.engine.security import TlsFiles, create_tls
from ess.errors import ClusterError
from ess.workspace import locked

SCHEDULER_START_TIMEOUT = 60.0


@dataclass(frozen=True)
class DaemonCluster:
    """The files of one cluster whose scheduler runs on this machine, and its daemons."""

    directory: Path
    #: name of the lock file guarding the state (kept per platform: "daemons" for local)
    lock_name: str = "cluster"

    @classmethod
    def at(cls, directory: Path, *, lock_name: str = "cluster") -> DaemonCluster:
        return cls(directory.resolve(), lock_name=lock_name)

    # -- layout --------------------------------------------------------------------------------
    @property
    def tls(self) -> TlsFiles:
        return TlsFiles(self.directory / "tls")

    @property
    def address_file(self) -> Path:
        return self.directory / "scheduler.address"

    @property
    def gateway_file(self) -> Path:
        from ess.engine.gateway import gateway_file

        return gateway_file(self.tls)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        with locked(self.directory / self.lock_name):
            yield

    def create_tls(self, *, cluster_id: str, hosts: tuple[str, ...]) -> TlsFiles:
        self.directory.mkdir(parents=True, exist_ok=True)
        return create_tls(self.tls.directory, cluster_id=cluster_id, hosts=hosts)

    # -- command lines -------------------------------------------------------------------------
    def spec(self, name: str, role_argv: list[str]) -> daemon.DaemonSpec:
        """``python -m ess.engine.serve ROLE_ARGV --tls-dir ... --cluster-dir MARKER``; the
        marker (this directory and the daemon's name) tells our processes from others."""
        marker = f"{self.directory}/{name}"
        argv = [
            sys.executable,
            "-m",
            "ess.engine.serve",
            *role_argv,
            "--tls-dir",
            str(self.tls.directory),
            "--cluster-dir",
            marker,
        ]
        return daemon.DaemonSpec(
            name=name,
            argv=tuple(argv),
            pid_file=self.directory / f"{name}.pid",
            log_file=self.directory / f"{name}.log",
            marker=marker,
        )

    def scheduler_spec(self, host: str, port: int, *, gateway: bool = True) -> daemon.DaemonSpec:
        argv = ["scheduler", "--host", host, "--port", str(port)]
        argv += ["--address-file", str(self.address_file)]
        if gateway:
            argv += ["--gateway-file", str(self.gateway_file)]
        return self.spec("scheduler", argv)

    def worker_spec(self, name: str, *, host: str, scheduler: str) -> daemon.DaemonSpec:
        """A worker daemon on this machine (local clusters)."""
        local_dir = self.directory / "scratch" / name
        argv = ["worker", "--host", host, "--scheduler", scheduler, "--name", name]
        return self.spec(name, [*argv, "--local-dir", str(local_dir)])

    # -- the scheduler -------------------------------------------------------------------------
    def start_scheduler(self, spec: daemon.DaemonSpec, *, where: str = "") -> None:
        """Start the scheduler and wait until it listens (it writes its address file then).
        ``where`` ("host:port") goes into the message when it does not start in time."""
        for stale in (self.address_file, self.gateway_file):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        pid = daemon.start(spec)
        deadline = time.monotonic() + SCHEDULER_START_TIMEOUT
        while not self.address_file.exists():
            if not daemon.alive(pid):
                daemon.stop(spec)
                raise ClusterError(
                    f"the scheduler exited at start; see {spec.log_file}:\n{tail(spec.log_file)}"
                )
            if time.monotonic() > deadline:
                # we started it, so it is ours even if its cmdline is not readable yet
                daemon.kill_and_wait(pid, spec.marker, timeout=2)
                on = f" on {where}" if where else ""
                raise ClusterError(
                    f"the scheduler did not start{on} in {SCHEDULER_START_TIMEOUT:.0f} s; "
                    f"see {spec.log_file}"
                )
            time.sleep(0.02)

    def ensure_scheduler(self, spec: daemon.DaemonSpec, *, where: str = "") -> bool:
        """Start the scheduler unless it runs and listens; True when it was started."""
        if daemon.running_pid(spec) is not None and self.address_file.exists():
            return False
        daemon.stop(spec)
        self.start_scheduler(spec, where=where)
        return True

    def revive(self, scheduler: daemon.DaemonSpec, workers: list[daemon.DaemonSpec]) -> list[str]:
        """Start every daemon that is not running (scheduler first); return the names started."""
        started = []
        if daemon.running_pid(scheduler) is None:
            # Workers of a dead scheduler exit by themselves; restart them cleanly too.
            for spec in workers:
                daemon.stop(spec)
            self.start_scheduler(scheduler)
            started.append(scheduler.name)
        for spec in workers:
            if daemon.running_pid(spec) is None:
                daemon.start(spec)
                started.append(spec.name)
        return started

    # -- connection and status -----------------------------------------------------------------
    def address(self) -> str:
        try:
            return self.address_file.read_text().strip()
        except FileNotFoundError as exc:
            raise ClusterError(f"{self.address_file}: scheduler address missing") from exc

    def connection(
        self, cluster_id: str, *, worker_names: tuple[str, ...], shared_filesystem: bool
    ) -> Connection:
        return Connection(
            cluster_id=cluster_id,
            address=self.address(),
            tls=self.tls,
            worker_names=worker_names,
            shared_filesystem=shared_filesystem,
        )


def master_row(
    *, scheduler_pid: int | None, address: str, work_dir: Path, version: str | None = None
) -> NodeStatus:
    """The master's line of ``ess cluster status``: this machine, running while its scheduler
    does."""
    from ess.cluster.metrics import sample

    m = sample({"scheduler": scheduler_pid}, work_dir=work_dir)["scheduler"]
    return NodeStatus(
        id="master",
        state="running" if scheduler_pid else "stopped",
        public_ip=address,
        private_ip=address,
        cpu=m.cpu,
        mem=m.mem,
        disk=m.disk,
        version=version,
    )


def free_port(host: str) -> int:
    """A port free on ``host`` now (the scheduler keeps it for the cluster's life)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""

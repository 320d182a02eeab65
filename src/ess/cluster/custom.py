"""Custom clusters: the user's own hosts, listed in ``.conf/reservation.json``, reached by SSH.

The cluster is a TLS Dask scheduler on the master plus one worker per host. Bootstrapping a host
(``ess cluster start``, ``add``, or the first ``stream``/``exec``/``file`` that needs the
cluster) goes over one SSH connection per host (:mod:`ess.cluster.ssh`, all hosts at once):

1. create the host's private node directory (:mod:`ess.cluster.custom_remote`) and read the
   build installed there;
2. ship over SFTP the cluster CA certificate and the worker certificate and key (0600, in a 0700
   directory; the CA key never leaves the master) and, when the host runs another build, the
   wheel of this exact build (:func:`ess.cluster.bootstrap.build_wheel`): hosts need no access
   to a package index;
3. run the production bootstrap script of :mod:`ess.cluster.bootstrap` (the cloud user-data
   script) with ``file://`` URLs: it installs the wheel into a virtualenv and starts a worker
   loop that dials the master's scheduler over mutual TLS.

What applies and what does not: the machines are the user's, so ``create`` and ``terminate``
(which make and destroy machines) refuse with an explanation; ``start`` bootstraps/starts the
ess workers, ``stop`` stops them (and the scheduler), ``reset`` stops them and removes what ess
installed on the hosts, ``add``/``remove`` take hosts and update ``ip_list``.

State: ``.conf/custom/`` (``cluster.json``: scheduler address and each host's worker name; the
TLS material; scheduler pid/log), ``.conf/known_hosts`` (host keys, trust on first use).
"""

from __future__ import annotations

import asyncio
import shutil
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ess.cluster import custom_nodes
from ess.cluster import custom_remote as remote
from ess.cluster.custom_config import Reservation, known_hosts_file, load, update_hosts
from ess.cluster.daemons import DaemonCluster, free_port, host_port, master_row
from ess.cluster.provider import (
    CloudAuth,
    ClusterProvider,
    ClusterStatus,
    CreateOptions,
    register_provider,
)
from ess.cluster.ssh import Host, HostError, SshSession, SshSettings
from ess.engine import daemon
from ess.engine.connection import Connection
from ess.engine.security import TlsFiles
from ess.errors import ClusterError, ConfigError
from ess.workspace import read_json, write_json_atomic

PROBE_TIMEOUT = 30.0
BOOT_TIMEOUT = 600.0
JOIN_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class NodeState:
    name: str  # worker-N
    state: str  # running | failed
    error: str = ""


@dataclass(frozen=True)
class CustomState:
    id: str
    scheduler_host: str
    scheduler_port: int
    stopped: bool = False
    nodes: dict[str, NodeState] = field(default_factory=dict)  # key: Host.label_port

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "scheduler_host": self.scheduler_host,
            "scheduler_port": self.scheduler_port,
            "stopped": self.stopped,
            "nodes": {
                k: {"name": n.name, "state": n.state, "error": n.error}
                for k, n in sorted(self.nodes.items())
            },
        }

    @classmethod
    def from_json(cls, data: Any, *, path: Path) -> CustomState:
        try:
            return cls(
                id=str(data["id"]),
                scheduler_host=str(data["scheduler_host"]),
                scheduler_port=int(data["scheduler_port"]),
                stopped=bool(data.get("stopped", False)),
                nodes={
                    str(k): NodeState(str(v["name"]), str(v["state"]), str(v.get("error", "")))
                    for k, v in dict(data.get("nodes") or {}).items()
                },
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ClusterError(f"{path}: corrupt cluster state ({exc})") from exc


def worker_names(res: Reservation) -> dict[Host, str]:
    """Workers are numbered in ``ip_list`` order (Essentia's ``worker-1`` ... ``worker-N``)."""
    return {h: f"worker-{i}" for i, h in enumerate(res.hosts, start=1)}


@register_provider
class CustomProvider(ClusterProvider):
    platform = "custom"
    manages_nodes = False

    # -- files ---------------------------------------------------------------------------------
    @property
    def core(self) -> DaemonCluster:
        return DaemonCluster.at(self.ws.work_dir / "custom")

    @property
    def directory(self) -> Path:
        return self.core.directory

    @property
    def state_file(self) -> Path:
        return self.directory / "cluster.json"

    @property
    def tls(self) -> TlsFiles:
        return self.core.tls

    def load_state(self) -> CustomState | None:
        data = read_json(self.state_file)
        return None if data is None else CustomState.from_json(data, path=self.state_file)

    def _save(self, state: CustomState) -> None:
        write_json_atomic(self.state_file, state.to_json())

    def _settings(self, res: Reservation) -> SshSettings:
        return SshSettings(
            user=res.user,
            key_file=res.pem,
            known_hosts=known_hosts_file(self.ws),
            policy=res.host_key_policy,
            connect_timeout=res.connect_timeout,
        )

    def node_dir(self, res: Reservation, host: Host) -> remote.NodeDir:
        return remote.NodeDir.of(res.node_dir, remote.slug(res.id), host.slug)

    # -- the scheduler -------------------------------------------------------------------------
    def _scheduler_spec(self, state: CustomState) -> daemon.DaemonSpec:
        return self.core.scheduler_spec(state.scheduler_host, state.scheduler_port)

    def _ensure_scheduler(self, state: CustomState) -> None:
        self.core.ensure_scheduler(self._scheduler_spec(state))

    def _scheduler_running(self, state: CustomState) -> bool:
        return daemon.running_pid(self._scheduler_spec(state)) is not None

    def _new_state(self, res: Reservation, master: str) -> CustomState:
        self.core.create_tls(cluster_id=remote.slug(res.id), hosts=(master,))
        return CustomState(id=res.id, scheduler_host=master, scheduler_port=_free_port(master))

    # -- bootstrap -----------------------------------------------------------------------------
    def _sync(
        self, res: Reservation, state: CustomState | None, boot: list[Host]
    ) -> tuple[CustomState, list[str]]:
        """Make sure the scheduler runs and bootstrap ``boot``; return the new state."""
        return asyncio.run(self._sync_async(res, state, boot))

    async def _sync_async(
        self, res: Reservation, state: CustomState | None, boot: list[Host]
    ) -> tuple[CustomState, list[str]]:
        from ess.cluster.bootstrap import build_id, build_wheel

        build = build_id()
        names = worker_names(res)
        problems: list[str] = []
        async with SshSession(self._settings(res)) as ssh:

            async def prepare(host: Host, deadline: float) -> dict[str, str]:
                node = self.node_dir(res, host)
                text = await ssh.check(
                    host, remote.prepare(node), deadline=deadline, what="preparing the host"
                )
                return remote.parse_keys(text)

            probes = await ssh.map(boot, prepare, timeout=PROBE_TIMEOUT + res.connect_timeout)
            ready = {h: v for h, v in probes.items() if not isinstance(v, HostError)}
            if state is None:
                master = res.master or next((a for h in ready if (a := ssh.local_address(h))), None)
                if master is None:
                    raise ClusterError(
                        "no host of the custom cluster is reachable:\n"
                        + "\n".join(f"  {e}" for e in probes.values())
                    )
                state = await asyncio.to_thread(self._new_state, res, master)
            await asyncio.to_thread(self._ensure_scheduler, state)
            wheel = None
            if any(v.get("installed") != build for v in ready.values()):
                wheel = await asyncio.to_thread(
                    custom_nodes.cached_wheel, self.directory / "wheels" / build, build_wheel
                )
            scheduler = f"tls://{host_port(state.scheduler_host, state.scheduler_port)}"

            plan = custom_nodes.Install(
                res=res, tls=self.tls, build=build, wheel=wheel, scheduler=scheduler, names=names
            )

            async def install(host: Host, deadline: float) -> None:
                node = self.node_dir(res, host)
                await custom_nodes.install(ssh, host, ready[host], node, deadline, plan=plan)

            results = await ssh.map(list(ready), install, timeout=BOOT_TIMEOUT)
        nodes = dict(state.nodes)
        for host in boot:
            outcome = results.get(host, probes.get(host))
            if isinstance(outcome, HostError):
                nodes[host.label_port] = NodeState(names[host], "failed", str(outcome))
                problems.append(f"{names[host]} ({outcome})")
            else:
                nodes[host.label_port] = NodeState(names[host], "running")
        state = replace(state, nodes=nodes, stopped=False)
        self._save(state)
        return state, problems

    def _forget_removed(self, res: Reservation, state: CustomState) -> CustomState:
        keep = {h.label_port for h in res.hosts}
        return replace(state, nodes={k: v for k, v in state.nodes.items() if k in keep})

    def _running_names(self, res: Reservation, state: CustomState) -> tuple[str, ...]:
        names = worker_names(res)
        return tuple(
            names[h]
            for h in res.hosts
            if (n := state.nodes.get(h.label_port)) is not None and n.state == "running"
        )

    def _connection(self, res: Reservation, state: CustomState) -> Connection:
        address = self.core.address()  # a missing address says more than no worker
        names = self._running_names(res, state)
        if not names:
            raise ClusterError(
                f"custom cluster {res.id}: no worker is running; see 'ess cluster status'"
            )
        return Connection(
            cluster_id=res.id,
            address=address,
            tls=self.tls,
            worker_names=names,
            shared_filesystem=False,
        )

    def _wait_for_join(self, res: Reservation, state: CustomState) -> list[str]:
        """Wait until every running worker joined the scheduler; name the ones that did not."""
        from ess.engine.client import connect

        names = self._running_names(res, state)
        if not names:
            return []
        conn = self._connection(res, state)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                client = connect(conn, timeout=JOIN_TIMEOUT)
            except ClusterError as exc:
                return [str(exc)]
        client.close()
        return _version_problems([str(w.message) for w in caught])

    # -- interface -----------------------------------------------------------------------------
    def create(self, options: CreateOptions) -> ClusterStatus:
        raise ClusterError(
            "'ess cluster create' makes machines, and a custom cluster is made of your own: "
            "list them in ip_list of .conf/reservation.json (or 'ess cluster add HOST'), then "
            "'ess cluster start' installs and starts the ess workers on them (see docs/custom.md)"
        )

    def terminate(self, *, forget: bool, auth: CloudAuth) -> None:
        raise ClusterError(
            "'ess cluster terminate' destroys machines, and ess does not own the hosts of a "
            "custom cluster: 'ess cluster stop' stops the ess workers on them, 'ess cluster "
            "reset' also removes what ess installed there"
        )

    def start(self, auth: CloudAuth) -> ClusterStatus:
        """(Re)start the scheduler and the worker of every host (installing ess where needed)."""
        return self._start(everyone=True)

    def _start(self, *, everyone: bool) -> ClusterStatus:
        res = load(self.ws)
        if not res.hosts:
            raise ConfigError(f"{self.ws.work_dir / 'reservation.json'}: ip_list is empty")
        with self.core.lock():
            state = self.load_state()
            if state is not None:
                state = self._forget_removed(res, state)
            boot = list(res.hosts) if everyone else _plan(res, state)
            state, problems = self._sync(res, state, boot)
        problems += self._wait_for_join(res, state)
        status = self.status()
        return replace(status, problems=tuple(dict.fromkeys([*problems, *status.problems])))

    def stop(self, auth: CloudAuth) -> None:
        res = load(self.ws)
        with self.core.lock():
            state = self.load_state()
            if state is None:
                return
            failed = self._on_hosts(res, list(res.hosts), remote.stop_worker)
            daemon.stop(self._scheduler_spec(state))
            self._save(replace(state, stopped=True, nodes={}))
        if failed:
            raise ClusterError(
                "the ess workers could not be stopped on some hosts (they keep trying to "
                "reach the master):\n" + "\n".join(f"  {e}" for e in failed)
            )

    def reset(self) -> None:
        """Stop the workers and the scheduler; remove what ess installed on the hosts and here.

        ``reservation.json`` (the user's) and ``known_hosts`` are kept."""
        try:
            res: Reservation | None = load(self.ws)
        except ConfigError:
            res = None
        failed: list[str] = []
        with self.core.lock():
            state = self.load_state()
            if res is not None and (state is not None or self.directory.exists()):
                failed = self._on_hosts(res, list(res.hosts), remote.remove_node)
            if state is not None:
                daemon.stop(self._scheduler_spec(state))
            shutil.rmtree(self.directory, ignore_errors=True)
        if failed:
            raise ClusterError(
                "reset done here, but these hosts could not be cleaned (their ess files and "
                "any running worker remain):\n" + "\n".join(f"  {e}" for e in failed)
            )

    def _on_hosts(self, res: Reservation, hosts: list[Host], command: Any) -> list[str]:
        """Run ``command(node_dir)`` on ``hosts`` at once; return the failures."""

        async def go() -> list[str]:
            async with SshSession(self._settings(res)) as ssh:

                async def one(host: Host, deadline: float) -> str:
                    node = self.node_dir(res, host)
                    return await ssh.check(host, command(node), deadline=deadline, what="cleanup")

                results = await ssh.map(hosts, one, timeout=STOP_TIMEOUT + res.connect_timeout)
            return [str(r) for r in results.values() if isinstance(r, HostError)]

        return asyncio.run(go()) if hosts else []

    def iplist(self, *, kind: str | None = None) -> list[str]:
        return [h.address for h in load(self.ws).hosts]

    def connection(self, *, revive: bool = True) -> Connection | None:
        """The cluster for stream/exec/file. With ``revive``, a cluster never started is
        bootstrapped (Essentia: list the hosts, then use them), hosts new in ``ip_list`` are
        bootstrapped and a dead scheduler is restarted. Hosts that failed before are retried
        by 'ess cluster start' only: an unreachable host would cost a timeout every time."""
        res = load(self.ws)
        if not res.hosts:
            raise ConfigError(f"{self.ws.work_dir / 'reservation.json'}: ip_list is empty")
        state = self.load_state()
        if state is not None and state.stopped:
            return None
        if revive and self._needs_sync(res, state):
            with self.core.lock():
                state = self.load_state()
                if state is not None:
                    state = self._forget_removed(res, state)
                if self._needs_sync(res, state):
                    state, _ = self._sync(res, state, _new_hosts(res, state))
                    self._wait_for_join(res, state)
        if state is None:
            return None
        return self._connection(res, state)

    def _needs_sync(self, res: Reservation, state: CustomState | None) -> bool:
        if state is None or _new_hosts(res, state):
            return True
        return not self._scheduler_running(state)

    def add(self, reservations: list[str]) -> ClusterStatus:
        new = []
        for entry in reservations:
            try:
                new.append(Host.parse(entry))
            except ValueError as exc:
                raise ConfigError(f"ess cluster add: {exc}") from exc
        res = load(self.ws)
        already = [h.label for h in new if h in res.hosts]
        if already:
            raise ConfigError(f"already in the cluster: {', '.join(already)}")
        update_hosts(self.ws, lambda current: current + [h.label for h in new])
        state = self.load_state()
        if state is not None and not state.stopped:
            return self._start(everyone=False)
        return self.status()

    def _leaving(self, res: Reservation, reservations: list[str]) -> list[Host]:
        leaving = []
        for entry in reservations:
            try:
                host = Host.parse(entry)
            except ValueError as exc:
                raise ConfigError(f"ess cluster remove: {exc}") from exc
            if host not in res.hosts:
                raise ConfigError(f"{entry}: not a host of custom cluster {res.id}")
            leaving.append(host)
        return leaving

    def names_after_removal(self, reservations: list[str]) -> dict[str, str | None]:
        """Leaving hosts' workers → None; the others are renumbered in ``ip_list`` order."""
        res = load(self.ws)
        leaving = self._leaving(res, reservations)
        now = worker_names(res)
        after = worker_names(replace(res, hosts=tuple(h for h in res.hosts if h not in leaving)))
        return {now[h]: after.get(h) for h in res.hosts}

    def remove(self, reservations: list[str]) -> ClusterStatus:
        res = load(self.ws)
        leaving = self._leaving(res, reservations)
        problems: list[str] = []
        with self.core.lock():
            if self.load_state() is not None:
                problems = self._on_hosts(res, leaving, remote.remove_node)
            update_hosts(
                self.ws, lambda current: [e for e in current if Host.parse(e) not in leaving]
            )
        state = self.load_state()
        if state is not None and not state.stopped:
            status = self._start(everyone=False)  # renumbers the remaining workers
        else:
            status = self.status()
        return replace(status, problems=tuple([*problems, *status.problems]))

    # -- status --------------------------------------------------------------------------------
    def status(self) -> ClusterStatus:
        from ess.cluster.bootstrap import build_id

        res = load(self.ws)
        state = self.load_state()
        names = worker_names(res)
        master_build = build_id()

        async def sweep() -> dict[Host, dict[str, str] | HostError]:
            async with SshSession(self._settings(res)) as ssh:

                async def one(host: Host, deadline: float) -> dict[str, str]:
                    node = self.node_dir(res, host)
                    text = await ssh.check(
                        host, remote.status(node), deadline=deadline, what="status"
                    )
                    return remote.parse_keys(text)

                return await ssh.map(
                    list(res.hosts), one, timeout=PROBE_TIMEOUT + res.connect_timeout
                )

        infos = asyncio.run(sweep()) if res.hosts else {}
        sched_pid = daemon.running_pid(self._scheduler_spec(state)) if state else None
        master_ip = state.scheduler_host if state else (res.master or "-")
        rows = [
            master_row(
                scheduler_pid=sched_pid,
                address=master_ip,
                work_dir=self.ws.work_dir,
                version=master_build,
            )
        ]
        problems: list[str] = []
        started = state is not None and not state.stopped
        if started and sched_pid is None:
            problems.append(
                f"the scheduler of cluster {res.id} is not running; 'ess cluster start' restarts it"
            )
        for host in res.hosts:
            row, host_problems = custom_nodes.host_status(
                host, names[host], infos.get(host), started=started, master_build=master_build
            )
            rows.append(row)
            problems += host_problems
        return ClusterStatus(cluster_id=res.id, nodes=tuple(rows), problems=tuple(problems))

    # -- for tests -----------------------------------------------------------------------------
    def scheduler_pid(self) -> int | None:
        state = self.load_state()
        return daemon.running_pid(self._scheduler_spec(state)) if state else None


def _plan(res: Reservation, state: CustomState | None) -> list[Host]:
    """Hosts whose worker must be (re)started: new, failed before, or renamed."""
    names = worker_names(res)
    if state is None:
        return list(res.hosts)
    return [
        h
        for h in res.hosts
        if (n := state.nodes.get(h.label_port)) is None
        or n.state != "running"
        or n.name != names[h]
    ]


def _new_hosts(res: Reservation, state: CustomState | None) -> list[Host]:
    names = worker_names(res)
    if state is None:
        return list(res.hosts)
    return [
        h for h in res.hosts if (n := state.nodes.get(h.label_port)) is None or n.name != names[h]
    ]


def _version_problems(messages: list[str]) -> list[str]:
    """Dask's version-mismatch warnings, minus Python patch-level differences (harmless: the
    hosts run their own Python, ess is the same build everywhere)."""
    problems = []
    for text in messages:
        if "Mismatched versions" not in text:
            continue
        rows = [
            " ".join(cell.strip() for cell in line.strip().strip("|").split("|"))
            for line in text.splitlines()
            if line.startswith("| ") and not line.startswith(("| Package", "| python "))
        ]
        if rows:
            problems.append(
                "package versions differ between master and workers: " + "; ".join(rows)
            )
    return problems


def _free_port(host: str) -> int:
    try:
        return free_port(host)
    except OSError as exc:
        raise ClusterError(
            f"the master cannot listen on {host} (set 'master' in reservation.json to the "
            f"master's address as the hosts reach it): {exc.strerror}"
        ) from exc

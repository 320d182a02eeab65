"""`ess udbd start|stop|restart|status|ckmem|cklog` and `ess server ...`: the UDB service.

The UDB is not a separate daemon: it is a worker plugin in the Dask workers of the running
cluster, registered on the scheduler (so workers that join or come back later get it too).
"Started" means the plugin is registered. The per-port lines Essentia printed are kept for
scripts that read them: one "server" per port of the defined databases, all served by the same
cluster; the PID shown is the scheduler's.

On the local platform ``start``/``restart`` create (or start) the cluster when none runs; that
is remembered in ``$ESS_WORK_DIR/udb/cluster.implicit``, and ``ess udbd stop`` stops that
cluster again, so a script that only uses the UDB leaves no daemon behind.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ess.errors import UdbError
from ess.udb import server, snapshot, spec
from ess.workspace import Workspace, read_json, write_json_atomic

Warn = Callable[[str], None]


def _host() -> str:
    return socket.gethostname().split(".")[0]


def _log(ws: Workspace, text: str) -> None:
    path = log_file(ws)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(time.strftime("%Y-%m-%d %H:%M:%S ") + text + "\n")


def log_file(ws: Workspace) -> Path:
    return ws.work_dir / "udb" / "udbd.log"


def _is_registered(dask_scheduler: Any) -> bool:
    return server.PLUGIN_NAME in getattr(dask_scheduler, "worker_plugins", {})


def _pid(dask_scheduler: Any = None) -> int:
    return os.getpid()


def _implicit_file(ws: Workspace) -> Path:
    return ws.work_dir / "udb" / "cluster.implicit"


def _session(ws: Workspace, *, start_cluster: bool) -> Any:
    """A UdbSession, or None when no cluster runs (and `start_cluster` is False)."""
    from ess.cluster.provider import CreateOptions, provider_for
    from ess.udb.client import UdbSession

    provider = provider_for(ws)
    conn = provider.connection()
    if conn is None:
        if not start_cluster:
            return None
        if provider.platform != "local":
            raise UdbError("no cluster is running: create or start it first ('ess cluster ...')")
        before = getattr(provider, "load_state", lambda: None)()
        if before is not None:
            provider.start(CreateOptions().auth)
        else:
            provider.create(CreateOptions())
        made = provider.load_state()  # type: ignore[attr-defined]
        marker = {"cluster": made.id, "created": before is None, "scheduler": _scheduler(provider)}
        write_json_atomic(_implicit_file(ws), marker)
    return UdbSession(ws)


def _scheduler(provider: Any) -> str | None:
    """The local scheduler's pid as its pid file says: a new one after any restart."""
    try:
        return str((provider.directory / "scheduler.pid").read_text().strip())
    except OSError:
        return None


def _stop_implicit_cluster(ws: Workspace) -> list[str]:
    """Stop (or terminate, if it created it) the local cluster `ess udbd start` brought up."""
    from ess.cluster.provider import CloudAuth, provider_for

    marker = read_json(_implicit_file(ws))
    _implicit_file(ws).unlink(missing_ok=True)
    provider = provider_for(ws)
    state = getattr(provider, "load_state", lambda: None)()
    if not isinstance(marker, dict) or provider.platform != "local" or state is None:
        return []
    if marker.get("cluster") != state.id:  # another cluster since: not ours to stop
        return []
    if marker.get("scheduler") != _scheduler(provider):  # stopped and started by the user since
        return []
    if marker.get("created"):
        provider.terminate(forget=True, auth=CloudAuth())
        return [f"local cluster {state.id} (created by 'ess udbd start') terminated"]
    if not state.stopped:
        provider.stop(CloudAuth())
    return [f"local cluster {state.id} (started by 'ess udbd start') stopped"]


def _margin() -> int:
    """UDBD_MEM_MARGIN (KB, Essentia's variable) as seen by `ess udbd start`."""
    text = os.environ.get("UDBD_MEM_MARGIN", "")
    try:
        return int(text) if text else server.DEFAULT_MARGIN_KB
    except ValueError:
        raise UdbError(f"UDBD_MEM_MARGIN must be a number of KB, not {text!r}") from None


def snapshot_root(ws: Workspace, cluster_id: str, *, shared_filesystem: bool = True) -> str:
    """Where workers keep their snapshots: under the master's cache dir when they share its
    disk (local clusters), else in each worker's own home (EC2 and SSH hosts cannot write the
    master's paths)."""
    if not shared_filesystem:
        return f"~/.ess-udb/{cluster_id}"
    return str((ws.cache_dir / "udb" / cluster_id).resolve())


def start(ws: Workspace, *, warn: Warn | None = None) -> list[str]:
    from ess.udb.server import UdbPlugin

    ports = spec.all_ports(ws)
    h = _host()
    with _session(ws, start_cluster=True) as s:
        pid = s.client.run_on_scheduler(_pid)
        if s.client.run_on_scheduler(_is_registered):
            _require_healthy(s, "start", all_workers=False)
            s.rebalance()
            _warn_damage(ws, s, warn)
            return [f"{h}: udbd-{p} ({pid}) is already running." for p in ports]
        s.client.register_plugin(
            UdbPlugin(
                snapshot_root(ws, s.conn.cluster_id, shared_filesystem=s.conn.shared_filesystem),
                mem_margin_kb=_margin(),
            )
        )
        _require_healthy(s, "start", all_workers=False)
        moved = s.rebalance()
        _log(ws, f"started on {len(s.workers)} worker(s); {moved} partition(s) redistributed")
        _warn_damage(ws, s, warn)
    return [f"{h}: Starting udbd-{p}." for p in ports] + [
        f"{h}: udbd-{p} ({pid}) started." for p in ports
    ]


def _health(s: Any) -> dict[str, dict[str, Any]]:
    return dict(s.each_worker(server.w_health))


def _require_healthy(s: Any, action: str, *, all_workers: bool = True) -> None:
    """Every worker runs and its store loaded, or no data is touched: a stop that wiped some
    workers and failed on another would leave half the data (and say nothing)."""
    addrs = s.addresses()
    missing = [name for name in s.workers if name not in addrs] if all_workers else []
    broken = {name: h["error"] for name, h in _health(s).items() if h["error"]}
    if missing or broken:
        what = [f"{name} is not running" for name in missing]
        what += [f"{name} could not load its snapshots ({err})" for name, err in broken.items()]
        raise UdbError(
            f"ess udbd {action}: {'; '.join(what)}; no UDB data was changed. Bring the worker back "
            "('ess cluster start'); for snapshots that do not load, see the worker's log "
            "(ess cluster status names it) and move the directory it names aside"
        )


DAMAGED = "damaged snapshot moved aside, its rows are not loaded"


def _damage_lines(s: Any) -> list[str]:
    return [f"{name}: {DAMAGED}: {line}"
            for name, h in sorted(_health(s).items()) for line in h["damaged"]]  # fmt: skip


def _warn_damage(ws: Workspace, s: Any, warn: Warn | None) -> None:
    lines = _damage_lines(s)
    for line in lines:
        _log(ws, line)
        if warn is not None:
            warn(f"ess udbd: {line}")


def stop(ws: Workspace, *, keep_cluster: bool = False, warn: Warn | None = None) -> list[str]:
    """Wipe the data (memory and snapshots) and unregister the plugin; then stop the local
    cluster `ess udbd start` brought up itself (unless `keep_cluster`: restart, server ...)."""
    ports = spec.all_ports(ws)
    h = _host()
    lines: list[str] = []
    s = _session(ws, start_cluster=False)
    if s is not None:
        with s:
            root = snapshot_root(ws, s.conn.cluster_id, shared_filesystem=s.conn.shared_filesystem)
            if s.client.run_on_scheduler(_is_registered):
                _require_healthy(s, "stop")
                pid = s.client.run_on_scheduler(_pid)
                lines += [f"{h}: Stopping udbd-{p} ({pid})." for p in ports]
                s.each_worker(server.w_wipe)
                s.client.unregister_worker_plugin(server.PLUGIN_NAME)
                _log(ws, "stopped; data cleared")
            elif any(s.each_worker(snapshot.w_wipe_snapshots, root).values()):
                # not started since the cluster (re)started: nothing in memory, but the
                # snapshots on disk would come back with the next 'ess udbd start'
                _log(ws, "stopped (not running); snapshots cleared")
    else:
        _clear_offline(ws, warn)
    if not keep_cluster:
        for line in _stop_implicit_cluster(ws):
            _log(ws, line)
    return lines + [f"{h}: udbd-{p} stopped." for p in ports]


def _clear_offline(ws: Workspace, warn: Warn | None) -> None:
    """No cluster runs: a local cluster's snapshots are on this disk and are removed here;
    remote hosts' snapshots cannot be reached (said on stderr, never claimed cleared)."""
    from ess.cluster.provider import provider_for

    provider = provider_for(ws)
    state = getattr(provider, "load_state", lambda: None)()
    if provider.platform == "local":
        if state is not None:
            shutil.rmtree(snapshot_root(ws, state.id), ignore_errors=True)
        return
    if warn is not None:
        warn("ess udbd stop: the cluster is not running, so the UDB snapshots on its hosts "
             "are kept (the next 'ess udbd start' reloads them); start the cluster and run "
             "'ess udbd stop' again to clear them")  # fmt: skip


def restart(ws: Workspace, *, warn: Warn | None = None) -> list[str]:
    return stop(ws, keep_cluster=True, warn=warn) + start(ws, warn=warn)


@dataclass(frozen=True)
class WorkerNote:
    worker: str  # worker-1, ...
    text: str


@dataclass(frozen=True)
class UdbdStatus:
    """What `ess udbd status` found; its text lines and its --json both render from this."""

    host: str
    ports: tuple[int, ...]
    cluster_running: bool
    running: bool  # the UDB plugin is registered on the scheduler
    pid: int | None = None  # the scheduler's
    load_errors: tuple[WorkerNote, ...] = ()  # stores that could not load their snapshots
    damaged: tuple[WorkerNote, ...] = ()  # snapshot files moved aside (rows not loaded)

    def lines(self) -> list[str]:
        h = self.host
        if not self.running:
            return [f"{h}: udbd-{p} is not running." for p in self.ports]
        out = [f"{h}: udbd-{p} ({self.pid}) is running." for p in self.ports]
        out += [f"{h}: {e.worker}: the UDB could not load its snapshots: {e.text}"
                for e in self.load_errors]  # fmt: skip
        return out + [f"{h}: {d.worker}: {DAMAGED}: {d.text}" for d in self.damaged]


def status(ws: Workspace) -> list[str]:
    return status_info(ws).lines()


def status_info(ws: Workspace) -> UdbdStatus:
    ports = tuple(spec.all_ports(ws))
    h = _host()
    s = _session(ws, start_cluster=False)
    if s is None:
        return UdbdStatus(h, ports, cluster_running=False, running=False)
    with s:
        if not s.client.run_on_scheduler(_is_registered):
            return UdbdStatus(h, ports, cluster_running=True, running=False)
        pid = s.client.run_on_scheduler(_pid)
        health = sorted(_health(s).items())
        return UdbdStatus(
            h, ports, cluster_running=True, running=True, pid=pid,
            load_errors=tuple(WorkerNote(name, x["error"]) for name, x in health if x["error"]),
            damaged=tuple(WorkerNote(name, line) for name, x in health for line in x["damaged"]),
        )  # fmt: skip


def ckmem(ws: Workspace) -> list[str]:
    h = _host()
    s = _session(ws, start_cluster=False)
    if s is None:
        return [f"{h}: udbd is not running."]
    with s:
        if not s.client.run_on_scheduler(_is_registered):
            return [f"{h}: udbd is not running."]
        out = []
        for name, mem in s.each_worker(server.w_memory).items():
            out.append(
                f"{h}: {name}: rows={mem['rows']} data={mem['bytes'] // 1024} KB "
                f"max_rss={mem['max_rss'] // 1024} KB"
            )
        return out


def cklog(ws: Workspace, lines: int = 20) -> list[str]:
    h = _host()
    try:
        text = log_file(ws).read_text().splitlines()[-lines:]
    except FileNotFoundError:
        text = []
    return [f"{h}: {line}" for line in text]


def stop_quietly(ws: Workspace) -> None:
    """`ess server reset`: the data goes, a cluster started for the UDB stays (scripts reset
    first, then 'ess udbd restart': stopping it would only cost its start again)."""
    stop(ws, keep_cluster=True)


def server_restart(ws: Workspace) -> None:
    stop(ws, keep_cluster=True)
    start(ws)

"""`ess udbd start|stop|restart|status|ckmem|cklog` and `ess server ...`: the UDB service.

The UDB is not a separate daemon: it is a worker plugin in the Dask workers of the running
cluster, registered on the scheduler (so workers that join or come back later get it too).
"Started" means the plugin is registered. The per-port lines Essentia printed are kept for
scripts that read them: one "server" per port of the defined databases, all served by the same
cluster; the PID shown is the scheduler's.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from ess.errors import UdbError
from ess.udb import server, spec
from ess.workspace import Workspace


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
        state = getattr(provider, "load_state", lambda: None)()
        if state is not None:
            provider.start(CreateOptions().auth)
        else:
            provider.create(CreateOptions())
    return UdbSession(ws)


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


def start(ws: Workspace) -> list[str]:
    from ess.udb.server import UdbPlugin

    ports = spec.all_ports(ws)
    h = _host()
    with _session(ws, start_cluster=True) as s:
        pid = s.client.run_on_scheduler(_pid)
        if s.client.run_on_scheduler(_is_registered):
            s.rebalance()
            return [f"{h}: udbd-{p} ({pid}) is already running." for p in ports]
        s.client.register_plugin(
            UdbPlugin(
                snapshot_root(ws, s.conn.cluster_id, shared_filesystem=s.conn.shared_filesystem),
                mem_margin_kb=_margin(),
            )
        )
        moved = s.rebalance()
        _log(ws, f"started on {len(s.workers)} worker(s); {moved} partition(s) redistributed")
    return [f"{h}: Starting udbd-{p}." for p in ports] + [
        f"{h}: udbd-{p} ({pid}) started." for p in ports
    ]


def stop(ws: Workspace) -> list[str]:
    """Wipe the data (memory and snapshots) and unregister the plugin."""
    ports = spec.all_ports(ws)
    h = _host()
    lines: list[str] = []
    s = _session(ws, start_cluster=False)
    if s is not None:
        with s:
            if s.client.run_on_scheduler(_is_registered):
                pid = s.client.run_on_scheduler(_pid)
                lines += [f"{h}: Stopping udbd-{p} ({pid})." for p in ports]
                s.each_worker(server.w_wipe)
                s.client.unregister_worker_plugin(server.PLUGIN_NAME)
                _log(ws, "stopped; data cleared")
    return lines + [f"{h}: udbd-{p} stopped." for p in ports]


def restart(ws: Workspace) -> list[str]:
    return stop(ws) + start(ws)


def status(ws: Workspace) -> list[str]:
    ports = spec.all_ports(ws)
    h = _host()
    s = _session(ws, start_cluster=False)
    if s is None:
        return [f"{h}: udbd-{p} is not running." for p in ports]
    with s:
        if not s.client.run_on_scheduler(_is_registered):
            return [f"{h}: udbd-{p} is not running." for p in ports]
        pid = s.client.run_on_scheduler(_pid)
        return [f"{h}: udbd-{p} ({pid}) is running." for p in ports]


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
    stop(ws)


def server_restart(ws: Workspace) -> None:
    stop(ws)
    start(ws)

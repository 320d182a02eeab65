"""Entry point of the daemons: ``python -m ess.engine.serve scheduler|worker ...``.

Started by :mod:`ess.engine.daemon` in its own session with stdout/stderr going to a log file.
The scheduler writes its address to ``--address-file`` once it listens. Workers run one Dask
``Worker`` (no nanny: supervision is ours, see :mod:`ess.cluster.local`), with a ``slots``
resource that stream tasks use to cap concurrent pipelines per worker (``--threads``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ess.engine.hugepages import no_huge_pages
from ess.engine.pool import SLOTS, WORKER_THREADS
from ess.engine.runs import ENV_COMMAND_PATH
from ess.engine.security import TlsFiles
from ess.settings import env

ENV_DASHBOARD = "ESS_DASHBOARD"


def _configure() -> None:
    import dask

    dask.config.set(
        {
            "distributed.comm.timeouts.connect": "20s",
            "distributed.scheduler.work-stealing": True,
            # stream tasks are independent shell pipelines; a task killed with its worker is re-run
            # elsewhere, up to this many times, before the stream reports it as failed.
            "distributed.scheduler.allowed-failures": 3,
            "distributed.worker.memory.target": False,
            "distributed.worker.memory.spill": False,
            "distributed.worker.memory.pause": False,
            "distributed.worker.memory.terminate": False,
            "distributed.logging.distributed": "info",
            # the HTTP server keeps only its bare routes; the dashboard (bokeh, when installed)
            # is added by the scheduler itself, on the loopback address (see _scheduler)
            "distributed.scheduler.http.routes": [],
            # idle daemons should not burn CPU the commands need: event-loop health checks and
            # the system monitor run at a relaxed pace (Dask's defaults: 20 ms and 500 ms)
            "distributed.admin.tick.interval": "500ms",
            "distributed.admin.tick.limit": "10s",
            "distributed.admin.system-monitor.interval": "2s",
            "distributed.worker.profile.enabled": False,  # stack sampling every 10 ms
            "distributed.worker.memory.monitor-interval": "1s",
            "distributed.worker.http.routes": [],
        }
    )


async def _scheduler(args: argparse.Namespace) -> None:
    from distributed import Scheduler

    tls = TlsFiles(Path(args.tls_dir))
    dashboard = dashboard_available()
    async with Scheduler(
        host=args.host,
        port=args.port,
        protocol="tls",
        security=tls.dask_security("scheduler"),
        dashboard=dashboard,
        # Dask always starts its HTTP server (the dashboard when bokeh is there): plain HTTP
        # without a login, so only this machine may reach it (users tunnel over SSH)
        dashboard_address="127.0.0.1:0",
    ) as scheduler:
        if args.address_file:
            _write_dashboard_url(scheduler, Path(args.address_file), dashboard)
        gateway = None
        if args.gateway_file:
            from ess.engine import gateway as gw

            gateway = await gw.serve(
                scheduler, tls, host=args.host, address_file=Path(args.gateway_file)
            )
        tmp = Path(args.address_file + ".tmp")
        tmp.write_text(scheduler.address + "\n")
        os.replace(tmp, args.address_file)
        try:
            await scheduler.finished()
        finally:
            if gateway is not None:
                gateway.close()


def _write_dashboard_url(scheduler: Any, address_file: Path, dashboard: bool) -> None:
    link = dashboard_file(address_file)
    server = scheduler.services.get("dashboard")
    if not dashboard or server is None:
        link.unlink(missing_ok=True)  # a previous start's, with bokeh since uninstalled
        return
    tmp = link.with_suffix(".tmp")
    tmp.write_text(f"http://127.0.0.1:{server.port}/status\n")
    os.replace(tmp, link)


def dashboard_available() -> bool:
    """Dask's dashboard: on unless ESS_DASHBOARD=0 (it adds ~1 s to a scheduler's start) or
    bokeh, which draws it, is missing."""
    import importlib.util

    if os.environ.get(ENV_DASHBOARD, "1") == "0":
        return False
    return importlib.util.find_spec("bokeh") is not None


def dashboard_file(address_file: Path) -> Path:
    """Where a scheduler with a dashboard writes its URL (beside its address file)."""
    return address_file.with_name("dashboard.url")


async def _worker(args: argparse.Namespace) -> None:
    tls = TlsFiles(Path(args.tls_dir))
    warm = _start_warm_service(args.cluster_dir)
    try:
        await _run_worker(args, tls)
    finally:
        if warm is not None:
            warm.terminate()  # it also stops by itself once this process is gone
            with contextlib.suppress(subprocess.TimeoutExpired):
                warm.wait(10)


async def _run_worker(args: argparse.Namespace, tls: TlsFiles) -> None:
    from distributed import Worker

    async with Worker(
        args.scheduler,
        name=args.name,
        nthreads=args.nthreads,
        host=args.host,
        port=args.port,  # 0: any; cloud workers use a fixed port their security group opens
        protocol="tls",
        security=tls.dask_security("worker"),
        resources={"slots": SLOTS},
        local_directory=args.local_dir,
        memory_limit=0,
        dashboard=False,
        dashboard_address=f"{args.host}:0",
        death_timeout=args.death_timeout,
    ) as worker:
        await worker.finished()


def _start_warm_service(marker: str) -> subprocess.Popen[bytes] | None:
    """aq_pp/aq_udb in this worker's commands start warm: ess.warm's service runs beside the
    worker (started by module name: the engine imports nothing of it) and the commands find it
    through ESS_WARM_SOCKET, which every pipeline inherits from this process."""
    if env("ESS_WARM") == "0":
        return None
    sock = f"{marker}.warm.sock"
    argv = [sys.executable, "-m", "ess.warm.service", "--socket", sock]
    try:
        with open(f"{marker}.warm.log", "ab") as log:
            proc = subprocess.Popen(
                [*argv, "--watch-pid", str(os.getpid())],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
    except OSError:
        return None  # commands run cold
    os.environ["ESS_WARM_SOCKET"] = sock
    # the service's fast launchers first on the commands' PATH (ess.warm.fastbin: the socket's
    # name + ".bin"; named here so the engine imports nothing of ess.warm)
    os.environ["PATH"] = f"{sock}.bin{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ[ENV_COMMAND_PATH] = f"{sock}.bin"  # also before a pipeline's own PATH
    return proc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ess.engine.serve")
    parser.add_argument("role", choices=["scheduler", "worker"])
    parser.add_argument("--tls-dir", required=True)
    parser.add_argument("--cluster-dir", required=True, help="marks the process as ours")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--address-file")
    parser.add_argument("--gateway-file", help="start the exec gateway; write its address here")
    parser.add_argument("--scheduler")
    parser.add_argument("--name")
    parser.add_argument("--nthreads", type=int, default=WORKER_THREADS)
    parser.add_argument("--local-dir")
    parser.add_argument("--death-timeout", type=float, default=60)
    args = parser.parse_args(argv)
    no_huge_pages()  # before the first big allocation; the warm service inherits it
    _configure()
    from ess.engine.watchdog import watch_pid_file  # exit once our pid file is gone

    watch_pid_file(Path(args.cluster_dir + ".pid"))
    runner = _scheduler if args.role == "scheduler" else _worker
    try:
        asyncio.run(runner(args))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

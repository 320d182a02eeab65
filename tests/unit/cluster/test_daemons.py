"""The shared daemon-cluster core: the daemons' command lines (unchanged from the providers'
own), the layout, and the connection it hands the engine."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ess.cluster.daemons import DaemonCluster, host_port
from ess.cluster.local import LocalProvider, LocalState
from ess.errors import ClusterError
from ess.workspace import Workspace


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("ESS_WORK_DIR", str(tmp_path / ".conf"))
    monkeypatch.setenv("ESS_CACHE_DIR", str(tmp_path / ".ess"))
    return Workspace.from_env()


def test_local_command_lines(ws: Workspace) -> None:
    d = (ws.work_dir / "cluster").resolve()
    sched, worker = LocalProvider(ws).specs(LocalState(id="local-1", workers=1, port=4242))
    serve = [sys.executable, "-m", "ess.engine.serve"]
    tls = ["--tls-dir", str(d / "tls")]
    assert list(sched.argv) == [
        *serve, "scheduler", "--host", "127.0.0.1", "--port", "4242",
        "--address-file", str(d / "scheduler.address"),
        "--gateway-file", str(d / "gateway.address"),
        *tls, "--cluster-dir", f"{d}/scheduler",
    ]  # fmt: skip
    assert list(worker.argv) == [
        *serve, "worker", "--host", "127.0.0.1", "--scheduler", "tls://127.0.0.1:4242",
        "--name", "worker-1", "--local-dir", str(d / "scratch" / "worker-1"),
        *tls, "--cluster-dir", f"{d}/worker-1",
    ]  # fmt: skip
    assert (sched.pid_file, sched.log_file) == (d / "scheduler.pid", d / "scheduler.log")
    assert worker.marker == f"{d}/worker-1"


def test_scheduler_without_gateway(tmp_path: Path) -> None:
    core = DaemonCluster.at(tmp_path / "cloud")
    argv = core.scheduler_spec("10.0.0.1", 8786, gateway=False).argv
    assert "--gateway-file" not in argv
    assert argv[argv.index("--host") + 1 : argv.index("--port") + 2] == (
        "10.0.0.1",
        "--port",
        "8786",
    )


def test_connection_reads_the_address_file(tmp_path: Path) -> None:
    core = DaemonCluster.at(tmp_path / "c")
    with pytest.raises(ClusterError, match="scheduler address missing"):
        core.connection("x", worker_names=("worker-1",), shared_filesystem=True)
    core.directory.mkdir()
    core.address_file.write_text("tls://127.0.0.1:99\n")
    conn = core.connection("x", worker_names=("worker-1",), shared_filesystem=False)
    assert (conn.address, conn.tls.directory, conn.shared_filesystem) == (
        "tls://127.0.0.1:99",
        core.directory / "tls",
        False,
    )


def test_host_port_brackets_ipv6() -> None:
    assert host_port("::1", 5) == "[::1]:5"
    assert host_port("10.0.0.1", 5) == "10.0.0.1:5"

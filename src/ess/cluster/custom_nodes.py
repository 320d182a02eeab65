"""What ess does on one host of a custom cluster, over its SSH connection: install this build
and start its worker (the production bootstrap script of :mod:`ess.cluster.bootstrap`, fed
``file://`` URLs of files shipped over SFTP)."""

from __future__ import annotations

import contextlib
import shutil
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ess.cluster import custom_remote as remote
from ess.cluster.bootstrap import BootConfig, build_id, render_script, wheel_name
from ess.cluster.custom_config import Reservation
from ess.cluster.provider import NodeStatus
from ess.cluster.ssh import Host, HostError, SshSession
from ess.engine.security import TlsFiles
from ess.errors import ClusterError


@dataclass(frozen=True)
class Install:
    """What every host of one bootstrap gets."""

    res: Reservation
    tls: TlsFiles
    build: str
    wheel: Path | None  # None: every host already has this build
    scheduler: str  # tls://HOST:PORT
    names: dict[Host, str]


async def install(
    ssh: SshSession,
    host: Host,
    info: dict[str, str],
    node: remote.NodeDir,
    deadline: float,
    *,
    plan: Install,
) -> None:
    """Ship the worker's TLS files (and the wheel when the host runs another build), run the
    bootstrap script; raise HostError with the end of its log when it fails."""
    base = node.absolute(info["home"])
    stage = f"{base}/stage"
    tls, wheel, build = plan.tls, plan.wheel, plan.build
    files = [
        (tls.ca_cert, f"{stage}/ca.crt"),
        (tls.cert("worker"), f"{stage}/worker.crt"),
        (tls.key("worker"), f"{stage}/worker.key"),
    ]
    if info.get("installed") != build and wheel is not None:
        files.append((wheel, f"{stage}/{wheel.name}"))
    await ssh.put(host, files, deadline=deadline)
    wheel_file = wheel.name if wheel is not None else wheel_name(build.split("+")[0])
    config = BootConfig(
        cluster_id=remote.slug(plan.res.id),
        scheduler=plan.scheduler,
        build=build,
        wheel_file=wheel_file,
        wheel_url=_file_url(f"{stage}/{wheel_file}"),
        ca_url=_file_url(f"{stage}/ca.crt"),
        cert_url=_file_url(f"{stage}/worker.crt"),
        key_url=_file_url(f"{stage}/worker.key"),
        worker_port=0,
    )
    env = _boot_env(plan.res, host, base=base, name=plan.names[host])
    try:
        result = await ssh.run(
            host, remote.bootstrap(node, env), deadline=deadline, input=render_script(config)
        )
        if result.exit_status != 0:
            log = await ssh.run(host, remote.boot_log_tail(node), deadline=deadline)
            raise HostError(
                host,
                "command",
                f"bootstrap failed (exit {result.exit_status}); end of "
                f"{base}/boot.log:\n{log.stdout.rstrip()}",
            )
    finally:
        with contextlib.suppress(HostError):
            await ssh.run(host, remote.drop_stage(node), deadline=deadline + 5)


def _boot_env(res: Reservation, host: Host, *, base: str, name: str) -> dict[str, str]:
    env = {
        "ESS_BOOT_DIR": base,
        "ESS_NODE_ADDRESS": host.address,
        "ESS_INSTANCE_ID": name,
        "ESS_WORKER_PORT": "0",
        "ESS_PIP_ARGS": res.pip_args,
    }
    if res.python:
        env["ESS_PYTHON"] = res.python
    venv_args = ["--system-site-packages"] if res.system_site_packages else []
    venv_args += res.venv_args.split()
    if venv_args:
        env["ESS_VENV_ARGS"] = " ".join(venv_args)
    return env


def cached_wheel(directory: Path, build_wheel: Any) -> Path:
    """The wheel of build ``directory.name``, built once. A wheel whose files changed while it
    was being built (an edited checkout) is not kept under that build's name."""
    found = sorted(directory.glob("*.whl")) if directory.is_dir() else []
    if found:
        return found[0]
    wheel = Path(build_wheel(directory))
    if build_id() != directory.name:
        shutil.rmtree(directory, ignore_errors=True)
        raise ClusterError("the ess package changed while its wheel was being built; run again")
    return wheel


def _file_url(path: str) -> str:
    return "file://" + urllib.parse.quote(path)


def host_status(
    host: Host,
    name: str,
    info: dict[str, str] | HostError | None,
    *,
    started: bool,
    master_build: str,
) -> tuple[NodeStatus, list[str]]:
    """A host's row of ``ess cluster status`` from what its status probe said, and what is
    wrong with it (unreachable, worker not running, another build)."""
    if not isinstance(info, dict):
        kind = info.kind if info is not None else "unknown"
        return NodeStatus(name, kind, host.address, host.address, "-", "-", "-"), [
            f"{name}: {info}"
        ]
    problems = []
    running = bool(info.get("worker"))
    installed = info.get("installed") or "-"
    if started and not running:
        problems.append(
            f"{name} ({host.label}): the ess worker is not running; 'ess cluster start' restarts it"
        )
    if running and installed != master_build:
        problems.append(
            f"{name} ({host.label}) runs ess {installed}, the master {master_build}; "
            "'ess cluster start' re-syncs it"
        )
    row = NodeStatus(
        id=name,
        state="running" if running else "stopped",
        public_ip=host.address,
        private_ip=host.address,
        cpu=info.get("cpu", "-"),
        mem=info.get("mem", "-"),
        disk=info.get("disk", "-"),
        version=installed,
    )
    return row, problems

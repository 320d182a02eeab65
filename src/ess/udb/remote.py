"""The UDB from commands that ``ess stream`` / ``ess exec`` run on workers of another machine.

A command on a custom (SSH) or cloud (EC2) worker has no ``ESS_WORK_DIR`` of the master: no
scheduler address, no client certificate, no ``<db>.spec``. Three pieces give it what
``aq_pp -imp`` and ``aq_udb`` need, on every platform whose workers do not share the master's
disk (the same code path serves SSH hosts and EC2 instances: both run ``ess.engine.serve
worker`` from the same bootstrap script):

* the master ships a :class:`UdbBundle` with each pipeline: the text of the spec files (not
  secret), the active database and the expected worker names (the partition map must be the
  master's). It travels as a worker hook of the run layer's environment providers
  (:mod:`ess.run.env`; this module registers itself there when imported, the run layer never
  imports the UDB);
* on the worker, :func:`command_env` writes the specs into a content-addressed directory in the
  worker's scratch space and points ``ESS_WORK_DIR`` at it, and names the scheduler address and the
  worker's TLS directory (``ESS_SCHEDULER_ADDRESS``, ``ESS_TLS_DIR``). Nothing secret travels:
  the command presents the worker's own certificate (signed by the cluster CA, clientAuth
  usage; see :class:`ess.engine.security.TlsFiles`), whose key is already on that host, 0600;
* :func:`connection_from_env` turns those variables back into a :class:`Connection` for
  :class:`ess.udb.client.UdbSession`.

:func:`exec_follower` is the rule for ``aq_udb`` inside ``ess exec`` (docs/udb.md, "ess exec
and the UDB"): the first node runs it, the others do nothing, so a query prints each row once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ess.run.env import PipelineEnv, RunContext, RunKind, register_env_provider
from ess.run.pipeline import ENV_EXEC_NODE, WorkerHook
from ess.udb.commit import stream_hooks
from ess.udb.conn import (
    ENV_ADDRESS,
    ENV_CLUSTER,
    ENV_TLS_DIR,
    ENV_TLS_FILES,
    ENV_WORKERS,
    connection_from_env,
)
from ess.udb.gateway import ENV_GATEWAY
from ess.workspace import Workspace

#: Where a worker keeps the shipped spec files, inside its Dask scratch directory (removed with
#: the worker): one directory per distinct set of definitions.
SPEC_DIR = "ess-udb-specs"
#: This build's command-line tools, linked into a directory of their own (next to the specs)
#: that goes first on the command's PATH.
TOOLS = ("aq_pp", "aq_udb", "ess")
TOOLS_DIR = "ess-bin"
ACTIVE_FILE = "udb.active"
__all__ = ["ENV_ADDRESS", "ENV_CLUSTER", "ENV_TLS_DIR", "ENV_TLS_FILES", "ENV_WORKERS",
           "connection_from_env"]  # fmt: skip


@dataclass(frozen=True)
class UdbBundle:
    """What a remote command needs from the master's ``ESS_WORK_DIR`` (no secrets)."""

    cluster_id: str
    worker_names: tuple[str, ...]
    specs: tuple[tuple[str, str], ...]  # (database name as the file is named, spec text)
    active: str = ""

    def digest(self) -> str:
        h = hashlib.sha256()
        for name, text in (*self.specs, (ACTIVE_FILE, self.active)):
            h.update(f"{len(name)}:{name}{len(text)}:{text}".encode())
        return h.hexdigest()[:24]


def pipeline_env(ctx: RunContext) -> PipelineEnv | None:
    """The UDB bundle for commands on workers of other machines (registered below)."""
    if ctx.pool.shared_filesystem:
        return None  # local workers see ESS_WORK_DIR itself (passed by stream/exec)
    # the expected workers, as a session on the master sees them: the partition map must match
    conn = ctx.connection
    if conn is not None:
        b = bundle(ctx.ws, cluster_id=conn.cluster_id, worker_names=conn.worker_names)
    else:
        b = bundle(ctx.ws, cluster_id="", worker_names=ctx.pool.node_names)
    return PipelineEnv(
        hook=WorkerHook(fn=command_env, payload=b, failure="cannot write the UDB definitions here")
    )


def gateway_env(ctx: RunContext) -> PipelineEnv | None:
    """For a stream on a cluster: each worker runs its UDB import gateway (ess.udb.gateway),
    started by the first command that may import; its aq_pp -imp share its connection."""
    from ess import settings
    from ess.udb.commit import IMPORT_WORDS

    if ctx.kind is not RunKind.STREAM or ctx.connection is None:
        return None
    if not any(word in ctx.command for word in IMPORT_WORDS) or settings.env(ENV_GATEWAY) == "0":
        return None
    conn = ctx.connection
    names = getattr(conn, "worker_names", None)
    if names is None:  # not a cluster connection the gateway could use
        return None
    payload = (str(getattr(conn, "cluster_id", "")), tuple(names), ctx.pool.shared_filesystem)
    return PipelineEnv(hook=WorkerHook(fn=gateway_hook, payload=payload,
                                       failure="cannot start the UDB import gateway"))  # fmt: skip


def gateway_hook(payload: tuple[str, tuple[str, ...], bool]) -> Mapping[str, str]:
    """On the worker: this process's gateway (started once), or nothing (the command opens
    its own connection, as without a gateway) if it cannot be had."""
    from distributed import get_worker

    from ess.udb.gateway import ensure

    cluster_id, names, shared = payload
    try:
        worker = get_worker()
        conn = connection_from_env(_cluster_env(worker, names, cluster_id))
        if conn is None:
            return {}
        return ensure(Path(worker.local_directory), replace(conn, shared_filesystem=shared))
    except Exception:  # never worse than the cold path
        return {}


register_env_provider("udb", pipeline_env)
register_env_provider("udb-gateway", gateway_env)  # one UDB connection per worker process
register_env_provider("udb-commit", stream_hooks)  # staged imports of ess stream, in file order


def exec_follower(environ: Mapping[str, str] | None = None) -> bool:
    """True for a command run by ``ess exec`` on any node but its first: aq_udb there does
    nothing. The UDB is one database for the whole cluster, so a query (or -ord, -clr) run on
    every node would print every row once per node (or act N times); run on the first node
    only, it prints each row once with -sort/-top applied globally."""
    env = os.environ if environ is None else environ
    return env.get(ENV_EXEC_NODE, "") not in ("", "1")


def bundle(ws: Workspace, *, cluster_id: str, worker_names: tuple[str, ...]) -> UdbBundle:
    """The master's definitions, read now: a stream sees the specs as they are when it starts."""
    from ess.udb import spec

    specs = tuple((name, spec.spec_path(ws, name).read_text()) for name in spec.list_databases(ws))
    try:
        active = (ws.work_dir / ACTIVE_FILE).read_text().strip()
    except FileNotFoundError:
        active = ""
    return UdbBundle(cluster_id=cluster_id, worker_names=worker_names, specs=specs, active=active)


def _materialize(b: UdbBundle, root: Path) -> Path:
    """Write the bundle's spec files under ``root/<digest>`` once (atomic: a directory rename),
    so concurrent pipelines on a worker never see half a set."""
    final = root / b.digest()
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
    try:
        for name, text in b.specs:
            (tmp / f"{name}.spec").write_text(text)
        if b.active:
            (tmp / ACTIVE_FILE).write_text(b.active + "\n")
        os.chmod(tmp, 0o755)
        os.rename(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not final.is_dir():  # another pipeline won the race otherwise
            raise
    return final


def command_env(b: UdbBundle) -> Mapping[str, str]:
    """Environment for a command run by this Dask worker (call it inside a worker task)."""
    from distributed import get_worker

    worker = get_worker()
    env = _cluster_env(worker, b.worker_names, b.cluster_id)
    scratch = Path(worker.local_directory)
    env["PATH"] = os.pathsep.join([str(_tools_dir(scratch)), os.environ.get("PATH", "")])
    env["ESS_WORK_DIR"] = str(_materialize(b, scratch / SPEC_DIR))
    return env


def _cluster_env(worker: Any, names: tuple[str, ...], cluster_id: str) -> dict[str, str]:
    """How a command of this worker reaches its cluster: the scheduler, the worker's own TLS
    identity, the expected worker names (see connection_from_env)."""
    cert = getattr(worker.security, "tls_worker_cert", None)
    env = {
        ENV_ADDRESS: str(worker.scheduler.address),
        ENV_TLS_DIR: str(Path(cert).parent) if cert else "",
        ENV_WORKERS: ",".join(names),
        ENV_CLUSTER: cluster_id,
    }
    files = [getattr(worker.security, f"tls_{n}", None) for n in ("ca_file", "worker_cert")]
    files.append(getattr(worker.security, "tls_worker_key", None) or cert)  # key in the cert
    if all(files):
        env[ENV_TLS_FILES] = os.pathsep.join(str(f) for f in files)
    return env


def _tools_dir(scratch: Path) -> Path:
    """aq_pp, aq_udb and ess of this worker's build, alone in a directory: putting the whole
    virtualenv ``bin`` first on PATH would also shadow the host's python3, pip, ..."""
    venv_bin = Path(sys.executable).parent
    tools = scratch / TOOLS_DIR
    tools.mkdir(parents=True, exist_ok=True)
    for name in TOOLS:
        link, target = tools / name, venv_bin / name
        if target.exists() and not link.exists():
            tmp = tools / f".{name}.{os.getpid()}.{threading.get_ident()}"
            os.symlink(target, tmp)
            os.replace(tmp, link)  # atomic: concurrent pipelines never see a half-made link
    return tools

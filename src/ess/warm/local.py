"""``ess stream`` on the local default (no cluster) starts a warm service for its commands.

:func:`local_provider` is registered with ess.run.env when this module is imported (the
command line imports it, as it does ess.udb.remote). A node's worker starts its own service
(ess.engine.serve runs ``python -m ess.warm.service``). Either way the commands find it through
``ESS_WARM_SOCKET``, and the service stops with the process that started it."""

from __future__ import annotations

import atexit
import itertools
import os

from ess.run.env import PipelineEnv, RunContext, RunKind, register_env_provider
from ess.warm import service
from ess.warm.fastbin import bin_dir
from ess.warm.paths import ENV_SOCKET, runtime_dir, warm_enabled

_counter = itertools.count()
#: Seconds a stream waits for its service before starting commands (cold until it is up).
READY_WAIT = 10.0


def local_provider(ctx: RunContext) -> PipelineEnv | None:
    """A service for the files of one ``ess stream`` run on this machine without a cluster
    (the stream's commands run as this process's children): it lives as long as this process.
    The stream waits for it (up to READY_WAIT s); ``ess exec`` (one command) and streams whose
    command names neither aq_pp nor aq_udb start none (a script that calls them runs cold)."""
    if ctx.kind is not RunKind.STREAM or ctx.connection is not None or not warm_enabled():
        return None  # a cluster's workers have their own services
    if ctx.command and not any(tool in ctx.command for tool in ("aq_pp", "aq_udb")):
        return None  # nothing to start warm (wc -l, grep ...): do not pay the service's start
    base = runtime_dir(create=True)
    if base is None:
        return None
    sock = os.path.join(base, f"run-{os.getpid()}-{next(_counter)}.sock")
    try:
        svc = service.start(socket=sock, watch_pid=os.getpid())
    except OSError:
        return None
    atexit.register(svc.stop)
    # wait for it (about a second of imports): commands started meanwhile would run cold and
    # compete with those imports for the CPU; bounded, so a slow start costs little
    svc.ready(timeout=READY_WAIT)
    path = f"{bin_dir(sock)}{os.pathsep}{os.environ.get('PATH', '')}"  # its fast launchers
    return PipelineEnv(env=((ENV_SOCKET, sock), ("PATH", path)))


register_env_provider("warm", local_provider)

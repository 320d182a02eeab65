"""The workers of a cloud cluster as the scheduler sees them: who joined, which build they run,
their figures for ``ess cluster status``, re-syncing and detaching them (through
:mod:`ess.cluster.node_agent`, run on the workers by ``client.run``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ess.cluster.bootstrap import BootConfig, build_id
from ess.engine.client import joined_workers


def wait_for_join(
    client: Any,
    instance_ids: list[str],
    *,
    timeout: float,
    address: str,
    boot: Callable[[], BootConfig],
) -> list[str]:
    """Wait for the workers of ``instance_ids`` to join and run the master's build (re-syncing
    those that run another with ``boot()``); problems for the ones that never made it."""
    deadline = time.monotonic() + timeout
    resynced = False
    while True:
        joined = joined_workers(client)
        missing = [i for i in instance_ids if i not in joined]
        stale = [] if missing else stale_workers(client, joined)
        if stale and not resynced:
            resync(client, boot(), [joined[i] for i in stale])
            resynced = True
        if (not missing and not stale) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    problems = [
        f"instance {i} did not join the scheduler at {address} within "
        f"{timeout:g} s (see /opt/ess/boot.log on the node; ESS_EC2_JOIN_TIMEOUT "
        "sets the wait)"
        for i in missing
    ]
    problems += [f"instance {i} could not be re-synced to {build_id()}" for i in stale]
    return problems


def stale_workers(client: Any, joined: dict[str, str]) -> list[str]:
    """Instance ids of joined workers that run another build than the master."""
    from ess.cluster import node_agent

    if not joined:
        return []
    infos = client.run(node_agent.node_info, workers=list(joined.values()), on_error="return")
    build = build_id()
    names = {addr: name for name, addr in joined.items()}
    return sorted(
        names[a]
        for a, info in infos.items()
        if a in names and (not isinstance(info, dict) or info.get("build") != build)
    )


def resync(client: Any, boot: BootConfig, addresses: list[str]) -> None:
    """Install the master's build on these workers; they restart with it."""
    from ess.cluster import node_agent

    client.run(
        node_agent.resync,
        boot.wheel_url,
        boot.wheel_file,
        boot.build,
        workers=addresses,
        on_error="return",
    )


def node_infos(client: Any) -> dict[str, dict[str, Any]]:
    """Instance id -> build, CPU, memory and disk of each joined worker."""
    from ess.cluster import node_agent

    joined = joined_workers(client)
    if not joined:
        return {}
    by_addr = client.run(node_agent.node_info, workers=list(joined.values()), on_error="return")
    names = {addr: name for name, addr in joined.items()}
    return {names[a]: v for a, v in by_addr.items() if isinstance(v, dict) and a in names}


def detach(client: Any, instance_ids: list[str]) -> None:
    """Stop the workers of these instances for good (they leave the cluster)."""
    from ess.cluster import node_agent

    joined = joined_workers(client)
    addrs = [joined[i] for i in instance_ids if i in joined]
    if addrs:
        client.run(node_agent.detach, workers=addrs, on_error="return")
        client.retire_workers(workers=addrs, close_workers=True)

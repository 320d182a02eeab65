"""``ess exec``: one command on every node (or on the master), outputs in node order.

A node is a machine. The workers of a local cluster are processes of this one machine and
share its filesystem, so exec runs there once (as Essentia's local install did), while stream
still spreads files over all of them. Each exec command learns its position among the nodes in
``ESS_EXEC_NODE`` (1 = the first node): tools that must act once per exec, not once per node
(aq_udb, see docs/udb.md "ess exec and the UDB"), look at it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from ess.engine.pool import Completions, LocalPool, TaskPool
from ess.errors import ClusterError
from ess.run.pipeline import (
    ENV_EXEC_NODE,
    NODE_ID,
    THREAD_ID,
    Pipeline,
    PipelineResult,
    run_pipeline,
)
from ess.run.stream import shell_env
from ess.run.substitute import substitute


@dataclass(frozen=True)
class ExecRequest:
    command: str
    master: bool = False
    debug: bool = False
    s3out: str | None = None


def build_exec_pipelines(
    command: str,
    *,
    node_names: tuple[str, ...],
    threads_per_node: int,
    in_caller_dir: bool,
    output: tuple[object, str] | None = None,
) -> list[Pipeline]:
    """One pipeline per node, in node order. ``in_caller_dir``: run in this directory with
    this PATH (nodes that share this machine's filesystem but are other processes)."""
    values = {
        "num_nodes": str(len(node_names)),
        "num_threads": str(threads_per_node),
        "node_id": NODE_ID,
        "thread_id": THREAD_ID,
    }
    cwd = os.getcwd() if in_caller_dir else None
    env = shell_env() if in_caller_dir else ()
    out = (output[0], substitute(output[1], values)) if output is not None else None
    run_id = uuid.uuid4().hex
    return [
        Pipeline(
            index=i,
            label=name,
            command=substitute(command, values),
            env=(*env, (ENV_EXEC_NODE, str(i + 1))),
            cwd=cwd,
            output=out,
            run_id=run_id,
        )
        for i, name in enumerate(node_names)
    ]


def exec_nodes(pool: TaskPool) -> tuple[str, ...]:
    """The nodes exec runs on: one per machine. Workers that share this machine's filesystem
    (a local cluster) are one machine: the first of them stands for it."""
    return pool.node_names[:1] if pool.shared_filesystem else pool.node_names


def exec_pipelines(
    pool: TaskPool, command: str, *, output: tuple[object, str] | None = None
) -> list[Pipeline]:
    in_caller_dir = pool.shared_filesystem and not isinstance(pool, LocalPool)
    return build_exec_pipelines(
        command,
        node_names=exec_nodes(pool),
        threads_per_node=pool.threads_per_node,
        in_caller_dir=in_caller_dir,
        output=output,
    )


def run_exec(pool: TaskPool, pipelines: list[Pipeline]) -> Iterator[PipelineResult]:
    """Run pipeline i on exec node i; yield the results in node order.

    A node that cannot run its command at all (e.g. it died) fails the whole exec at once,
    without waiting for the other nodes.
    """
    run_id = pipelines[0].run_id if pipelines else ""
    pool.begin_run(run_id)
    futures = [
        pool.submit(run_pipeline, p, node=name)
        for p, name in zip(pipelines, exec_nodes(pool), strict=True)
    ]
    index = {id(f): i for i, f in enumerate(futures)}
    completions = Completions()
    for f in futures:
        completions.watch(f)
    ready: dict[int, PipelineResult] = {}
    next_yield = 0
    try:
        while next_yield < len(futures):
            if next_yield in ready:
                yield ready.pop(next_yield)
                next_yield += 1
                continue
            done = [f for f in completions.wait() if id(f) in index]
            for f, outcome in zip(done, pool.outcomes(done), strict=True):
                if outcome.error is not None:
                    raise ClusterError(f"exec failed: {outcome.error}")
                ready[index[id(f)]] = outcome.value
    except BaseException:  # ^C, SIGTERM, a failed node, or the caller stopped iterating
        pool.cancel_run(run_id)
        raise
    finally:
        pool.cancel(futures)

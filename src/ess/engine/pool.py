"""Where tasks run: a Dask cluster (``DaskPool``) or this machine's cores (``LocalPool``).

Both expose the same small interface over futures, so stream/exec/file code does not care
which one it got: ``submit`` a picklable callable, learn about completions through
:class:`Completions` (a queue fed by ``add_done_callback``), and ``outcomes`` to fetch the
results of finished futures in one round trip.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ess.errors import ClusterError

#: Every worker our daemons start (:mod:`ess.engine.serve`) owns this many "slots"; a stream
#: task with --threads T takes SLOTS // T of them.
SLOTS = 5040  # divisible by 1..10 and many more
#: Threads per worker process: pipelines mostly wait on their subprocess, so this only caps
#: ``--threads``.
WORKER_THREADS = 16


_task = threading.local()


def node_number() -> int | None:
    """The 1-based place, in its pool's node order, of the worker running this task, when the
    pool told it (workers named by whoever runs the cluster, not ``worker-N``), else None."""
    return getattr(_task, "number", None)


def _numbered(numbers: dict[str, int], fn: Callable[..., Any], *args: Any) -> Any:
    from distributed import get_worker

    _task.number = numbers.get(str(get_worker().name))
    try:
        return fn(*args)
    finally:
        _task.number = None


@dataclass(frozen=True)
class Outcome:
    value: Any = None
    error: BaseException | None = None


class TaskPool(ABC):
    #: Names of the nodes tasks can be pinned to (``worker-1`` ...; ``master`` for LocalPool).
    node_names: tuple[str, ...]
    #: Concurrent tasks per node.
    threads_per_node: int
    #: Nodes see this machine's files and current directory.
    shared_filesystem: bool

    @property
    def num_nodes(self) -> int:
        return len(self.node_names)

    @property
    def total_slots(self) -> int:
        return self.num_nodes * self.threads_per_node

    @abstractmethod
    def submit(self, fn: Callable[..., Any], *args: Any, node: str | None = None) -> Any: ...

    @abstractmethod
    def outcomes(self, futures: list[Any]) -> list[Outcome]: ...

    @abstractmethod
    def wait(self, futures: list[Any]) -> None:
        """Block until every future is done (finished, failed or cancelled)."""

    @abstractmethod
    def cancel(self, futures: Iterable[Any]) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def begin_run(self, run_id: str) -> None:
        """Tasks submitted from now on run pipelines of command run ``run_id``: a pool whose
        other end can outlive this process (the gateway) cancels the run when it loses us."""
        return None  # the other pools end with this process

    def cancel_run(self, run_id: str) -> None:
        """Stop command run ``run_id`` everywhere its pipelines run: none starts any more and
        the running ones' process groups are ended (see :mod:`ess.engine.runs`). Here: this
        process's own pipelines."""
        from ess.engine import runs

        runs.cancel(run_id)

    def __enter__(self) -> TaskPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Longest uninterrupted block of the main thread: a signal (^C, SIGTERM) the kernel hands to
#: another thread (an event loop, a pipeline's reader) interrupts no wait of the main thread,
#: so its handler runs only when the main thread next wakes up.
POLL = 0.2


def _get(q: queue.SimpleQueue[Any], timeout: float | None) -> Any:
    if timeout is not None:
        return q.get(timeout=timeout)
    while True:
        try:
            return q.get(timeout=POLL)
        except queue.Empty:
            continue


def wait_all(futures: Iterable[Future[Any]]) -> None:
    """``concurrent.futures.wait`` that lets the main thread's signal handlers run."""
    from concurrent.futures import wait

    pending = list(futures)
    while pending:
        _, not_done = wait(pending, timeout=POLL)
        pending = list(not_done)


class Completions:
    """Futures report here when they finish (from whatever thread finishes them)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def watch(self, future: Any) -> None:
        future.add_done_callback(self._queue.put)

    def wait(self, timeout: float | None = None) -> list[Any]:
        """Block until at least one future is done; return every future done so far."""
        done = [_get(self._queue, timeout)]
        while True:
            try:
                done.append(self._queue.get_nowait())
            except queue.Empty:
                return done


class LocalPool(TaskPool):
    """Threads of this process. Pipelines run as subprocesses and gzip decompression (isal)
    releases the GIL, so threads use all cores without the cost of starting processes."""

    shared_filesystem = True

    def __init__(self, *, threads: int | None = None) -> None:
        self.threads_per_node = max(1, threads or os.cpu_count() or 1)
        self.node_names = ("master",)
        self._executor = ThreadPoolExecutor(self.threads_per_node, thread_name_prefix="ess")

    def submit(self, fn: Callable[..., Any], *args: Any, node: str | None = None) -> Future[Any]:
        return self._executor.submit(fn, *args)

    def outcomes(self, futures: list[Any]) -> list[Outcome]:
        result = []
        for f in futures:
            if f.cancelled():
                result.append(Outcome(error=ClusterError("cancelled")))
                continue
            exc = f.exception()
            result.append(Outcome(error=exc) if exc is not None else Outcome(value=f.result()))
        return result

    def wait(self, futures: list[Any]) -> None:
        wait_all(futures)

    def cancel(self, futures: Iterable[Any]) -> None:
        for f in futures:
            f.cancel()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


class DaskPool(TaskPool):
    """The workers of a running cluster. Worker death is handled by Dask: the scheduler
    re-runs the lost tasks on the remaining workers (tasks are idempotent by design)."""

    def __init__(self, client: Any, *, shared_filesystem: bool, threads: int | None = None) -> None:
        self.client = client
        self.shared_filesystem = shared_filesystem
        self.threads_per_node = min(max(1, threads or 1), WORKER_THREADS)
        workers = client.scheduler_info(n_workers=-1)["workers"]
        by_name = {str(info.get("name", addr)): addr for addr, info in workers.items()}
        self._address = dict(sorted(by_name.items(), key=lambda kv: _node_order(kv[0])))
        self.node_names = tuple(self._address)
        if not self.node_names:
            raise ClusterError("the cluster has no workers")
        _give_slots(client, workers)
        self._resources = {"slots": SLOTS // self.threads_per_node}
        # ``worker-N`` names carry their number (%node_id); other names learn it with each task
        numbered = all(n.rpartition("-")[2].isdigit() for n in self.node_names)
        self._numbers = None if numbered else {n: i for i, n in enumerate(self.node_names, 1)}

    def submit(self, fn: Callable[..., Any], *args: Any, node: str | None = None) -> Any:
        if self._numbers is not None:
            fn, args = _numbered, (self._numbers, fn, *args)
        if node is None:
            return self.client.submit(fn, *args, pure=False, resources=self._resources)
        return self.client.submit(
            fn, *args, pure=False, workers=[self._address[node]], allow_other_workers=False
        )

    def outcomes(self, futures: list[Any]) -> list[Outcome]:
        ok = [f for f in futures if f.status == "finished"]
        gathered = self.client.gather(ok, errors="raise") if ok else []
        values = {id(f): v for f, v in zip(ok, gathered, strict=True)}
        result = []
        for f in futures:
            if id(f) in values:
                result.append(Outcome(value=values[id(f)]))
            elif f.status == "error":
                result.append(Outcome(error=f.exception()))
            else:
                result.append(Outcome(error=ClusterError(f"task {f.status}")))
        return result

    def wait(self, futures: list[Any]) -> None:
        for f in futures:
            with contextlib.suppress(Exception):
                f.exception()  # blocks until done; the error itself is read by outcomes()

    def cancel(self, futures: Iterable[Any]) -> None:
        futures = list(futures)
        if futures:
            self.client.cancel(futures)

    def cancel_run(self, run_id: str) -> None:
        from ess.engine import runs

        with contextlib.suppress(Exception):  # a worker that cannot be told is going away
            self.client.run(runs.cancel, run_id, on_error="ignore")

    def close(self) -> None:
        self.client.close()


def _give_slots(client: Any, workers: dict[str, Any]) -> None:
    """Workers of a cluster someone else runs (the dask platform) start without our "slots"
    resource: give it to them. Without it pipelines would take every thread of a worker, and
    an ``aq_pp -imp`` inside them, which needs a thread of some worker for its import tasks,
    would wait forever."""
    bare = [a for a, info in workers.items() if "slots" not in (info.get("resources") or {})]
    if bare:
        client.run(_add_slots, workers=bare)


async def _add_slots(dask_worker: Any) -> None:
    if "slots" not in dask_worker.state.total_resources:
        await dask_worker.set_resources(slots=SLOTS)


def _node_order(name: str) -> tuple[int, str]:
    head, _, num = name.rpartition("-")
    return (int(num), head) if num.isdigit() else (1 << 30, name)

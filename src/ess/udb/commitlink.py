"""How a stream's committer (ess.udb.commit) reaches the cluster.

Through the scheduler's task gateway (ess.engine.gateway) when the stream runs its files
through it: the committer then needs no Dask client of its own and the ``ess`` process never
imports Dask, Polars or the worker-side UDB code (about 0.6 s of CPU per stream, and one
client less for the scheduler to serve). The functions it runs elsewhere travel by name
(:class:`Remote`). A direct import's commit (``aq_pp -imp`` outside a stream) goes through the
importer's own UDB session instead (:class:`SessionLink`).
"""

from __future__ import annotations

import contextlib
import importlib
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from ess.engine.gateway import GatewayPool, WorkerLost
from ess.errors import UdbError
from ess.udb.conn import REVIVE_WAIT, TASK_TIMEOUT, revive
from ess.workspace import Workspace

#: how long a short call on the scheduler may take before the commit gives up
SCHEDULER_CALL_WAIT = 60.0
RESTART = (
    ": restart the cluster ('ess cluster stop' and 'ess cluster start', or 'ess udbd stop' "
    "and 'ess udbd start' on the local default) and run the stream again"
)
OLD_SCHEDULER = " (a scheduler started by an older ess does not know the commit's calls)" + RESTART
#: one worker's share of a group of files: [(file, attempt, [(part, seq, stamp base)])]
Share = list[tuple[int, str, list[tuple[int, int, int]]]]
Plan = dict[str, Share]


@dataclass(frozen=True)
class Remote:
    """A module-level function by its name: pickling it pickles the name only, so the caller
    need not import the function's module (the worker or scheduler that runs it does)."""

    module: str
    name: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function()(*args, **kwargs)

    def function(self) -> Any:
        return getattr(importlib.import_module(self.module), self.name)


TAKE = Remote("ess.udb.staging", "s_take_files")
FORGET = Remote("ess.udb.staging", "s_forget")
RESERVE = Remote("ess.udb.stamps", "reserve_stamps")
COMMIT = Remote("ess.udb.server", "w_commit_files")
DROP = Remote("ess.udb.staging", "w_drop")


class CommitLink(Protocol):
    def on_scheduler(self, fn: Any, **kwargs: Any) -> Any:
        """`fn(dask_scheduler=..., **kwargs)` on the scheduler; its result."""

    def take(self, run: str, files: list[int]) -> list[Any]:
        """ess.udb.staging.s_take_stamped of each of `files`."""

    def ensure(self, names: list[str], deadline: float) -> None:
        """Before (again) committing on `names`: revive the workers of them that died, or
        fail with UdbError past `deadline`."""

    def apply(self, plan: Plan, run: str) -> list[str]:
        """`w_commit_files` of each worker's share on that worker; the names of those that
        were gone (to be tried again). Raises the first error once every share has ended."""

    def each_worker(self, fn: Any, *args: Any) -> None:
        """`fn(*args)` on every worker (errors raised)."""

    def close(self) -> None: ...


def s_worker_names(dask_scheduler: Any) -> list[str]:
    """Run on the scheduler: the names of the connected workers."""
    return sorted(str(ws.name) for ws in dask_scheduler.workers.values())


def s_take_seeing_workers(dask_scheduler: Any, run: str, files: list[int]
                          ) -> tuple[list[Any], list[str]]:  # fmt: skip
    """Run on the scheduler: s_take_files, and the connected workers' names (the commit
    then needs no second call to learn that its workers are all there)."""
    from ess.udb.staging import s_take_files

    return s_take_files(dask_scheduler, run, files), s_worker_names(dask_scheduler)


WORKERS = Remote(__name__, "s_worker_names")
TAKE_SEEING = Remote(__name__, "s_take_seeing_workers")


def _revive_until(present: Callable[[], set[str]], names: list[str], deadline: float,
                  ws: Workspace) -> None:  # fmt: skip
    """Until every one of `names` is `present`: revive the cluster's dead daemons, or fail
    with UdbError past `deadline`."""
    while True:
        missing = [n for n in names if n not in present()]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise UdbError(
                f"worker(s) {', '.join(missing)} stopped and did not come back within "
                f"{REVIVE_WAIT:.0f} s: their part of this file was not applied"
            )
        revive(ws)
        time.sleep(0.5)


class GatewayLink:
    """Through the stream's own gateway pool (which the stream closes, not this link)."""

    def __init__(self, pool: GatewayPool, ws: Workspace) -> None:
        self.pool, self.ws = pool, ws
        self.seen: set[str] = set()  # workers connected at the last take

    def on_scheduler(self, fn: Any, **kwargs: Any) -> Any:
        return _result(self.pool.on_scheduler(fn, **kwargs), SCHEDULER_CALL_WAIT, OLD_SCHEDULER)

    def take(self, run: str, files: list[int]) -> list[Any]:
        taken, names = self.on_scheduler(TAKE_SEEING, run=run, files=files)
        self.seen = set(names)
        return taken

    def ensure(self, names: list[str], deadline: float) -> None:
        if all(n in self.seen for n in names):
            self.seen = set()  # a retry after a worker was lost asks again
            return
        # the gateway would wait for a missing worker, but only this side can revive it
        _revive_until(lambda: set(self.on_scheduler(WORKERS)), names, deadline, self.ws)

    def apply(self, plan: Plan, run: str) -> list[str]:
        # a worker not connected fails at once: `ensure` revives it (the gateway cannot)
        futures = {name: self.pool.submit(COMMIT, run, share, node=name, node_wait=0.0)
                   for name, share in plan.items()}  # fmt: skip
        return _shares({n: partial(_result, f) for n, f in futures.items()}, WorkerLost)

    def each_worker(self, fn: Any, *args: Any) -> None:
        # the connected workers only, as a session's each_worker: one that is down is not
        # waited for (its stale staging is swept when it starts)
        futures = [self.pool.submit(fn, *args, node=n, node_wait=0.0)
                   for n in self.pool.node_names]  # fmt: skip
        for future in futures:
            with contextlib.suppress(WorkerLost):
                _result(future)

    def close(self) -> None:
        pass


class SessionLink:
    """Through a UDB session (a Dask client): a direct import's, or a stream's without a
    gateway pool (then `owned`: closed with the link)."""

    def __init__(self, session: Any, *, owned: bool) -> None:
        self.session, self.owned = session, owned
        self.addrs: dict[str, str] = {}

    def on_scheduler(self, fn: Any, **kwargs: Any) -> Any:
        # Dask looks for a `dask_scheduler` parameter in the function's own signature
        real = fn.function() if isinstance(fn, Remote) else fn
        return self.session.client.run_on_scheduler(real, **kwargs)

    def take(self, run: str, files: list[int]) -> list[Any]:
        return list(self.on_scheduler(TAKE, run=run, files=files))

    def ensure(self, names: list[str], deadline: float) -> None:
        def present() -> set[str]:
            self.addrs = self.session.addresses()
            return set(self.addrs)

        _revive_until(present, names, deadline, self.session.ws)

    def apply(self, plan: Plan, run: str) -> list[str]:
        from ess.udb.client import WorkerGone

        s = self.session
        futures = {name: s._run(self.addrs[name], COMMIT, run, share)
                   for name, share in plan.items()}  # fmt: skip
        return _shares({n: partial(s.gather, [f]) for n, f in futures.items()}, WorkerGone)

    def each_worker(self, fn: Any, *args: Any) -> None:
        self.session.each_worker(fn, *args)

    def close(self) -> None:
        if self.owned:
            self.session.close()


def open_link(ws: Workspace, pool: Any) -> CommitLink:
    """The stream's gateway pool if it has one, else a UDB session of its own."""
    if isinstance(pool, GatewayPool):
        return GatewayLink(pool, ws)
    from ess.udb.client import UdbSession

    return SessionLink(UdbSession(ws), owned=True)


def _shares(waits: dict[str, Callable[[], Any]], gone: type[Exception]) -> list[str]:
    """Wait for every worker's share; the names whose worker was `gone`. The first other
    error is raised once all have ended: a worker still applying its share must not race
    with what the caller does next."""
    missing: list[str] = []
    errors: list[Exception] = []
    for name, wait in waits.items():
        try:
            wait()
        except gone:
            missing.append(name)
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]
    return missing


#: what a scheduler or worker started by an older ess answers to this version's calls
_OLDER = ("unexpected keyword argument", "has no attribute 'w_commit_files'",
          "has no attribute 's_take_files'")  # fmt: skip


def _result(future: Future[Any], timeout: float = TASK_TIMEOUT, why: str = "") -> Any:
    """`future`'s result within `timeout`, else UdbError (`why` says what to do)."""
    try:
        return future.result(timeout=timeout)
    except TimeoutError:
        raise UdbError(f"a UDB task did not finish within {timeout:.0f} s{why}") from None
    except Exception as exc:
        raise older_cluster(exc) from None


def older_cluster(exc: Exception) -> Exception:
    """`exc`, or a UdbError saying to restart the cluster when it is a daemon of an older ess
    not knowing this version's commit calls (it runs the code it started with)."""
    text = str(exc)
    if not any(sign in text for sign in _OLDER):
        return exc
    return UdbError(f"the cluster's daemons run an older ess ({text}){RESTART}")

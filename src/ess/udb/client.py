"""The client side of the UDB: find the cluster, map partitions onto workers, import batches,
run queries on the workers and merge their answers.

Placement: every database has ``PARTITIONS`` hash partitions (stable key hash, see
:mod:`ess.udb.hashing`); partition p lives on the worker with the highest
``blake2b(worker name, p)`` score among the cluster's workers (rendezvous hashing), so adding or
removing a worker moves only the partitions whose owner changed (:meth:`UdbSession.rebalance`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import time
import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any

import polars as pl
import pyarrow as pa

from ess.errors import UdbError
from ess.udb import handoff, hashing, merge, moves, server, staging, stamps
from ess.udb import spec as udb_spec
from ess.udb.conn import REVIVE_WAIT, TASK_TIMEOUT, revive
from ess.udb.server import Query
from ess.udb.spec import DbSpec
from ess.workspace import Workspace

PARTITIONS = 32
#: seconds between checks, while waiting for a task, that its worker still runs
WORKER_CHECK = 2.0
#: import batches cut in advance (threads) while the previous one is shipped
PREPARED_AHEAD = 2


def owner(pid: int, workers: Iterable[str]) -> str:
    def score(name: str) -> bytes:
        return hashlib.blake2b(f"{name}\0{pid}".encode(), digest_size=8).digest()

    return max(workers, key=score)


def placement(workers: Iterable[str], partitions: int = PARTITIONS) -> dict[int, str]:
    names = sorted(workers)
    return {pid: owner(pid, names) for pid in range(partitions)}


def parse_target(text: str) -> tuple[str, str]:
    """`db:tab` → (db, tab); `db` or `db:.` → (db, "."); `db:var` → (db, "var")."""
    db, _, tab = text.partition(":")
    if not db:
        raise UdbError(f"bad target {text!r}: expected Db[:Tab]")
    return db, (tab or ".")


@dataclass
class Target:
    spec: DbSpec
    name: str  # "." key set, "var", or a table/vector name (as defined)

    @property
    def text(self) -> str:
        return self.spec.text()


class UdbSession:
    """A Dask client on the running cluster plus the partition map."""

    #: inside ess stream: imports are staged for the stream to commit (ess.udb.commit)
    stager: Any = None

    def __init__(
        self, ws: Workspace, *, revive: bool = True, timeout: float = 30.0, conn: Any = None
    ) -> None:
        """A new client on `conn` (default: the cluster of this command or work directory)."""
        from ess.cluster.provider import provider_for
        from ess.engine.client import SchedulerUnreachable, connect
        from ess.udb.conn import connection_from_env

        self.ws = ws
        # inside a command that ess stream/exec runs on a remote worker: that worker's cluster
        remote = connection_from_env()
        #: whether a worker that died may be restarted from here (see _reviving)
        self.can_revive = remote is None
        self.owns_client = True
        conn = conn or remote or provider_for(ws).connection(revive=revive)
        if conn is None:
            raise UdbError("no cluster is running: start the UDB with 'ess udbd start'")
        self.conn = conn
        try:
            # a host's Python patch level may differ from the master's (custom clusters): Dask's
            # version table on stderr of every aq_pp/aq_udb is noise ('ess cluster start' checks).
            # A worker still missing after the wait is reported, with the partitions it holds,
            # by the first operation that needs it (never a partial answer).
            self.client = connect(
                conn,
                timeout=timeout,
                wait="try",
                wait_timeout=timeout if revive else 2,
                hide_version_warnings=True,
            )
        except SchedulerUnreachable as exc:
            raise UdbError(f"cannot reach the scheduler at {conn.address}: {exc.reason}") from exc
        self.workers = tuple(sorted(conn.worker_names))
        self.place = placement(self.workers)
        self.shipper = handoff.Shipper(self._sees)  # import batches through shared memory

    def _sees(self, address: str, folder: str, token: str) -> bool:
        return bool(self.gather([self._run(address, handoff.sees, folder, token)])[0])

    def share(self, ws: Workspace, stager: Any, *, can_revive: bool) -> UdbSession:
        """A session for one more importer on this session's client (the UDB import gateway,
        ess.udb.gateway): its own stager, hand-over directory and task bookkeeping, so
        concurrent imports never touch each other's state; closing it leaves the client."""
        view = copy.copy(self)
        view.__dict__.pop("pinned", None)  # its own (a cached_property)
        view.ws, view.stager, view.can_revive, view.owns_client = ws, stager, can_revive, False
        view.shipper = handoff.Shipper(view._sees)
        view.shipper.shared = self.shipper.shared  # which workers see /dev/shm: asked once
        return view

    def close(self) -> None:
        self.shipper.close()
        if self.owns_client:
            self.client.close()

    def __enter__(self) -> UdbSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ workers
    def addresses(self) -> dict[str, str]:
        # asked of the scheduler itself: Client.scheduler_info() returns a cached answer that
        # Dask's periodic refresh may overwrite, between the fetch and the read, with one
        # listing no workers (seen under load: "workers ... are not running" mid-import)
        scheduler = self.client.scheduler
        assert scheduler is not None  # set while the session's client is open
        info = self.client.sync(scheduler.identity, n_workers=-1)["workers"]
        return {str(w.get("name")): addr for addr, w in info.items()}

    def _require_workers(self, db: str, pids: Iterable[int]) -> dict[str, str]:
        """name → address of each worker owning `pids`; error naming missing ones."""
        addrs = self.addresses()
        missing: dict[str, list[int]] = {}
        for pid in pids:
            name = self.place[pid]
            if name not in addrs:
                missing.setdefault(name, []).append(pid)
        if missing:
            detail = "; ".join(
                f"{name} (partitions {', '.join(map(str, sorted(p)))})"
                for name, p in sorted(missing.items())
            )
            raise WorkerGone(
                f"database {db}: worker(s) holding data are not running: {detail}; no partial "
                "answer is given — bring them back ('ess cluster start') and retry"
            )
        return addrs

    def _run(self, address: str, func: Any, *args: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fut = self.client.submit(
                func, *args, workers=[address], allow_other_workers=False, pure=False
            )
        self.pinned[id(fut)] = address
        return fut

    @cached_property
    def pinned(self) -> dict[int, str]:
        """The worker address each submitted task is pinned to (gather watches for it)."""
        return {}

    def _result(self, fut: Any, deadline: float) -> Any:
        """`fut`'s result; fails fast once the worker it is pinned to has left: its task would
        wait for that address until the deadline (a revived worker gets a new one) or, if it
        comes back at the same address, run a second time."""
        while True:
            left = deadline - time.monotonic()
            try:
                return fut.result(timeout=max(min(left, WORKER_CHECK), 0.001))
            except TimeoutError:
                if left <= WORKER_CHECK:
                    raise
            address = self.pinned.get(id(fut))
            if address is not None and address not in self.addresses().values():
                self.client.cancel(fut)
                raise WorkerGone(
                    f"the worker at {address} stopped while running its part of this UDB "
                    "operation (that part may or may not have been applied; the rest of the "
                    "data is kept): check with 'aq_udb -cnt' and retry"
                )

    def gather(self, futures: list[Any]) -> list[Any]:
        """The tasks' results, in order. A failure is raised only once every task has ended:
        the tasks of one operation run on several workers, and a caller told "refused" while
        another worker still applies its part of the batch would race with it (a retry, a
        plugin change, an export that sees the part arrive later)."""
        deadline = time.monotonic() + TASK_TIMEOUT
        out: list[Any] = []
        errors: list[Exception] = []
        for fut in futures:
            try:
                out.append(self._result(fut, deadline))
            except Exception as exc:
                errors.append(exc)
            self.pinned.pop(id(fut), None)
        if errors:  # a worker's own refusal says more than a timeout or a failure it caused
            first = min(errors, key=lambda exc: type(exc).__name__ != "UdbError")
            raise _task_error(first)
        return out

    def each_worker(self, func: Any, *args: Any) -> dict[str, Any]:
        addrs = self.addresses()
        names = [n for n in self.workers if n in addrs]
        results = self.gather([self._run(addrs[n], func, *args) for n in names])
        return dict(zip(names, results, strict=True))

    def by_owner(self, pids: Iterable[int]) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for pid in sorted(pids):
            out.setdefault(self.place[pid], []).append(pid)
        return out

    # ------------------------------------------------------------------ maintenance
    def misplaced(self, place: dict[int, str] | None = None) -> list[tuple[str, str, int, str]]:
        """(db, holder, partition, owner) for partitions held by a worker that is not the owner
        (under the current placement, or `place`: partition → worker name)."""
        place = self.place if place is None else place
        out = []
        for holder, dbs in self.each_worker(moves.w_inventory).items():
            for db, parts in dbs.items():
                out += [(db, holder, pid, place[pid]) for pid in parts if
                        place[pid] != holder]  # fmt: skip
        return out

    def rebalance(self, place: dict[int, str] | None = None) -> int:
        """Move every partition to its owner under the current worker set (or `place`, e.g.
        the placement after a removal, see ess.udb.drain); returns moves."""
        misplaced = self.misplaced(place)
        addrs = self.addresses()
        for db, holder, pid, new_owner in misplaced:
            if new_owner not in addrs:
                raise UdbError(f"cannot move partition {pid} of {db}: {new_owner} is not running")
            data = self.gather([self._run(addrs[holder], moves.w_take, db, pid)])[0]
            self.gather([self._run(addrs[new_owner], moves.w_put, db, pid, data)])
            self.gather([self._run(addrs[holder], moves.w_forget, db, pid)])
        return len(misplaced)

    def check_placement(self) -> None:
        misplaced = self.misplaced()
        if misplaced:
            db, holder, pid, new = misplaced[0]
            raise UdbError(
                f"the UDB is being redistributed ({len(misplaced)} partition(s) not on their "
                f"owner, e.g. {db} partition {pid} on {holder}, owner {new}): import refused so "
                "nothing is lost; run 'ess udbd start' (it redistributes) and retry"
            )

    # ------------------------------------------------------------------ import
    def import_frames(
        self,
        spec: DbSpec,
        target: str,
        frames: Iterable[pl.DataFrame | pa.Table],
        *,
        ddef: bool = False,
    ) -> int:
        """Import batches into `target` of `spec` (a table, vector, "." or "var")."""
        if target not in (".", "var"):
            tgt = spec.require(target)
            target = tgt.name
        elif target == "var" and spec.var is None:
            raise UdbError(f"database {spec.name} has no variable (ess create variable ...)")
        if self.stager is None:
            self.check_placement()
        else:  # a worker that died meanwhile is waited for, as a staging send does
            reviving(self, self.check_placement)
        cut, premerged = cutter(spec, target)
        stager = self.stager
        ship = _Shipping(self, spec, target, premerged=premerged)
        # Batches are cut (pre-merge, key hash, split) in threads, up to PREPARED_AHEAD ahead
        # of the one being shipped: the cutting is most of the client's work and largely
        # single-threaded, so overlapping it with the shipping and with the next batch's
        # uses a core that would otherwise wait. Stamps are reserved here, in batch order.
        try:
            refused = self._cut_and_ship(cut, ship, prepared(spec, target, frames, ddef=ddef))
        except BaseException:
            if stager is not None:  # the part's manifest says "incomplete": never committed
                stager.failed = True
            raise
        if refused is not None:
            raise refused
        return ship.rows

    def _cut_and_ship(
        self, cut: _Cutter, ship: _Shipping, batches: Iterator[pl.DataFrame]
    ) -> Exception | None:
        """Cut and ship every batch; returns the bad-input error that stopped the reading."""
        stager = self.stager
        with ThreadPoolExecutor(max_workers=PREPARED_AHEAD) as pool, ship:
            ahead: deque[Future[dict[int, pa.Table]]] = deque()
            refused: Exception | None = None
            while True:
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                except Exception as exc:  # bad input: the batches read before it are
                    refused = exc  # imported, as when each was shipped as soon as read
                    break
                if batch.height == 0:
                    continue
                if stager is None:
                    base = self.client.run_on_scheduler(stamps.reserve_stamps,
                                                        count=batch.height)  # fmt: skip
                else:  # offsets within this process's part; the commit shifts them
                    base = stager.reserve(self.client, batch.height)
                ahead.append(pool.submit(cut, batch, base))
                ship.rows += batch.height
                if len(ahead) >= PREPARED_AHEAD:
                    ship(ahead.popleft().result())
            while ahead:
                ship(ahead.popleft().result())
            ship.finish()
        return refused

    # ------------------------------------------------------------------ queries
    def query(self, q: Query, *, all_partitions: bool = True) -> pl.DataFrame:
        pids = range(PARTITIONS)
        addrs = self._require_workers(q.db, pids)
        futures = []
        for name, owned in self.by_owner(pids).items():
            sub = Query(**{**q.__dict__, "pids": owned})
            futures.append(self._run(addrs[name], server.w_query, sub))
        frames = []
        for table in self.gather(futures):
            if table.num_columns:
                frame = pl.from_arrow(table)
                assert isinstance(frame, pl.DataFrame)
                frames.append(frame)
        if not frames:
            return pl.DataFrame()
        if q.order is None and len(frames) > 1:
            # each worker's rows are sorted by (__k, __r) and all rows of a key live on one
            # worker, so merging the runs on __k alone yields the global export order
            merged = frames[0]
            for frame in frames[1:]:
                merged = merged.merge_sorted(frame.select(merged.columns), key=merge.K)
            return merged
        return pl.concat(frames, how="vertical_relaxed")

    def update(self, q: Query, frame: pl.DataFrame) -> None:
        """Write rows back to their partitions (rules run on the client)."""
        parts = {
            int(k[0]): v.drop("__p").to_arrow()
            for k, v in frame.partition_by("__p", as_dict=True).items()
        }
        addrs = self._require_workers(q.db, parts)
        futures = [
            self._run(addrs[name], server.w_update, q, {pid: parts[pid] for pid in pids})
            for name, pids in self.by_owner(parts).items()
        ]
        self.gather(futures)

    def drop_keys(self, db: str, frame: pl.DataFrame) -> None:
        """Delete keys (columns __k, __p) with all their data, on the owning workers."""
        parts = {
            int(k[0]): v.select(merge.K).unique().to_arrow()
            for k, v in frame.partition_by("__p", as_dict=True).items()
        }
        addrs = self._require_workers(db, parts)
        self.gather([
            self._run(addrs[name], server.w_drop_keys, db, {p: parts[p] for p in pids})
            for name, pids in self.by_owner(parts).items()
        ])  # fmt: skip

    def var(self, db: str) -> pl.DataFrame | None:
        addrs = self._require_workers(db, [0])
        table = self.gather([self._run(addrs[self.place[0]], server.w_var, db)])[0]
        if table is None:
            return None
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        return frame

    def set_var(self, db: str, frame: pl.DataFrame) -> None:
        addrs = self._require_workers(db, [0])
        self.gather([self._run(addrs[self.place[0]], server.w_set_var, db, frame.to_arrow())])

    def on_all(self, db: str, func: Any, *args: Any) -> None:
        addrs = self._require_workers(db, range(PARTITIONS))
        self.gather([self._run(addrs[n], func, *args) for n in sorted(set(self.place.values()))])


class WorkerGone(UdbError):
    """A worker an operation needs is not running (it died, or has not come back yet)."""


def _task_error(exc: Exception) -> UdbError:
    if isinstance(exc, UdbError):
        return exc
    if isinstance(exc, FutureTimeout):
        error = UdbError(f"a UDB task did not finish within {TASK_TIMEOUT:.0f} s")
    elif type(exc).__name__ == "UdbError":  # a worker's UdbError, unpickled as another class
        return UdbError(str(exc))
    else:
        error = UdbError(f"a UDB task failed on a worker: {exc}")
    error.__cause__ = exc
    return error


def cutter(spec: DbSpec, target: str) -> tuple[_Cutter, bool]:
    """The cutter of batches for `target` (its canonical name, "." or "var"), and whether it
    pre-merges them (a `combinable` vector: one row per key)."""
    vector = spec.target(target) if target not in (".", "var") else None
    combine = vector if vector is not None and vector.kind == "vector" \
        and merge.combinable(vector) else None  # fmt: skip
    return _Cutter(target=target, pkey=[c.name for c in spec.pkey], combine=combine), \
        combine is not None  # fmt: skip


@dataclass(frozen=True)
class _Cutter:
    """Cuts one conformed batch into partitions: row stamps from `base`, the pre-merge of a
    `combinable` vector (one row per key), the key hash. Thread-safe (no state)."""

    target: str
    pkey: list[str]
    combine: udb_spec.Target | None  # the vector to pre-merge for, if any

    def __call__(self, batch: pl.DataFrame, base: int) -> dict[int, pa.Table]:
        if self.target != "var" and self.combine is None:  # the stamps come with the cut
            return hashing.cut_by_partition(batch, self.pkey, PARTITIONS, stamps=(merge.R, base))
        n = batch.height
        batch = batch.with_columns((pl.int_range(0, n, dtype=pl.Int64) + base).alias(merge.R))
        if self.target == "var":
            return {0: batch.to_arrow()}
        assert self.combine is not None
        batch = merge.combine(batch, self.pkey, self.combine.columns)
        return hashing.cut_by_partition(batch, self.pkey, PARTITIONS)  # order kept in a part


class _Shipping:
    """Sends cut batches of one import to the owners of their partitions, one batch applied
    (or, inside ess stream, staged) before the next starts."""

    def __init__(self, session: UdbSession, spec: DbSpec, target: str, *,
                 premerged: bool) -> None:  # fmt: skip
        self.session, self.spec, self.target = session, spec, target
        self.premerged = premerged  # one row per key (the workers need not check)
        self.text = spec.text()
        self.pending: list[Any] = []  # the futures of the batch being applied
        self.rows = 0
        self.stager = session.stager
        self.staged: tuple[int, dict[int, pa.Table], list[str]] | None = None  # in flight

    def __call__(self, parts: dict[int, pa.Table]) -> None:
        self.finish()  # the previous batch is applied before this one starts
        seq = -1
        if self.stager is not None:
            seq, self.stager.seq = self.stager.seq, self.stager.seq + 1
        self.staged = (seq, parts, []) if self.stager is not None else None
        try:
            self._send(parts, seq)
        except WorkerGone:
            if self.staged is None:
                raise
            self._resend()

    def _send(self, parts: dict[int, pa.Table], seq: int) -> None:
        s = self.session
        per_owner = s.by_owner(parts)
        if self.staged is not None:
            self.staged = (seq, parts, list(per_owner))
        addrs = s._require_workers(self.spec.name, parts)
        task = self._task(seq)
        self.pending = [s._run(addrs[name], task,
                               s.shipper.pack(addrs[name], {pid: parts[pid] for pid in pids}))
                        for name, pids in per_owner.items()]  # fmt: skip

    def _task(self, seq: int) -> Any:
        if self.stager is None:
            return partial(server.w_import, self.text, self.spec.name, self.target,
                           premerged=self.premerged)  # fmt: skip
        meta = {"spec": self.text, "db": self.spec.name, "target": self.target,
                "premerged": self.premerged}  # fmt: skip
        return partial(staging.w_stage, self.stager.tag(seq), meta)

    def finish(self) -> None:
        """Wait for the batch being applied (raises its failure once all its tasks ended)."""
        pending, self.pending = self.pending, []
        try:
            self.session.gather(pending)
        except WorkerGone:
            if self.staged is None:
                raise
            self.session.shipper.done()
            self._resend()
        finally:
            self.session.shipper.done()
        if self.staged is not None and self.stager is not None:
            seq, _, names = self.staged
            for name in names:
                self.stager.sent.setdefault(name, []).append(seq)
            self.staged = None

    def _resend(self) -> None:
        """Staging only: a worker died while taking the batch. Wait for it to come back
        (bounded) and send the batch again: a staged batch is written whole under its name or
        not at all, so a resend cannot add it twice."""
        assert self.staged is not None
        seq, parts, _ = self.staged

        def send() -> None:
            self.pending = []
            self.session.shipper.done()
            self._send(parts, seq)
            pending, self.pending = self.pending, []
            self.session.gather(pending)

        reviving(self.session, send)

    def __enter__(self) -> _Shipping:
        return self

    def __exit__(self, *exc: object) -> None:
        """An import that stops early (bad input, a refused batch, a failed cut, ^C) returns
        only once the batch it shipped last has ended on every worker: never "refused" while
        a part of it is still being applied."""
        if self.pending:
            with contextlib.suppress(UdbError):
                self.finish()


def prepared(
    spec: DbSpec, target: str, frames: Iterable[pl.DataFrame | pa.Table], *, ddef: bool
) -> Iterator[pl.DataFrame]:
    for raw in frames:
        frame = raw if isinstance(raw, pl.DataFrame) else pl.from_arrow(raw)
        assert isinstance(frame, pl.DataFrame)
        where = f"import into {spec.name}:{target}"
        if target == ".":
            tgt = None
        elif target == "var":
            tgt = spec.var
        else:
            tgt = spec.require(target)
        if tgt is None:
            yield merge.conform_keys(frame, spec.pkey, where=where)
        elif tgt.kind == "var":
            yield merge.conform(frame, (), tgt, ddef=ddef, where=where)
        else:
            yield merge.conform(frame, spec.pkey, tgt, ddef=ddef, where=where)


def reviving(session: UdbSession, step: Any) -> Any:
    """`step()`, again while a worker it needs is down, reviving it (REVIVE_WAIT at most)."""
    deadline = time.monotonic() + REVIVE_WAIT
    while True:
        try:
            return step()
        except WorkerGone as exc:
            if time.monotonic() > deadline:
                raise UdbError(f"{exc} (it did not come back within {REVIVE_WAIT:.0f} s)") from exc
            if session.can_revive:
                revive(session.ws)
            time.sleep(1.0)

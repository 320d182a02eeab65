"""A task gateway inside the scheduler process, so ess commands need no Dask client.

Importing Dask and connecting a client costs every command 0.5-1 s. The scheduler daemon
therefore also listens (same host, its own port) for a small framed protocol that mirrors the
:class:`~ess.engine.pool.TaskPool` interface -- submit a picklable callable (optionally pinned
to a worker, optionally holding ``slots``), be told when it is done, cancel -- and serves it
with an ordinary Dask client living in the scheduler's own event loop. Scheduling, retries of
tasks lost with a worker, pinning and resources all stay Dask's; :class:`GatewayPool` is the
command-line side.

Security is the cluster's: TLS only, and a client certificate signed by the cluster CA is
required, exactly like the scheduler's own port -- so a pickled request comes from a holder of
the cluster's client key, the same trust Dask gives pickled tasks. Frames are an 8-byte
big-endian length followed by a pickle. When a connection closes, its unfinished tasks are
cancelled, and so are the command runs it announced (``run``) -- on every worker, through
:func:`ess.engine.runs.cancel` -- so an ``ess`` killed without a chance to clean up (SIGKILL)
leaves no pipeline running or starting.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import ssl
import struct
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ess.engine.pool import POLL, SLOTS, WORKER_THREADS, Outcome, TaskPool, wait_all
from ess.engine.security import TlsFiles
from ess.errors import ClusterError, EssError

if TYPE_CHECKING:  # asyncio is imported lazily (keeps `ess --help` fast)
    import asyncio

_HEADER = struct.Struct(">Q")
MAX_FRAME = 1 << 34
WORKER_WAIT = 60.0
#: seconds the gateway gives the workers to acknowledge a cancelled run
CANCEL_WAIT = 10.0


class WorkerLost(ClusterError):
    """A task pinned to a worker could not run there: the worker went away while it ran, or
    was not connected within WORKER_WAIT (its caller may wait for it and try again)."""


def gateway_file(tls: TlsFiles) -> Path:
    """Where a cluster's gateway address is kept: next to its TLS directory."""
    return tls.directory.parent / "gateway.address"


def _server_context(tls: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tls.ca_cert))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(tls.cert("scheduler")), str(tls.key("scheduler")))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _client_context(tls: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca_cert))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False  # a dedicated CA; peers are addressed by IP (as Dask does)
    ctx.load_cert_chain(str(tls.cert("client")), str(tls.key("client")))
    return ctx


def _frame(obj: Any) -> bytes:
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if size > MAX_FRAME:
        raise ConnectionError("frame too large")
    return pickle.loads(await reader.readexactly(size))


async def _await(future: Any) -> Any:
    return await future


def _portable_error(exc: BaseException) -> BaseException:
    """The exception itself if it survives pickling, else a ClusterError describing it."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return ClusterError(f"{type(exc).__name__}: {exc}")
    return exc


# -- server (scheduler process) ---------------------------------------------------------------
async def serve(scheduler: Any, tls: TlsFiles, *, host: str, address_file: Path) -> Any:
    """Start the gateway next to ``scheduler``; write ``host:port`` to ``address_file``."""
    import asyncio

    from distributed import Client

    client: Any = None
    client_lock = asyncio.Lock()

    async def get_client() -> Any:
        nonlocal client
        async with client_lock:
            if client is None:
                client = await Client(
                    scheduler.address,
                    asynchronous=True,
                    security=tls.dask_security("client"),
                    set_as_default=False,
                )
        return client

    def workers_by_name() -> dict[str, str]:
        return {str(ws.name): addr for addr, ws in scheduler.workers.items()}

    async def wait_for(names: Iterable[str], wait: float = WORKER_WAIT) -> dict[str, str]:
        wanted = set(names)
        deadline = asyncio.get_running_loop().time() + wait
        while True:  # workers that were just (re)started may still be registering
            by_name = workers_by_name()
            missing = sorted(wanted - set(by_name))
            if not missing:
                return by_name
            if asyncio.get_running_loop().time() > deadline:
                raise ClusterError(
                    f"worker(s) not connected after {WORKER_WAIT:.0f} s: " + ", ".join(missing)
                )
            await asyncio.sleep(0.05)

    async def cancel_runs(run_ids: Iterable[str]) -> None:
        from ess.engine import runs

        c = await get_client()
        for run_id in run_ids:
            with contextlib.suppress(Exception):  # a worker that is going away stops anyway
                await asyncio.wait_for(
                    c.run(runs.cancel, run_id, on_error="ignore"), timeout=CANCEL_WAIT
                )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        send_lock = asyncio.Lock()
        futures: dict[int, Any] = {}
        watchers: set[asyncio.Task[None]] = set()
        run_ids: set[str] = set()  # command runs whose tasks this connection submits

        async def send(obj: Any) -> None:
            async with send_lock:
                writer.write(_frame(obj))
                await writer.drain()

        async def pinned_result(future: Any, node: str, addr: str) -> Any:
            # A task pinned to a worker cannot move: if that worker goes away it would wait
            # forever for it, so fail it instead.
            waiter = asyncio.ensure_future(_await(future))
            while True:
                done, _ = await asyncio.wait([waiter], timeout=1.0)
                if done:
                    return waiter.result()
                if addr not in scheduler.workers:
                    waiter.cancel()
                    await (await get_client()).cancel([future])
                    raise WorkerLost(f"{node} went away while running the command")

        async def watch(tid: int, future: Any, pinned: tuple[str, str] | None) -> None:
            try:
                if pinned is None:
                    value = await future
                else:
                    value = await pinned_result(future, *pinned)
                reply: tuple[Any, ...] = ("done", tid, "ok", value)
            except BaseException as exc:
                if isinstance(exc, ClusterError):
                    reply = ("done", tid, "error", exc)
                elif future.status == "cancelled" or isinstance(exc, asyncio.CancelledError):
                    reply = ("done", tid, "cancelled", None)
                else:
                    reply = ("done", tid, "error", _portable_error(exc))
            futures.pop(tid, None)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await send(reply)

        try:
            while True:
                try:
                    message = await _read_frame(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                kind = message[0]
                if kind == "hello":
                    try:
                        by_name = await wait_for(message[1])
                        await send(("hello", sorted(by_name)))
                    except ClusterError as exc:
                        await send(("error", str(exc)))
                elif kind == "submit":
                    _, tid, fn, args, node, resources, *more = message
                    c = await get_client()
                    pinned = None
                    if node is not None:
                        try:  # `more`: how long to wait for the node (its caller may revive it)
                            addr = (await wait_for([node], *more))[node]
                        except ClusterError as exc:
                            await send(("done", tid, "error", WorkerLost(str(exc))))
                            continue
                        pinned = (node, addr)
                        future = c.submit(
                            fn, *args, pure=False, workers=[addr], allow_other_workers=False
                        )
                    else:
                        future = c.submit(fn, *args, pure=False, resources=resources)
                    futures[tid] = future
                    task = asyncio.ensure_future(watch(tid, future, pinned))
                    watchers.add(task)
                    task.add_done_callback(watchers.discard)
                elif kind == "scheduler":  # a short function of the scheduler's state
                    _, tid, fn, kwargs = message
                    try:
                        reply = ("done", tid, "ok", fn(dask_scheduler=scheduler, **kwargs))
                    except Exception as exc:
                        reply = ("done", tid, "error", _portable_error(exc))
                    await send(reply)
                elif kind == "cancel":
                    doomed = [futures[t] for t in message[1] if t in futures]
                    if doomed:
                        await (await get_client()).cancel(doomed)
                elif kind == "run":
                    run_ids.add(message[1])
                elif kind == "cancel_run":
                    run_ids.discard(message[1])
                    await cancel_runs([message[1]])
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            if futures and client is not None:
                # the client went away with work unfinished (^C, killed): stop its runs
                with contextlib.suppress(Exception):
                    await client.cancel(list(futures.values()))
                await cancel_runs(sorted(run_ids))
            writer.close()

    server = await asyncio.start_server(handle, host=host, port=0, ssl=_server_context(tls))
    port = server.sockets[0].getsockname()[1]
    tmp = address_file.with_name(address_file.name + ".tmp")
    tmp.write_text(f"{host}:{port}\n")
    os.replace(tmp, address_file)
    return server


# -- client (the ess command) -----------------------------------------------------------------
class GatewayPool(TaskPool):
    """A :class:`TaskPool` whose tasks run on the cluster through the gateway."""

    def __init__(
        self,
        address_file: Path,
        tls: TlsFiles,
        *,
        expected_workers: tuple[str, ...],
        shared_filesystem: bool,
        threads: int | None = None,
    ) -> None:
        import asyncio

        self.shared_filesystem = shared_filesystem
        self.threads_per_node = min(max(1, threads or 1), WORKER_THREADS)
        self._resources = {"slots": SLOTS // self.threads_per_node}
        self._pending: dict[int, Future[Any]] = {}
        self._tid_of: dict[int, int] = {}
        self._runs: set[str] = set()
        self._ids = itertools.count(1)
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="ess-gateway", daemon=True
        )
        self._thread.start()
        host, port = address_file.read_text().strip().rsplit(":", 1)
        try:
            self.node_names = tuple(self._call(self._open(host, int(port), tls, expected_workers)))
        except BaseException:
            self.close()
            raise
        if not self.node_names:
            self.close()
            raise ClusterError("the cluster has no workers")

    def _call(self, coro: Any) -> Any:
        import asyncio

        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        while True:  # in short waits: ^C must not wait for the network (see pool.POLL)
            try:
                return future.result(timeout=POLL)
            except TimeoutError:
                if future.done():  # done meanwhile, or the coroutine's own TimeoutError
                    return future.result()

    async def _open(
        self, host: str, port: int, tls: TlsFiles, expected: tuple[str, ...]
    ) -> list[str]:
        import asyncio

        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=_client_context(tls), server_hostname=None),
            timeout=10,
        )
        self._writer.write(_frame(("hello", expected)))
        await self._writer.drain()
        reply = await asyncio.wait_for(_read_frame(self._reader), timeout=WORKER_WAIT + 10)
        if reply[0] != "hello":
            raise ClusterError(str(reply[1]))
        self._reader_task = asyncio.ensure_future(self._read_loop())
        return list(reply[1])

    async def _read_loop(self) -> None:
        import asyncio

        try:
            while True:
                _, tid, status, value = await _read_frame(self._reader)
                future = self._pending.pop(tid, None)
                if future is None or future.done():
                    continue
                if status == "ok":
                    future.set_result(value)
                elif status == "cancelled":
                    future.cancel()
                else:
                    future.set_exception(value)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            lost = ClusterError("lost the connection to the cluster's gateway")
            for future in list(self._pending.values()):
                if not future.done():
                    future.set_exception(lost)
            self._pending.clear()

    async def _send(self, obj: Any) -> None:
        self._writer.write(_frame(obj))
        await self._writer.drain()

    def submit(self, fn: Callable[..., Any], *args: Any, node: str | None = None,
               node_wait: float = WORKER_WAIT) -> Future[Any]:  # fmt: skip
        """`node_wait`: seconds the gateway waits for `node` to be connected before the
        task fails with WorkerLost (a caller that revives dead workers itself asks for 0)."""
        resources = None if node is not None else self._resources
        more = () if node_wait == WORKER_WAIT else (node_wait,)  # as an older gateway reads it
        return self._request(lambda tid: ("submit", tid, fn, args, node, resources, *more))

    def on_scheduler(self, fn: Callable[..., Any], **kwargs: Any) -> Future[Any]:
        """`fn(dask_scheduler=<the scheduler>, **kwargs)` run in the scheduler's process, as
        Dask's ``Client.run_on_scheduler`` runs it (a short function of its state)."""
        return self._request(lambda tid: ("scheduler", tid, fn, kwargs))

    def _request(self, message: Callable[[int], tuple[Any, ...]]) -> Future[Any]:
        tid = next(self._ids)
        future: Future[Any] = Future()
        self._pending[tid] = future
        self._tid_of[id(future)] = tid
        try:
            self._call(self._send(message(tid)))
        except (OSError, ConnectionError, RuntimeError) as exc:
            self._pending.pop(tid, None)
            future.set_exception(ClusterError(f"lost the connection to the gateway ({exc})"))
        return future

    def outcomes(self, futures: list[Any]) -> list[Outcome]:
        result = []
        for f in futures:
            if f.cancelled():
                result.append(Outcome(error=ClusterError("cancelled")))
                continue
            exc = f.exception()
            if exc is not None and not isinstance(exc, EssError):
                exc = ClusterError(f"{type(exc).__name__}: {exc}")
            result.append(Outcome(error=exc) if exc is not None else Outcome(value=f.result()))
        return result

    def wait(self, futures: list[Any]) -> None:
        wait_all(futures)

    def cancel(self, futures: Iterable[Any]) -> None:
        tids = []
        for f in futures:
            if not f.done():
                tids.append(self._tid_of.get(id(f)))
                f.cancel()
        tids = [t for t in tids if t is not None]
        if tids and not self._closed:
            with contextlib.suppress(Exception):
                self._call(self._send(("cancel", tids)))

    def begin_run(self, run_id: str) -> None:
        if run_id and run_id not in self._runs and not self._closed:
            self._runs.add(run_id)
            with contextlib.suppress(Exception):  # a lost connection fails the tasks anyway
                self._call(self._send(("run", run_id)))

    def cancel_run(self, run_id: str) -> None:
        if run_id and not self._closed:
            self._runs.discard(run_id)
            with contextlib.suppress(Exception):  # then closing the connection cancels it
                self._call(self._send(("cancel_run", run_id)))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        async def shutdown() -> None:
            writer = getattr(self, "_writer", None)
            if writer is not None:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

        with contextlib.suppress(Exception):
            self._call(shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

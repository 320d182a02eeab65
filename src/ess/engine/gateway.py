"""A small request endpoint inside the scheduler process, so ``ess exec`` needs no Dask client.

Importing Dask and connecting a client costs a command 0.5-1 s; ``ess exec true`` should take a
fraction of that. The scheduler daemon therefore also listens (same host, another port) for
requests of the form "run these pipelines, each pinned to this worker" and answers with the
results. It runs them through an ordinary Dask client living in the scheduler's own event loop,
so tasks, pinning and worker management stay Dask's.

Security is the cluster's: the endpoint is TLS-only and requires a client certificate signed by
the cluster CA, exactly like the scheduler (so the pickled request comes from a holder of the
cluster's client key, the same trust Dask itself gives pickled tasks). Frames are an 8-byte
big-endian length followed by a pickle.
"""

from __future__ import annotations

import os
import pickle
import socket
import ssl
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ess.engine.security import TlsFiles
from ess.errors import ClusterError

if TYPE_CHECKING:  # asyncio is imported by the server side only (keeps `ess exec` fast)
    import asyncio

_HEADER = struct.Struct(">Q")
MAX_FRAME = 1 << 31
WORKER_WAIT = 60.0


@dataclass(frozen=True)
class PinnedRun:
    """Run ``fn(arg)`` on the worker named ``node`` for each (node, arg) of ``items``."""

    fn: Any
    items: tuple[tuple[str, Any], ...]


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


async def serve(scheduler: Any, tls: TlsFiles, *, host: str, address_file: Path) -> Any:
    """Start the endpoint next to ``scheduler``; write ``host:port`` to ``address_file``."""
    import asyncio

    from distributed import Client

    client: Any = None
    lock = asyncio.Lock()

    async def get_client() -> Any:
        nonlocal client
        async with lock:
            if client is None:
                client = await Client(
                    scheduler.address,
                    asynchronous=True,
                    security=tls.dask_security("client"),
                    set_as_default=False,
                )
        return client

    async def run(request: PinnedRun) -> list[Any]:
        c = await get_client()
        wanted = {node for node, _ in request.items}
        deadline = asyncio.get_running_loop().time() + WORKER_WAIT
        while True:  # a worker that was just (re)started may still be registering
            by_name = {str(ws.name): addr for addr, ws in scheduler.workers.items()}
            missing = sorted(wanted - set(by_name))
            if not missing:
                break
            if asyncio.get_running_loop().time() > deadline:
                raise ClusterError(f"worker(s) not connected: {', '.join(missing)}")
            await asyncio.sleep(0.05)
        futures = [
            c.submit(
                request.fn, arg, workers=[by_name[node]], allow_other_workers=False, pure=False
            )
            for node, arg in request.items
        ]
        return list(await c.gather(futures))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
            if size > MAX_FRAME:
                return
            request = pickle.loads(await reader.readexactly(size))
            try:
                reply: tuple[str, Any] = ("ok", await run(request))
            except Exception as exc:  # reported to the caller, who raises it
                reply = ("error", f"{type(exc).__name__}: {exc}")
            payload = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
            writer.write(_HEADER.pack(len(payload)) + payload)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host=host, port=0, ssl=_server_context(tls))
    port = server.sockets[0].getsockname()[1]
    tmp = address_file.with_name(address_file.name + ".tmp")
    tmp.write_text(f"{host}:{port}\n")
    os.replace(tmp, address_file)
    return server


def call(
    address_file: Path, tls: TlsFiles, request: PinnedRun, *, timeout: float | None = None
) -> list[Any]:
    """Send ``request`` to the endpoint; return its results (raises ClusterError on failure).

    Raises ``FileNotFoundError`` / ``ConnectionError`` when there is no endpoint to talk to, so
    callers can fall back to a Dask client.
    """
    host, port = address_file.read_text().strip().rsplit(":", 1)
    ctx = _client_context(tls)
    payload = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.settimeout(timeout)
        with ctx.wrap_socket(raw) as sock:
            sock.sendall(_HEADER.pack(len(payload)) + payload)
            (size,) = _HEADER.unpack(_recv_exactly(sock, _HEADER.size))
            status, value = pickle.loads(_recv_exactly(sock, size))
    if status != "ok":
        raise ClusterError(str(value))
    return list(value)


def _recv_exactly(sock: ssl.SSLSocket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise ConnectionError("the gateway closed the connection")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)

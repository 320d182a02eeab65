"""Serving the dashboard: the listening socket, the token, uvicorn.

The socket is bound here, before uvicorn starts, so the port is known (and printed) before the
first request and a busy port fails with one clear line. The default address is the loopback
one: the pages show file names, commands and their errors and the buttons run the cluster, so
they are for this machine's user (reach them from elsewhere through an SSH tunnel).
"""

from __future__ import annotations

import errno
import ipaddress
import secrets
import socket
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass

from ess.errors import UsageError
from ess.workspace import Workspace

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


@dataclass(frozen=True)
class Listening:
    host: str
    port: int
    token: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?token={self.token}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int | None) -> socket.socket:
    """A listening socket on ``host``: ``port``, or 8765 if free, else any free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    tries = [port] if port is not None else [DEFAULT_PORT, 0]
    last: OSError | None = None
    for p in tries:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, p))
        except OSError as exc:
            sock.close()
            last = exc
            continue
        sock.listen(64)
        sock.set_inheritable(True)
        return sock
    if last is not None and last.errno == errno.EADDRINUSE:
        raise UsageError(f"ess ui: port {port} is in use (choose another with --port)")
    raise UsageError(f"ess ui: cannot listen on {host}:{port} ({last})")


def serve(
    ws: Workspace,
    *,
    host: str = DEFAULT_HOST,
    port: int | None = None,
    open_browser: bool = False,
    on_ready: Callable[[Listening], None] | None = None,
) -> None:
    """Serve the dashboard until interrupted (Ctrl-C)."""
    import uvicorn

    from ess.ui.app import create_app

    sock = bind(host, port)
    listening = Listening(host, sock.getsockname()[1], secrets.token_urlsafe(24))
    app = create_app(ws, token=listening.token, port=listening.port)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,  # live-update streams never end by themselves
    )
    server = uvicorn.Server(config)
    if on_ready is not None:
        on_ready(listening)
    if open_browser:
        threading.Timer(0.5, webbrowser.open, args=(listening.url,)).start()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()

"""`ess ui`: the dashboard, served on this machine's loopback address (ess.ui)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ess.cli.common import add_command, note
from ess.workspace import Workspace


def _ui(args: argparse.Namespace) -> int:
    from ess.ui.server import DEFAULT_HOST, Listening, is_loopback, serve

    host = args.host or DEFAULT_HOST
    if not is_loopback(host):
        note(
            f"ess ui: listening on {host}: anyone who can reach it and has the link can run "
            "your cluster; an SSH tunnel to 127.0.0.1 is safer"
        )

    def ready(listening: Listening) -> None:
        # the link goes to stdout (scripts and tests read it), like Jupyter's
        sys.stdout.write(f"ess ui: {listening.url}\n")
        sys.stdout.flush()
        note("ess ui: Ctrl-C stops the dashboard")

    ws = Workspace.from_env()
    ws = Workspace(ws.work_dir.resolve(), ws.cache_dir.resolve(), ws.aws_dir.resolve())
    try:
        serve(ws, host=host, port=args.port, open_browser=args.open, on_ready=ready)
    except KeyboardInterrupt:
        return 0
    return 0


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "ui",
        help="the dashboard: datastores, cluster, running work, UDB (web pages on 127.0.0.1)",
        example="ess ui --open\n"
        "# from another machine, through an SSH tunnel:\n"
        "ssh -L 8765:127.0.0.1:8765 user@master   # then open the printed link",
        description="Serve the dashboard on this machine's loopback address (127.0.0.1) and "
        "print its link, which carries a random token (the pages refuse requests without it). "
        "To look from another machine, tunnel: ssh -L 8765:127.0.0.1:8765 user@master.",
        handler=_ui,
    )
    parser.add_argument(
        "--port", type=int, help="port to listen on (default 8765, or any free one if taken)"
    )
    parser.add_argument(
        "--host",
        help="address to listen on (default 127.0.0.1; another address exposes the dashboard "
        "to the network: prefer an SSH tunnel)",
    )
    parser.add_argument("--open", action="store_true", help="open the link in a web browser")

"""Subcommands that are documented by Essentia but not built yet: a clear error, never a fake."""

from __future__ import annotations

import argparse
from typing import Any

from ess.cli.common import add_command
from ess.errors import NotSupportedError


def register_unsupported(subparsers: Any, name: str, help: str, example: str) -> None:
    parser = add_command(subparsers, name, help=help + " (not supported yet)", example=example)
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments (ignored)")

    def handler(args: argparse.Namespace) -> int:
        raise NotSupportedError(f"ess {name}")

    parser.set_defaults(handler=handler)

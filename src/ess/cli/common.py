"""Helpers shared by the command-line modules (argparse plumbing, printing)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

Handler = Callable[[argparse.Namespace], int | None]


def add_command(
    subparsers: Any,
    name: str,
    *,
    help: str,
    example: str,
    handler: Handler | None = None,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """Add one subcommand whose --help ends with a worked example."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=help,
        description=description or help,
        epilog="example:\n  " + example.replace("\n", "\n  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if handler is not None:
        parser.set_defaults(handler=handler)
    return parser


def out(text: str = "") -> None:
    """Print to stdout: only results a user or script reads go here."""
    sys.stdout.write(text + "\n")


def note(text: str) -> None:
    """Informational text goes to stderr, so scripts that capture stdout see only results."""
    sys.stderr.write(text + "\n")

"""Helpers shared by the command-line modules (argparse plumbing, printing)."""

from __future__ import annotations

import argparse
import dataclasses
import json
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


def add_json_option(parser: Any, schema: str) -> None:
    """``--json``: the same result as one JSON document on stdout, described by
    docs/json-schemas/<schema>.json (``parser`` may be a mutually exclusive group)."""
    parser.add_argument(
        "--json",
        action="store_true",
        help=f"print one JSON document instead (schema: docs/json-schemas/{schema}.json)",
    )


def out_json(data: Any) -> None:
    """Print a result as JSON: dataclasses become objects, tuples arrays. One document, ended
    by a newline, keys in the dataclasses' order so the output diffs well."""
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        data = dataclasses.asdict(data)
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")

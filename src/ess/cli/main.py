"""The ``ess`` entry point: one parser, one place that turns errors into exit codes.

argparse (not click) parses the command line because Essentia's ``ess`` *is* an argparse
program: unambiguous prefixes of long options (``--num=2``), options after positionals,
positionals starting with ``-`` that contain a space, exit status 2 on usage errors. Using the
same parser keeps every old script working without emulation layers. Heavy libraries (Dask,
Polars, boto3) are imported inside the handlers, so ``ess --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ess import ESSENTIA_COMPAT, __version__
from ess.errors import EssError


class _VersionAction(argparse.Action):
    """``ess -v``: Essentia printed its version on stderr (Python 2 argparse); scripts use 2>&1."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        sys.stderr.write(
            f"Essentia : {__version__}\n"
            f"AQ Tools : {__version__} --- compatible with Essentia {ESSENTIA_COMPAT}\n"
        )
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    from ess.cli import cluster, datastore, instance, run, sql, udb

    parser = argparse.ArgumentParser(
        prog="ess",
        description="The Essentia ETL Engine",
        epilog='example:\n  ess select local\n  ess category add browse "$PWD/data/*browse*"\n'
        "  ess stream browse 2014-09-01 2014-09-07 'wc -l'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--version", action=_VersionAction)
    subparsers = parser.add_subparsers(dest="command", metavar="{command}")
    for module in (datastore, cluster, instance, run, udb, sql):
        module.register(subparsers)
    return parser


def run_cli(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args) or 0
    except EssError as exc:
        sys.stdout.flush()
        sys.stderr.write(f"ess {args.command}: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("ess: interrupted\n")
        return 130


def main(argv: Sequence[str] | None = None) -> None:
    try:
        code = run_cli(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader of our stdout went away (e.g. `ess cat f | head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    main()

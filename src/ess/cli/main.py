"""The ``ess`` entry point: one parser, one place that turns errors into exit codes.

argparse (not click) parses the command line because Essentia's ``ess`` *is* an argparse
program: unambiguous prefixes of long options (``--num=2``), options after positionals,
positionals starting with ``-`` that contain a space, exit status 2 on usage errors. Using the
same parser keeps every old script working without emulation layers. Heavy libraries (Dask,
Polars, boto3) are imported inside the handlers, so ``ess --help`` stays fast.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

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


class _Parser(argparse.ArgumentParser):
    """argparse's parser, suggesting the closest subcommand for a misspelt one (subcommand
    parsers inherit the class)."""

    def error(self, message: str) -> NoReturn:
        wrong = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if wrong:
            choices = re.findall(r"'([^']*)'", wrong.group(2))
            close = difflib.get_close_matches(wrong.group(1), choices, n=1)
            message += f"; did you mean {close[0]}?" if close else ""
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    from ess.cli import cluster, completion, datastore, instance, query, redshift, run, udb, ui

    parser = _Parser(
        prog="ess",
        description="The Essentia ETL Engine",
        epilog='example:\n  ess select local\n  ess category add browse "$PWD/data/*browse*"\n'
        "  ess stream browse 2014-09-01 2014-09-07 'wc -l'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--version", action=_VersionAction)
    subparsers = parser.add_subparsers(dest="command", metavar="{command}")
    for module in (datastore, cluster, instance, run, udb, query, redshift, ui, completion):
        module.register(subparsers)
    return parser


def _chosen_parser(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser:
    """The deepest subcommand parser the command line selected (``ess category add``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            name = getattr(args, action.dest, None)
            if isinstance(name, str) and name in action.choices:
                return _chosen_parser(action.choices[name], args)
    return parser


def _reject_unknown(
    parser: argparse.ArgumentParser, args: argparse.Namespace, extras: list[str]
) -> None:
    """Report unrecognized arguments with the usage of the subcommand they were given to (not
    the top-level usage argparse prints) and the closest option for a misspelt one."""
    sub = _chosen_parser(parser, args)
    known = [opt for action in sub._actions for opt in action.option_strings]
    # A misspelt option's value shifts the positionals, so the stray words after it are
    # noise: name only the unknown options when there are any.
    options = [e for e in extras if e.startswith("-") and e != "-" and " " not in e]
    if not options:
        sub.error("unrecognized arguments: " + " ".join(extras))
    problems = []
    for option in options:
        close = difflib.get_close_matches(option.split("=", 1)[0], known, n=1, cutoff=0.6)
        problems.append(f"{option} (did you mean {close[0]}?)" if close else option)
    sub.error("unrecognized option " + ", ".join(problems))


def _show_warnings(command: str) -> None:
    """The library reports warnings through logging (it never prints): show them on stderr
    as one line each, named after the command like its errors."""
    sink = logging.StreamHandler(sys.stderr)
    sink.setFormatter(logging.Formatter(f"ess {command}: warning: %(message)s"))
    library = logging.getLogger("ess")
    library.handlers[:] = [sink]
    library.setLevel(logging.WARNING)
    library.propagate = False


def run_cli(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        _reject_unknown(parser, args, extras)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    _show_warnings(args.command)
    try:
        return handler(args) or 0
    except EssError as exc:
        sys.stdout.flush()
        sys.stderr.write(f"ess {args.command}: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("ess: interrupted\n")
        return 130
    except BrokenPipeError:
        raise  # main() handles a closed stdout
    except Exception as exc:  # a bug of ours: still one line (ESS_TRACEBACK=1 shows where)
        if os.environ.get("ESS_TRACEBACK") == "1":
            raise
        sys.stdout.flush()
        first = next(iter(str(exc).splitlines()), "")
        sys.stderr.write(
            f"ess {args.command}: internal error: {type(exc).__name__}: {first} "
            "(a bug: please report it; ESS_TRACEBACK=1 shows the traceback)\n"
        )
        return 1


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

"""Rough edges a new user hits first (issue 14), each through the real `ess` command line.

Every run goes through the shared runner, which also fails a test on any Python traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from ess.cli.main import build_parser
from tests.conftest import WOODWORKING, EssEnv

DATA = str(WOODWORKING)


def _walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


def test_every_option_has_help_and_every_command_an_example() -> None:
    commands = list(_walk(build_parser(), ("ess",)))
    assert len(commands) > 40  # the walk really reached the nested subcommands
    problems = []
    for path, parser in commands:
        if "example:\n  ess" not in (parser.epilog or ""):
            problems.append(f"{' '.join(path)}: no example")
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                name = "/".join(action.option_strings) or action.dest
                problems.append(f"{' '.join(path)}: {name} has no help")
    assert problems == []


@pytest.mark.parametrize(
    "command",
    [
        ("category", "add"),
        ("category", "change"),
        ("summary",),
        ("create", "table"),
        ("create", "vector"),
        ("stream",),
    ],
)
def test_help_documents_options_and_shows_an_example(ess_env: EssEnv, command: tuple) -> None:
    r = ess_env.ess(*command, "--help", check=True)
    assert "\nexample:\n  ess " + " ".join(command) in r.stdout
    lines = r.stdout.splitlines()
    for i, line in enumerate(lines):
        # argparse puts an option's help beside it, or on the next line when the option is long
        if line.startswith("  ") and not line.startswith("   ") and line.split()[0] != "ess":
            alone = len(line.split()) <= 2 and not line.strip().startswith("-h")
            if alone and line.strip().split()[0].startswith("-"):
                assert lines[i + 1].startswith(" " * 10), f"{command}: {line.strip()} has no help"


def test_misspelt_option_names_the_subcommand_and_the_closest_option(wood: EssEnv) -> None:
    r = wood.ess("stream", "--treads", "2", "browse", "*", "*", "wc -l")
    assert r.returncode == 2
    assert r.stderr.startswith("usage: ess stream ")
    assert "ess stream: error: unrecognized option --treads (did you mean --threads?)" in r.stderr
    r = wood.ess("category", "add", "--dateregx=[:%Y:]", "x", f"{DATA}/*browse_*")
    assert r.returncode == 2 and r.stderr.startswith("usage: ess category add ")
    assert "--dateregx=[:%Y:] (did you mean --dateregex?)" in r.stderr
    # a stray positional is still reported as such, with the subcommand's usage
    r = wood.ess("stream", "browse", "2014-09-01", "2014-09-01", "wc -l", "extra")
    assert r.returncode == 2 and r.stderr.startswith("usage: ess stream ")
    assert "unrecognized arguments: extra" in r.stderr
    # Essentia's unambiguous prefixes keep working
    r = wood.ess("stream", "--thread=2", "--lim", "1", "browse", "*", "*", "wc -l", check=True)
    assert r.stdout == "9896\n"


@pytest.fixture
def wood(ess_env: EssEnv) -> EssEnv:
    ess_env.ess("select", "local", check=True)
    ess_env.ess("category", "add", "browse", f"{DATA}/*browse_*", check=True)
    return ess_env

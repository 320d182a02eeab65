"""A bug inside a command still ends in one line and exit 1, never a traceback (unless asked)."""

from __future__ import annotations

import argparse

import pytest

from ess.cli import main as cli_main


def _parser_with_a_buggy_command() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ess")
    sub = parser.add_subparsers(dest="command")
    buggy = sub.add_parser("buggy")

    def handler(args: argparse.Namespace) -> int:
        raise ValueError("boom\nsecond line")

    buggy.set_defaults(handler=handler)
    return parser


def test_an_internal_error_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli_main, "build_parser", _parser_with_a_buggy_command)
    monkeypatch.delenv("ESS_TRACEBACK", raising=False)
    assert cli_main.run_cli(["buggy"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ess buggy: internal error: ValueError: boom (a bug")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_ess_traceback_shows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_main, "build_parser", _parser_with_a_buggy_command)
    monkeypatch.setenv("ESS_TRACEBACK", "1")
    with pytest.raises(ValueError, match="boom"):
        cli_main.run_cli(["buggy"])

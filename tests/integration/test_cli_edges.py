"""Rough edges a new user hits first (issue 14), each through the real `ess` command line.

Every run goes through the shared runner, which also fails a test on any Python traceback.
"""

from __future__ import annotations

import argparse
import subprocess
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
    r = wood.ess("stram", "browse", "*", "*")
    assert r.returncode == 2 and r.stderr.endswith("; did you mean stream?\n")
    r = wood.ess("category", "ad", "x", "y")
    assert r.returncode == 2 and r.stderr.startswith("usage: ess category ")
    assert r.stderr.endswith("; did you mean add?\n")
    # Essentia's unambiguous prefixes keep working
    r = wood.ess("stream", "--thread=2", "--lim", "1", "browse", "*", "*", "wc -l", check=True)
    assert r.stdout == "9896\n"


@pytest.fixture
def wood(ess_env: EssEnv) -> EssEnv:
    ess_env.ess("select", "local", check=True)
    ess_env.ess("category", "add", "browse", f"{DATA}/*browse_*", check=True)
    return ess_env


def test_a_file_named_gz_that_is_not_gzip_gets_one_clear_line(ess_env: EssEnv) -> None:
    ess_env.ess("select", "local", check=True)
    data = ess_env.root / "data"
    data.mkdir()
    # bytes that look like nothing: no gzip header, a bare CR and a NUL among them
    (data / "sales_20140901.gz").write_bytes(bytes(range(256)) * 8)
    r = ess_env.ess("category", "add", "sales", f"{data}/*.gz")
    assert r.returncode == 4
    assert r.stderr == (
        f"ess category: error: {data}/sales_20140901.gz: cannot probe: named .gz but not gzip "
        "data (no gzip header) and not text either; check the file, or give --noprobe with "
        "--columnspec\n"
    )
    assert ess_env.ess("summary").stdout.count("sales") == 0  # nothing stored
    # text in a file named .gz is fine (decompression goes by content), old Mac CRs too
    (data / "sales_20140901.gz").write_bytes(b"day,n\r2014-09-01,5\r")
    ess_env.ess("category", "add", "sales", f"{data}/*.gz", check=True)
    r = ess_env.ess("summary", "sales", "columnspec", check=True)
    assert r.stdout == "S:day I:n\n"


def test_a_bad_column_spec_is_refused_when_given(wood: EssEnv) -> None:
    before = wood.ess("summary", "browse", "columnspec", check=True).stdout
    r = wood.ess("category", "change", "columnspec", "browse", "S:eventDate Q:userID I:articleID")
    assert r.returncode == 4
    assert r.stderr == (
        "ess category: error: unknown column type 'Q' in columnspec item 2 'Q:userID'\n"
    )
    assert wood.ess("summary", "browse", "columnspec").stdout == before
    r = wood.ess("category", "add", "b2", f"{DATA}/*browse_*", "--columnspec", "S:a I:2b")
    assert r.returncode == 4 and "bad column name '2b' in columnspec item 2" in r.stderr
    # lower-case letters, X, attributes and extra blanks are all aq_pp's column specs
    spec = " s,trm:eventDate  i:userID X "
    wood.ess("category", "change", "columnspec", "browse", spec, check=True)
    assert wood.ess("summary", "browse", "columnspec").stdout == "s,trm:eventDate i:userID X\n"


def test_a_date_rule_that_finds_no_date_warns(wood: EssEnv) -> None:
    r = wood.ess(
        "category", "add", "b2", f"{DATA}/*browse_*", "--dateregex", "[:%Y:]-[:%m:]-[:%d:]"
    )
    assert r.returncode == 0 and r.stdout == ""
    assert r.stderr == (
        "ess category add: category 'b2': dateregex '[:%Y:]-[:%m:]-[:%d:]' finds no date in "
        f"30 of 30 file names (e.g. {DATA}/browse_20140901.gz); they get the date 1970-01-01\n"
    )
    r = wood.ess("category", "change", "dateformat", "b2", "*Y-M-D*")
    assert r.returncode == 0 and "dateformat '*Y-M-D*' finds no date in 30 of 30" in r.stderr
    r = wood.ess("category", "change", "dateregex", "b2", "_[:%Y:][:%m:][:%d:]", check=True)
    assert r.stderr == ""


def test_empty_and_reversed_ranges_say_so(wood: EssEnv) -> None:
    r = wood.ess("stream", "browse", "2015-01-01", "2015-12-31", "wc -l")
    assert r.returncode == 0 and r.stdout == ""
    assert r.stderr == (
        "ess stream: warning: no file of category 'browse' is dated within 2015-01-01 .. "
        "2015-12-31 (its 30 files are dated 2014-09-01 .. 2014-09-30)\n"
    )
    r = wood.ess("stream", "browse", "2014-09-01", "*", "--exclude", f"{DATA}/*", "--limit", "3")
    assert r.returncode == 0 and r.stdout == ""
    assert "--exclude/--limit left none of the 30 files of category 'browse'" in r.stderr
    for command in (("stream", "browse", "*", "*", "wc -l"), ("ls", "--cat", "browse")):
        r = wood.ess(*command, "--limit", "-1")
        assert r.returncode == 2 and r.stdout == ""  # -1 used to drop the last file
        assert r.stderr.endswith("error: --limit -1: give 0 or more files\n")
    r = wood.ess("stream", "browse", "2014-09-07", "2014-09-01", "wc -l")
    assert r.returncode == 4 and r.stdout == ""
    assert r.stderr == (
        "ess stream: error: date range '2014-09-07' .. '2014-09-01' is reversed (the lower "
        "bound is after the upper one), so no file can match; swap the bounds\n"
    )


def test_a_truncated_gzip_prints_no_result_and_is_named_once(ess_env: EssEnv) -> None:
    ess_env.ess("select", "local", check=True)
    data = ess_env.root / "tr"
    data.mkdir()
    for day in ("01", "02"):
        name = f"browse_201409{day}.gz"
        (data / name).write_bytes((WOODWORKING / name).read_bytes())
    cut = data / "browse_20140903.gz"
    cut.write_bytes((WOODWORKING / "browse_20140903.gz").read_bytes()[:20000])
    ess_env.ess("category", "add", "tr", f"{data}/*", check=True)
    r = ess_env.ess("stream", "tr", "*", "*", "wc -l")
    assert r.returncode == 6
    assert r.stdout == "9896\n10120\n"  # no `0` line for the file that could not be read
    assert r.stderr.count(str(cut)) == 1
    assert f"  {cut}: corrupt gzip data (" in r.stderr


def test_aq_pp_in_a_stream_names_the_file_and_the_first_bad_value(ess_env: EssEnv) -> None:
    ess_env.ess("select", "local", check=True)
    data = ess_env.root / "d"
    data.mkdir()
    good = b"day,n\n2014-09-01,1\n2014-09-01,2\n"
    bad = b"day,n\n2014-09-02,1\n2014-09-02,TBD\n2014-09-02,3\n2014-09-02,x\n"
    (data / "n_20140901.csv").write_bytes(good)
    (data / "n_20140902.csv").write_bytes(bad)
    ess_env.ess("category", "add", "n", f"{data}/*.csv", "--columnspec", "S:day I:n", check=True)
    r = ess_env.ess("stream", "n", "*", "*", "aq_pp -f,+1,eok - -d %cols -o,notitle - | wc -l")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "2\n2\n"
    assert r.stderr == (
        f"aq_pp: {data}/n_20140902.csv: 2 record(s) skipped (input errors), the first at "
        "line 3, field 2 (n, type I): cannot convert 'TBD' to integer\n"
    )
    # outside a stream stdin is still stdin
    r = ess_env.run("-f,+1,eok", "-", "-d", "s:day", "i:n", tool="aq_pp", input=bad.decode())
    assert r.returncode == 0
    assert r.stderr.startswith("aq_pp: stdin: 2 record(s) skipped (input errors), the first at")


def test_a_traceback_fails_the_test_whichever_way_the_cli_was_run() -> None:
    crash = "echo 'Traceback (most recent call last):' >&2"
    with pytest.raises(pytest.fail.Exception, match="printed a traceback"):
        subprocess.run(["bash", "-c", crash], capture_output=True, check=False)
    with pytest.raises(pytest.fail.Exception, match="printed a traceback"):
        subprocess.run(crash, shell=True, capture_output=True, check=False)  # sh -c
    # other programs' stderr is theirs to fill
    subprocess.run(["python3", "-c", "raise SystemExit(1)"], capture_output=True, check=False)

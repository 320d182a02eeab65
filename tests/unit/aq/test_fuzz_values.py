"""Fuzz aq_pp through its command line: whatever the argv, the rules and the values, the result
is a documented exit code and one-line messages, never a traceback (docs/reliability.md).

In-process through `ess.cli.aq_pp.main(argv)` (thousands of cases), a smaller set as real
`aq_pp` processes. HYPOTHESIS_PROFILE=big runs 20 times as many, freshly randomised.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ess.aq.rules import OPTIONS
from tests.unit.aq.fuzzing import (
    HOSTILE,
    INT_LITERALS,
    STRING_LITERALS,
    TYPES,
    check_result,
    expressions,
    fuzz_settings,
    pp_commands,
    run_pp,
    run_subprocess,
    typed_expressions,
)


@pytest.fixture(scope="module", autouse=True)
def _in_a_scratch_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Fuzzed command lines name output files (`-o if`): they land in a scratch directory,
    never in the checkout. Module-scoped: hypothesis refuses function-scoped fixtures."""
    scratch = tmp_path_factory.mktemp("fuzz-cwd")
    before = Path.cwd()
    os.chdir(scratch)
    try:
        yield scratch
    finally:
        os.chdir(before)


# every type over every hostile value, one column per type: the expression fuzz reads them all
EXPR_COLUMNS = [f"{t}:{t.lower()}x" for t in TYPES]
EXPR_INPUT = b"".join(b",".join([v] * len(TYPES)) + b"\n" for v in HOSTILE)


@fuzz_settings(2500)
@given(pp_commands())
def test_fuzz_commands_inprocess(case: tuple[list[str], bytes]) -> None:
    argv, data = case
    check_result(run_pp(argv, data), "aq_pp", argv)


NAMES = [c.split(":")[1] for c in EXPR_COLUMNS]
NUM_NAMES = [n for n in NAMES if n[:-1].upper() not in ("S", "IP")]
STR_NAMES = [n for n in NAMES if n not in NUM_NAMES]


@fuzz_settings(2000)
@given(
    st.one_of(
        expressions(NAMES, depth=3),
        typed_expressions(NUM_NAMES, STR_NAMES, depth=3),
        typed_expressions(NUM_NAMES, STR_NAMES, depth=3, kind="S"),
    ),
    st.sampled_from(["s", "i", "is", "l", "ls", "f", "ip", "-", "filt"]),
    st.sampled_from([",eok", ""]),
)
def test_fuzz_expressions_inprocess(expr: str, target: str, attrs: str) -> None:
    rule = ["-filt", expr] if target == "filt" else ["-eval", f"{target}:t" if target != "-"
                                                      else "-", expr]  # fmt: skip
    argv = ["-f" + attrs, "-", "-d", *EXPR_COLUMNS, *rule, "-o", "-"]
    check_result(run_pp(argv, EXPR_INPUT), "aq_pp", argv)


OPTION_WORDS = sorted({name for opt in OPTIONS.specs for name in (opt.name, *opt.aliases)})
ARGV_WORDS = [*OPTION_WORDS, "-", "s:a", "I:b", "a", "b", "1", "x.csv", "-f,eok", "-o,app",
              "-d", "-endif", "-else", "S:a", *INT_LITERALS[:4], *STRING_LITERALS[:4],
              ""]  # fmt: skip


@fuzz_settings(1000)
@given(st.lists(st.one_of(st.sampled_from(ARGV_WORDS), st.text(max_size=6)), max_size=10))
def test_fuzz_argv_shapes_inprocess(words: list[str]) -> None:
    argv = ["-f", "-", "-d", "S:a", "I:b", *words]
    if "\x00" in "".join(argv):  # a shell cannot pass NUL in an argument
        return
    check_result(run_pp(argv, b"x,1\n"), "aq_pp", argv)


@fuzz_settings(25)
@given(pp_commands())
def test_fuzz_commands_subprocess(case: tuple[list[str], bytes]) -> None:
    argv, data = case
    env = dict(os.environ)
    check_result(run_subprocess("aq_pp", argv, data, env), "aq_pp", argv)

"""The option table shared by aq_pp and aq_udb (ess.aq.options)."""

from __future__ import annotations

import pytest

from ess.aq.options import OptionTable, OptSpec
from ess.errors import AqSyntaxError, NotSupportedError

TABLE = OptionTable(
    [
        OptSpec("-exp", ("Db[:Tab]",), aliases=("-exp_usr",), once="action"),
        OptSpec("-cnt", ("Db[:Tab]",), once="action"),
        OptSpec("-eval", ("column", "expression"), aliases=("-evlc",)),
        OptSpec("-c", words=True),
        OptSpec("-mod", unsupported="aq_udb -mod"),
    ]
)


def test_scan_takes_arguments_words_and_attributes() -> None:
    found = list(TABLE.scan(["-exp_usr,spec=x", "db:t", "-evlc", "n", "-n", "-c", "a", "b"]))
    assert [(o.key, o.name, o.attrs, o.args, o.words, o.at) for o in found] == [
        ("-exp", "-exp_usr", ["spec=x"], ["db:t"], [], 1),
        ("-eval", "-evlc", [], ["n", "-n"], [], 3),  # `-n` is a value: a fixed argument
        ("-c", "-c", [], [], ["a", "b"], 6),
    ]


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["-exp", "a", "-cnt", "b"], r"^-cnt: only one action per command \(-exp given\)$"),
        (["-c", "a", "-zz"], "^unknown option -zz$"),  # an unknown option ends a word list
        (["stray"], r"^unexpected argument 'stray' \(argument 1\)$"),
        (["-eval", "n"], r"^-eval: missing expression \(end of command line\)$"),
        (["-eval", "n", "-c"], r"^-eval: missing expression before '-c' \(argument 3\)$"),
    ],
)
def test_scan_errors(argv: list[str], error: str) -> None:
    with pytest.raises(AqSyntaxError, match=error):
        list(TABLE.scan(argv))


def test_unsupported_option_and_terse_missing() -> None:
    with pytest.raises(NotSupportedError, match="aq_udb -mod"):
        list(TABLE.scan(["-mod", "x"]))
    terse = OptionTable(TABLE.specs, precise_missing=False)
    with pytest.raises(AqSyntaxError, match=r"^-eval: missing expression$"):
        list(terse.scan(["-evlc", "n"]))


def test_lone_dash_and_negative_numbers_are_not_options() -> None:
    assert not TABLE.is_option("-") and not TABLE.ends_list("-1")
    assert TABLE.ends_list("-bogus") and TABLE.is_option("-EVAL,x")

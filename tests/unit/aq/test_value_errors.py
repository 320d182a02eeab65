"""One regression test per class of value that used to end aq_pp with a traceback or a wrong
silent answer (docs/reliability.md, "aq_pp and aq_udb never print a traceback"). Each runs the
command line in-process as a user types it and checks the exit code, the output and stderr."""

from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path

import polars as pl
import pytest

from ess.aq.pp import compile_program
from ess.aq.rules import parse_argv
from ess.errors import AqDataError
from tests.unit.aq.fuzzing import Result, check_result, run_pp, run_subprocess


def pp(argv: list[str], data: bytes = b"") -> Result:
    res = run_pp(argv, data)
    check_result(res, "aq_pp", argv)
    return res


def lines(res: Result) -> list[str]:
    return res.out.decode().splitlines()


def test_impossible_dates_drop_their_rows_under_eok() -> None:
    data = (b"1,2014.02.30.00.00.00\n2,2016.02.29.23.59.60\n3,2014.13.01.00.00.00\n"
            b"4,2014.09.01.25.00.00\n5,2014.09.01.00.00.02\n")  # fmt: skip
    res = pp(["-f,eok", "-", "-d", "I:a", "S:b", "-eval", "is:t",
              'GmDateToTime(b, "Y.m.d.H.M.S")', "-o,notitle", "-", "-c", "a", "t"],
             data)  # fmt: skip
    assert res.code == 0 and res.err == ""
    # Feb 30, month 13 and hour 25 are dropped; a leap second is the next minute's first
    assert lines(res) == ["2,1456790400", "5,1409529602"]


def test_a_local_time_skipped_by_dst_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    data = b"1,2014.03.09.02.30.00\n2,2014.11.02.01.30.00\n"
    res = pp(["-f", "-", "-d", "I:a", "S:b", "-eval", "ls:t", 'DateToTime(b, "Y.m.d.H.M.S")',
              "-o,notitle", "-", "-c", "a", "t"], data)  # fmt: skip
    assert res.code == 0
    assert lines(res) == ["2,1414906200"]  # 01:30 occurs twice that night: the earlier


def test_unsigned_64_bit_arithmetic_wraps_like_c() -> None:
    data = b"18446744073709551615,3\n"
    res = pp(["-f", "-", "-d", "L:a", "L:b", "-eval", "l:p", "a + 1", "-eval", "ls:q", "a",
              "-eval", "l:r", "b - 5", "-eval", "ls:s", "b - 5", "-eval", "i:u", "a * 2",
              "-o,notitle", "-", "-c", "p", "q", "r", "s", "u"], data)  # fmt: skip
    assert res.code == 0, res.err
    assert lines(res) == ["0,-1,18446744073709551614,-2,4294967294"]


def test_huge_integer_constants() -> None:
    res = pp(["-f", "-", "-d", "I:a", "-eval", "l:t", "99999999999999999999999", "-o", "-"])
    assert res.code == 7
    assert res.err.startswith("aq_pp: -eval: integer constant out of the 64-bit range")
    res = pp(["-f", "-", "-d", "I:a", "-eval", "l:t", "18446744073709551615",
              "-eval", "ls:u", "9223372036854775808", "-o,notitle", "-", "-c", "t", "u"],
             b"1\n")  # fmt: skip
    assert lines(res) == ["18446744073709551615,-9223372036854775808"]


def test_a_float_where_an_integer_is_expected() -> None:
    res = pp(["-f", "-", "-d", "S:b", "-eval", "s:t", "SubStr(b, 1e300)",
              "-eval", "s:u", "SubStr(b, 1, 1e300)", "-o,notitle", "-", "-c", "t", "u"],
             b"hello\n")  # fmt: skip
    assert res.code == 0
    assert lines(res) == [',"ello"']


def test_contain_with_no_substring_and_shash_of_a_constant() -> None:
    res = pp(["-f", "-", "-d", "S:b", "-eval", "i:c", 'Contain(b, "")',
              "-eval", "i:a", 'ContainAll(b, "")', "-eval", "i:h", 'SHash("abc")',
              "-o,notitle", "-", "-c", "c", "a", "h"], b"x\ny\n")  # fmt: skip
    assert lines(res) == ["0,1,193485963", "0,1,193485963"]


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        ('RxCmp(b, "ab\\\\")', "incomplete escape sequence"),
        ('RxCmp(b, "(((", "pcre")', "unclosed group"),
        ('RxRep(b, "[z-a]", "x", "pcre")', "invalid character class range"),
    ],
)
def test_invalid_regexes_are_errors_of_their_rule(call: str, reason: str) -> None:
    # with no input at all: the regex is checked when the rule is compiled
    res = pp(["-f", "-", "-d", "S:b", "-filt", call, "-o", "-"])
    assert res.code == 7
    assert res.err.startswith(f"aq_pp: -filt '{call}': invalid regex ")
    assert reason in res.err and len(res.err.splitlines()) == 1


def test_bre_parentheses_are_literal() -> None:
    res = pp(["-f", "-", "-d", "S:b", "-filt", 'RxCmp(b, "(((")', "-o,notitle", "-"],
             b"x(((y\nabc\n")  # fmt: skip
    assert lines(res) == ['"x(((y"']


def test_strftime_copies_unknown_conversions() -> None:
    res = pp(["-f", "-", "-d", "I:a", "-eval", "s:t", 'TimeToGmDate(a, "%Q %Y-%m-%d %")',
              "-o,notitle", "-", "-c", "t"], b"1409529602\n")  # fmt: skip
    assert lines(res) == ['"%Q 2014-09-01 %"']


@pytest.mark.parametrize(
    ("sep", "code", "message"),
    [
        ("\\xZZ", 7, "aq_pp: -f (argument 1): sep=\\xZZ: \\xHH needs two hex digits"),
        ("\\xff", 10, "aq_pp: -f (argument 1): sep= with a byte above \\x7f"),
    ],
)
def test_bad_separators(sep: str, code: int, message: str) -> None:
    res = pp([f"-f,sep={sep}", "-", "-d", "S:a", "-o", "-"], b"x\n")
    assert res.code == code
    assert res.err.startswith(message)


def test_binary_input_gets_one_line_and_no_polars_warnings(tmp_path: Path) -> None:
    blob = tmp_path / "blob.bin"
    blob.write_bytes(random.Random(1).randbytes(3000))
    # a real process: under pytest, Python warnings are captured instead of printed
    argv = ["-f", str(blob), "-d", "I:a", "S:b", "-o", "/dev/null"]
    res = run_subprocess("aq_pp", argv, b"", dict(os.environ))
    check_result(res, "aq_pp", argv)
    assert res.code == 8 and len(res.err.splitlines()) == 1, res.err
    argv = ["-f,eok", str(blob), "-d", "I:a", "S:b", "F:c", "-o", "/dev/null"]
    res = run_subprocess("aq_pp", argv, b"", dict(os.environ))
    check_result(res, "aq_pp", argv)
    assert res.code == 0 and "record(s) skipped" in res.err and len(res.err.splitlines()) == 1


def test_unterminated_quote_at_the_very_end() -> None:
    # a Polars reader panic (its message went to stderr) before the fast path stepped aside
    res = pp(["-f", "-", "-d", "I:a", "F:b", "-o", "-"], b'1,2\n3,"')
    assert res.code == 8 and "panicked" not in res.err
    assert res.err == "aq_pp: input error: stdin, line 2: record does not match the column " \
                      "spec (add eok to -f to skip)\n"  # fmt: skip


def test_nox_with_a_lone_cr_and_a_huge_field() -> None:
    data = b"1,a\rb\n2," + b"x" * 200_000 + b",3\n4,c\n"
    res = pp(["-f,nox,eok", "-", "-d", "I:a", "S:b", "-o,notitle", "-", "-c", "a"], data)
    assert res.code == 0 and lines(res) == ["1", "4"]
    assert res.err == "aq_pp: stdin: 1 record(s) with too many fields skipped\n"


def test_var_initial_values_wrap_or_fail_in_one_line() -> None:
    res = pp(["-f", "-", "-d", "I:a", "-var", "i:v", "4294967297", "-ovar", "-"], b"1\n")
    assert res.code == 0 and lines(res) == ['"v"', "1"]
    res = pp(["-f", "-", "-d", "I:a", "-var", "i:v", "1e400", "-ovar", "-"], b"1\n")
    assert res.code == 7 and res.err.startswith("aq_pp: -var v: bad initial value")


def test_a_step_error_names_the_input_lines_and_the_rule(tmp_path: Path) -> None:
    """The run-time mapping point: whatever a step raises from Polars becomes one AqDataError
    with the batch's lines and the rule (the step here stands for a Polars bug)."""
    data = tmp_path / "in.csv"
    data.write_text("1\n2\n3\n")
    job = compile_program(parse_argv(["-f", str(data), "-d", "I:a", "-eval", "i:t", "a + 1",
                                      "-o", str(tmp_path / "out.csv")]))  # fmt: skip

    def broken(df: pl.DataFrame, st: object) -> pl.DataFrame:
        raise pl.exceptions.ComputeError("boom\nthe whole expression tree")

    labels = job.plan.labels
    index = labels.index("-eval t 'a + 1'")
    steps = list(job.plan.steps)
    steps[index] = broken
    job.plan = dataclasses.replace(job.plan, steps=tuple(steps))
    with pytest.raises(AqDataError) as info:
        job.run()
    assert str(info.value) == f"{data}, lines 1-3: -eval t 'a + 1': boom"
    assert info.value.exit_code == 8


def test_seed_and_rownum_settings_wrap_like_c() -> None:
    argv = ["-f", "-", "-d", "I:a", "-seed", "99999999999999999999999", "-rownum", "-3",
            "-eval", "ls:n", "$RowNum", "-eval", "i:r", "$Random",
            "-o,notitle", "-", "-c", "n"]  # fmt: skip
    res = pp(argv, b"1\n2\n")
    assert res.code == 0 and lines(res) == ["-3", "-2"]


def test_unsigned_columns_in_functions_and_unary_minus() -> None:
    argv = ["-f", "-", "-d", "L:a", "I:b", "-eval", "ls:n", "-a", "-eval", "ls:m", "-b",
            "-eval", "l:x", "Max(a, 1)", "-o,notitle", "-", "-c", "n", "m", "x"]  # fmt: skip
    res = pp(argv, b"18446744073709551615,5\n")
    assert lines(res) == ["1,-5,1"]  # a is the int64_t -1: -a is 1, Max(-1, 1) is 1


def test_base64dec_padding_and_invalid_utf8() -> None:
    argv = ["-f", "-", "-d", "S:a", "-eval", "s:t", "Base64Dec(a)", "-eval", "s:e",
            'Base64Dec("")', "-o,notitle", "-", "-c", "t", "e"]  # fmt: skip
    res = pp(argv, b"aGVsbG8=\naGVsbG8\n/w==\n")
    assert lines(res) == ['"hello",', '"hello",', '"\ufffd",']


def test_batch_functions_over_constants_fill_the_frame() -> None:
    """A batch function over a constant saw one row: 'length 1 doesn't match the height'."""
    argv = ["-f", "-", "-d", "I:a", "-eval", "s:t", "ToS(2.5)", "-eval", "s:u", "ToS(2.5 * 2)",
            "-eval", "i:h", 'SHash(ToUpper("abc"))',
            "-o,notitle", "-", "-c", "t", "u", "h"]  # fmt: skip
    assert lines(pp(argv, b"1\n2\n")) == ['"2.5","5",193485963'] * 2
    assert pp(argv, b"\r\n").out == b""  # no record at all: still no error

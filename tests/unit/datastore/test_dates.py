"""Date extraction: every dateregex token, auto, none, dateformat, ranges."""

from __future__ import annotations

import pytest

from ess.datastore.dates import (
    NONE_STAMP,
    DateRange,
    compile_dateregex,
    compile_rule,
    dateformat_to_regex,
    display_date,
    parse_range,
)
from ess.errors import CategoryError


@pytest.mark.parametrize(
    ("rule", "name", "expected"),
    [
        ("[:%Y:][:%m:][:%d:]", "browse_20140901.gz", "2014-09-01 00:00:00"),
        ("[:%y:][:%m:][:%d:].zip", "140609.zip", "2014-06-09 00:00:00"),
        ("[:%y:][:%m:][:%d:].zip", "990609.zip", "1999-06-09 00:00:00"),
        ("[:%y:][:%m:][:%d:].zip", "690101.zip", "1969-01-01 00:00:00"),
        ("[:%y:][:%m:][:%d:].zip", "680101.zip", "2068-01-01 00:00:00"),
        ("[:%b:]-[:%d:]-[:%Y:]", "Dec-31-2015_age_gender.csv", "2015-12-31 00:00:00"),
        ("[:%B:]_[:%Y:]", "report_September_2014.csv", "2014-09-01 00:00:00"),
        (
            "[:%Y:]-[:%m:]-[:%d:]-[:%H:]-[:%M:]-[:%S:]-.*",
            "2015-04-30-00-05-22-63C8146U29G91",
            "2015-04-30 00:05:22",
        ),
        (
            "[:%Y:][:%m:][:%d:][:%H:][:%M:][:%S:][:%p:]",
            "20140701000006am.log",
            "2014-07-01 00:00:06",
        ),
        (
            "[:%Y:][:%m:][:%d:][:%H:][:%M:][:%S:][:%p:]",
            "20140701010006PM.log",
            "2014-07-01 13:00:06",
        ),
        (
            "[:%Y:][:%m:][:%d:][:%H:][:%M:][:%S:][:%p:]",
            "20140701120006am.log",
            "2014-07-01 00:00:06",
        ),
        (
            "[:%Y:][:%m:][:%d:]T[:%H:][:%M:][:%z:]",
            "log_20140701T1030+0200.txt",
            "2014-07-01 08:30:00",
        ),
        ("[:%Y:][:%m:][:%d:]T[:%H:][:%M:][:%z:]", "log_20140701T1030Z.txt", "2014-07-01 10:30:00"),
        ("-[:%Y:]", "climate/010010-1940.op", "1940-01-01 00:00:00"),
        (".*[:%Y:]-[:%m:]-[:%d:].*", "file_2014-06-09_out.zip", "2014-06-09 00:00:00"),
        (".*[:%m:]-[:%y:]-[:%d:].*", "data_06-14-09.csv", "2014-06-09 00:00:00"),
    ],
)
def test_every_token(rule: str, name: str, expected: str) -> None:
    assert compile_dateregex(rule).stamp("/data/" + name) == expected


def test_leftmost_match_must_be_valid_documented_account_examples() -> None:
    name = "/d/account12345678_20140609.csv"
    assert compile_dateregex("[:%Y:][:%m:][:%d:]").stamp(name) == NONE_STAMP
    assert compile_dateregex(".*[:%Y:][:%m:][:%d:].csv").stamp(name) == "2014-06-09 00:00:00"
    assert compile_dateregex("_[:%Y:][:%m:][:%d:]").stamp(name) == "2014-06-09 00:00:00"
    assert compile_dateregex("[:%f:{8,}]_").stamp(name) == 12345678
    assert compile_dateregex("account[:%f:{8,}]").stamp(name) == 12345678
    assert compile_dateregex("account[:%f:{4,4}]").stamp(name) == 1234


def test_base_name_first_then_whole_path() -> None:
    rule = compile_dateregex("[:%Y:]/[:%m:]/[:%d:]")
    assert rule.stamp("/logs/2014/09/03/events.log") == "2014-09-03 00:00:00"
    rule = compile_dateregex("[:%Y:][:%m:][:%d:]")
    assert rule.stamp("/archive20130101/browse_20140901.gz") == "2014-09-01 00:00:00"


def test_invalid_dates_fall_back_to_none() -> None:
    rule = compile_dateregex("[:%Y:][:%m:][:%d:]")
    assert rule.stamp("/x/browse_20141301.gz") == NONE_STAMP  # month 13
    assert rule.stamp("/x/browse_20140231.gz") == NONE_STAMP  # 31 February
    assert rule.stamp("/x/nodate.csv") == NONE_STAMP
    assert compile_dateregex("[:%b:]-[:%Y:]").stamp("/x/Foo-2014") == NONE_STAMP


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("browse_20140901.gz", "2014-09-01 00:00:00"),
        ("log-2014-06-15.csv.gz", "2014-06-15 00:00:00"),
        ("log_2014_06_15.csv", "2014-06-15 00:00:00"),
        ("2015-04-30-00-05-22-63C8146U29G91", "2015-04-30 00:05:22"),
        ("events_2014-09-01T13:45:10.log", "2014-09-01 13:45:10"),
        ("account12345678_20140609.csv", "2014-06-09 00:00:00"),
        ("gift_nodate.csv", NONE_STAMP),
        ("v1.2.3.txt", NONE_STAMP),
        ("id_99999999.csv", NONE_STAMP),
    ],
)
def test_auto(name: str, expected: str) -> None:
    assert compile_rule(None, None).stamp("/data/" + name) == expected


def test_auto_looks_at_directories_when_the_name_has_no_date() -> None:
    assert compile_rule("auto", None).stamp("/logs/2014/09/03/events.log") == "2014-09-03 00:00:00"


def test_none_is_1970() -> None:
    assert compile_dateregex("none").stamp("/x/browse_20140901.gz") == NONE_STAMP
    assert display_date(NONE_STAMP) == "1970-01-01"


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("[:%Q:]", "unknown token"),
        ("browse_[:%Y:][:%Y:]", "appears twice"),
        ("[:%Y:](unclosed", "invalid regular expression"),
        ("browse_", "no date token"),
        ("[:%f:{,4}]", "minimum digit count"),
        ("[:%f:{4,}][:%Y:]", "cannot be combined"),
    ],
)
def test_malformed_rules_are_rejected(rule: str, message: str) -> None:
    with pytest.raises(CategoryError, match=message):
        compile_dateregex(rule)


@pytest.mark.parametrize(
    ("fmt", "regex", "name", "expected"),
    [
        ("*Y-M-D*", ".*[:%Y:]-[:%m:]-[:%d:].*", "file_2014-06-09_out.zip", "2014-06-09 00:00:00"),
        ("_YMD", "_[:%Y:][:%m:][:%d:]", "account12345678_20140609.csv", "2014-06-09 00:00:00"),
        ("*-Y", ".*-[:%Y:]", "010010-99999-1940.op", "1940-01-01 00:00:00"),
        ("#_", "[:%f:{1,}]_", "account12345678_20140609.csv", 12345678),
        ("MM-YY-DD", "[:%m:]-[:%y:]-[:%d:]", "06-14-09", "2014-06-09 00:00:00"),
    ],
)
def test_dateformat_translation(fmt: str, regex: str, name: str, expected: object) -> None:
    assert dateformat_to_regex(fmt) == regex
    assert compile_rule(None, fmt).stamp("/d/" + name) == expected


def test_ranges_are_inclusive_and_star_is_open() -> None:
    week = parse_range("2014-09-01", "2014-09-07")
    assert week.contains("2014-09-01 00:00:00")
    assert week.contains("2014-09-07 00:00:00")
    assert not week.contains("2014-09-07 13:00:00")  # the granularity pitfall of spec 2.14.1
    assert not week.contains("2014-08-31 23:59:59")
    assert parse_range("*", "*") == DateRange(None, None)
    assert parse_range("*", "2014-09-03").contains("1970-01-01 00:00:00")
    assert parse_range("2014-09-07 13", "*").contains("2014-09-07 13:00:00")
    assert parse_range("2014-09-07 13:30:01", "*").lower == "2014-09-07 13:30:01"


def test_numeric_ranges() -> None:
    ids = parse_range("100", "200", numeric=True)
    assert ids.contains(100) and ids.contains(200) and not ids.contains(201)


@pytest.mark.parametrize("bound", ["2014-13-01", "yesterday", "2014/09/01"])
def test_bad_bounds(bound: str) -> None:
    with pytest.raises(CategoryError, match="bound"):
        parse_range(bound, "*")


def test_a_reversed_range_is_an_error_and_an_equal_one_is_not() -> None:
    with pytest.raises(CategoryError, match="reversed"):
        parse_range("2014-09-07", "2014-09-01")
    with pytest.raises(CategoryError, match="reversed"):
        parse_range("200", "100", numeric=True)
    assert parse_range("2014-09-07", "2014-09-07").contains("2014-09-07 00:00:00")
    assert parse_range("2014-09-07", "2014-09-07 13").contains("2014-09-07 13:00:00")


@pytest.mark.parametrize(
    ("rule", "path", "found"),
    [
        ("_[:%Y:][:%m:][:%d:]", "/d/account12345678_20140609.csv", True),
        ("[:%Y:]-[:%m:]-[:%d:]", "/d/browse_20140901.gz", False),
        ("[:%Y:][:%m:][:%d:]", "/d/x_20141399.gz", False),  # matches, but not a date
        ("account[:%f:{8,}]", "/d/account12345678_x.csv", True),
        ("account[:%f:{8,}]", "/d/other.csv", False),
        ("auto", "/d/browse_20140901.gz", True),
        ("auto", "/d/gift_nodate.csv", False),
        ("none", "/d/browse_20140901.gz", False),
    ],
)
def test_extracts_tells_a_found_date_from_the_fallback(rule: str, path: str, found: bool) -> None:
    compiled = compile_dateregex(rule)
    assert compiled.extracts(path) is found
    assert compiled.explicit is (rule not in ("auto", "none"))

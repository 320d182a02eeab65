"""Category helpers that need no datastore: the undated-files warning."""

from __future__ import annotations

from ess.datastore.category import Category, CategoryFile, undated_warning


def _files(category: Category, *names: str) -> list[CategoryFile]:
    rule = category.date_rule
    return [CategoryFile(f"/d/{n}", 1, 0.0, rule.stamp(f"/d/{n}")) for n in names]


def test_a_rule_that_finds_no_date_is_reported_with_a_file() -> None:
    cat = Category(name="b", pattern="/d/*", dateregex="[:%Y:]-[:%m:]-[:%d:]")
    files = _files(cat, "browse_20140901.gz", "browse_2014-09-02.gz", "browse_20140903.gz")
    assert undated_warning(cat, files) == (
        "category 'b': dateregex '[:%Y:]-[:%m:]-[:%d:]' finds no date in 2 of 3 file names "
        "(e.g. /d/browse_20140901.gz); they get the date 1970-01-01"
    )


def test_dateformat_and_numbers_are_named_as_given() -> None:
    cat = Category(name="n", pattern="/d/*", dateformat="account#")
    warning = undated_warning(cat, _files(cat, "account1.csv", "other.csv"))
    assert warning is not None
    assert "dateformat 'account#' finds no date in 1 of 2" in warning
    assert warning.endswith("they get the number 0")


def test_no_warning_when_every_file_is_dated_or_the_rule_is_auto() -> None:
    cat = Category(name="b", pattern="/d/*", dateregex="_[:%Y:][:%m:][:%d:]")
    assert undated_warning(cat, _files(cat, "b_20140901.gz")) is None
    auto = Category(name="a", pattern="/d/*")
    assert undated_warning(auto, _files(auto, "gift_nodate.csv")) is None

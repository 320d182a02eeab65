"""udbsql statements as aq_udb command lines (ess.query.udbsql.translate)."""

from __future__ import annotations

import pytest

from ess.errors import NotSupportedError, UsageError
from ess.query.udbsql import translate


@pytest.mark.parametrize(
    ("query", "argv"),
    [
        ("select * from db:t limit 10", ["-exp", "db:t", "-top", "10"]),
        ("select * from db:t where x > 3", ["-exp", "db:t", "-filt", "x > 3"]),
        ("select a, b from db:t order by a", ["-exp", "db:t", "-sort", "a", "-c", "a", "b"]),
        ("select * from db:t order by a desc", ["-exp", "db:t", "-sort,dec", "a"]),
        ("select * from db:var", ["-exp", "db:var"]),
        ("select count(*) from db:t where x > 3", ["-cnt", "db:t", "-filt", "x > 3"]),
        (
            "select count(distinct c1), count(distinct c2), count(*) from db:t",
            ["-exp", "db:t", "-c", "c1", "c2"],
        ),
        ("select count(*) from db:t group by c1 c2", ["-exp", "db:t", "-c", "c1", "c2"]),
    ],
)
def test_translations(query: str, argv: list[str]) -> None:
    assert translate(query).argv == argv


def test_sub_select_runs_the_inner_export_first() -> None:
    tr = translate("SELECT * FROM db:tA WHERE k IN (SELECT j FROM tB WHERE n > 2) limit 5")
    assert tr.inner == ["-exp", "db:tB", "-filt", "n > 2", "-c", "j", "-o,notitle", "-"]
    assert tr.argv == ["-exp", "db:tA", "-top", "5"]
    assert (tr.outer_col, tr.inner_col) == ("k", "j")
    assert tr.commands()[0].startswith("aq_udb -exp db:tB")


def test_sub_select_with_another_condition() -> None:
    tr = translate("select * from db:tA where k in (select j from other:tB) && x > 1")
    assert tr.inner is not None and tr.inner[1] == "other:tB"
    assert tr.argv == ["-exp", "db:tA", "-filt", "x > 1"]


def test_errors() -> None:
    with pytest.raises(UsageError):
        translate("select * where x")
    with pytest.raises(NotSupportedError):
        translate("select sum(x) from db:t")
    with pytest.raises(UsageError, match="GROUP BY"):
        translate("select a from db:t group by a")

"""Reading statements: table references, Essentia's forms and rules (ess.query.dialect)."""

from __future__ import annotations

import pytest

from ess.errors import UsageError
from ess.query.dialect import CountItem, parse


def test_table_references_are_replaced_by_names() -> None:
    s = parse("select count(*) from browse:2014-09-01 10:00:2014-09-02")
    assert s.sql == 'select count(*) from "browse"'
    (ref,) = s.tables
    assert (ref.category, ref.lower, ref.upper) == ("browse", "2014-09-01 10:00", "2014-09-02")


def test_the_same_category_twice_gets_two_names_and_a_join_keeps_aliases() -> None:
    s = parse("select * from a:*:2014-09-01 x join a:2014-09-02:* y on x.k = y.k")
    assert [t.name for t in s.tables] == ["a", "a_2"]
    assert s.sql == 'select * from "a" x join "a_2" y on x.k = y.k'
    assert s.essentia is None


def test_a_colon_inside_a_string_is_not_a_table() -> None:
    s = parse("select count(*) from b:*:* where x == 'from a:*:*'")
    assert len(s.tables) == 1


def test_row_query_form() -> None:
    e = parse("SELECT userID, price FROM p:*:* WHERE price > 5 ORDER BY price LIMIT 3").essentia
    assert e is not None and not e.count
    assert e.columns == ("userID", "price")
    assert (e.where, e.order_by, e.limit) == ("price > 5", "price", 3)


def test_count_forms() -> None:
    e = parse(
        'select count(distinct userID), count(*) from p:*:* where PatCmp(userID,"66")'
    ).essentia
    assert e is not None and e.count
    assert e.items == (CountItem("distinct", "userID"), CountItem("star"))
    assert e.where == 'PatCmp(userID,"66")'
    e = parse("select count(userID), articleID from p:*:* group by articleID userID").essentia
    assert e is not None and e.group_by == ("articleID", "userID")


@pytest.mark.parametrize(
    ("query", "rule"),
    [
        ("select * from p:*:* group by a", "GROUP BY is not supported for SELECT"),
        ("select count(*) from p:*:* order by a", "ORDER BY is not supported for COUNT"),
        ("select count(*) from p:*:* limit 3", "LIMIT is not supported for COUNT"),
        ("select count(distinct a) from p:*:* group by b", "no DISTINCT"),
    ],
)
def test_essentia_rules(query: str, rule: str) -> None:
    s = parse(query)
    assert s.essentia is None
    assert s.violation is not None and rule in s.violation


def test_duckdb_sql_is_not_essentia() -> None:
    for q in (
        "select a, sum(b) from p:*:* group by a having sum(b) > 1",
        "select * from p:*:* order by a desc",
        "select a from p:*:* union select a from q:*:*",
    ):
        s = parse(q)
        assert s.essentia is None and s.violation is None


def test_positions_map_back_to_the_statement() -> None:
    s = parse("select count(*) from browse:2014-09-01:* whre x")
    at = s.sql.index("whre")
    assert s.text[s.position(at) :].startswith("whre")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "empty query"),
        ("delete from p:*:*", "starts with SELECT"),
        ("select count(*) from browse", "no table reference"),
        ("select (a from p:*:*", "unbalanced"),
    ],
)
def test_errors(query: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse(query)

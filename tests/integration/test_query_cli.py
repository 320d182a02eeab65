"""`ess query` without a cluster: output forms (spec 5.3), SQL beyond Essentia, formats, errors."""

from __future__ import annotations

import json

import pytest

from tests.acceptance.test_query_examples import setup_woodworking
from tests.conftest import EssEnv, make_env


@pytest.fixture(scope="module")
def wood(tmp_path_factory: pytest.TempPathFactory) -> EssEnv:
    env = make_env(tmp_path_factory.mktemp("query-cli"))
    setup_woodworking(env)
    return env


def q(env: EssEnv, *args: str) -> str:
    return env.ess("query", *args, check=True).stdout


def test_several_count_items_share_one_header(wood: EssEnv) -> None:
    out = q(
        wood,
        "select count(distinct userID), count(*), count(distinct articleID) "
        "from browse:2014-09-01:2014-09-01",
    )
    head, row = out.splitlines()
    assert head == '"row","k_userID","k_articleID"'
    rows, users, articles = map(int, row.split(","))
    assert rows == 9895 - 180 and 0 < articles < users < rows  # 180 articleIDs are not numbers


def test_group_by_two_columns_separated_by_spaces(wood: EssEnv) -> None:
    out = q(
        wood,
        "select count(*) from purchase:2014-09-01:2014-09-01 where articleID < 3 "
        "group by articleID refID",
    )
    lines = out.splitlines()
    assert lines[0] == '"articleID","refID","Count"'
    assert lines[1].startswith("1,") and lines[-1].startswith("2,")
    total = q(wood, "select count(*) from purchase:2014-09-01:2014-09-01 where articleID < 3")
    assert sum(int(line.rsplit(",", 1)[1]) for line in lines[1:]) == int(total.split()[1])


def test_count_column_and_group_column(wood: EssEnv) -> None:
    a = q(
        wood,
        "select count(userID),articleID from purchase:2014-09-01:2014-09-01 group by articleID",
    )
    b = q(wood, "select count(userID) from purchase:2014-09-01:2014-09-01 group by articleID")
    assert a == b and a.startswith('"articleID","Count"\n1,')


def test_aq_filters_and_or_equality_and_functions(wood: EssEnv) -> None:
    base = "select count(*) from purchase:2014-09-01:2014-09-03 where "
    n = {
        w: int(q(wood, base + w).split()[1])
        for w in (
            "articleID == 5",
            "articleID == 6",
            "articleID == 5 || articleID == 6",
            "articleID >= 5 && articleID <= 6",
            'PatCmp(userID, "1*")',
            'userID == "1010"',
        )
    }
    assert n["articleID == 5 || articleID == 6"] == n["articleID == 5"] + n["articleID == 6"]
    assert n["articleID >= 5 && articleID <= 6"] == n["articleID == 5 || articleID == 6"]
    assert n['PatCmp(userID, "1*")'] > n['userID == "1010"'] > 0


def test_limit_stops_and_order_by_is_stable(wood: EssEnv) -> None:
    out = q(wood, "select * from browse:*:* where articleID == 7 limit 2")
    assert out.count("\n") == 2 and all(line.endswith(",7") for line in out.splitlines())
    rows = q(
        wood, "select eventDate, articleID from browse:2014-09-01:2014-09-02 order by articleID"
    ).splitlines()
    ones = [r for r in rows if r.endswith(",1")]
    assert ones == sorted(ones)  # ties keep file (time) order
    assert rows[0].endswith(",1") and rows[-1].endswith(",50")


def test_beyond_essentia_sql_has_a_title_line(wood: EssEnv) -> None:
    out = q(
        wood,
        "select articleID, count(distinct userID) users, round(sum(price), 2) total "
        "from purchase:2014-09-01:2014-09-10 where price > 5 group by articleID "
        "having count(*) > 3 order by total desc, articleID limit 3",
    )
    lines = out.splitlines()
    assert lines[0] == '"articleID","users","total"' and len(lines) == 4
    totals = [float(line.split(",")[2]) for line in lines[1:]]
    assert totals == sorted(totals, reverse=True)


def test_join_between_categories_and_a_window_function(wood: EssEnv) -> None:
    joined = q(
        wood,
        "select count(*) from purchase:2014-09-01:2014-09-01 p join "
        "browse:2014-09-01:2014-09-01 b on p.userID = b.userID::VARCHAR "
        "and p.articleID = b.articleID",
    )
    assert joined.startswith('"count_star()"\n') and int(joined.split()[1]) > 0
    ranked = q(
        wood,
        "select articleID, n, rank() over (order by n desc) r from (select "
        "articleID, count(*) n from browse:2014-09-01:2014-09-01 group by 1) "
        "order by r, articleID limit 2",
    )
    assert ranked.splitlines()[0] == '"articleID","n","r"'
    assert ranked.splitlines()[1].endswith(",1")


def test_sql_where_that_is_not_an_aq_filter_runs_in_duckdb(wood: EssEnv) -> None:
    sql = q(wood, "select count(*) from browse:2014-09-01:2014-09-01 where articleID in (1, 2)")
    aq = q(wood, "select count(*) from browse:2014-09-01:2014-09-01 where articleID <= 2")
    assert sql.split()[1] == aq.split()[1]


def test_formats(wood: EssEnv) -> None:
    query = "select count(distinct userID) from browse:2014-09-01:2014-09-01"
    csv_out = q(wood, query)
    js = json.loads(q(wood, "--format", "json", query))
    assert csv_out == f'"row","k_userID"\n{js["row"]},{js["k_userID"]}\n'
    table = q(wood, "--format", "table", query).splitlines()
    assert table[0].split() == ["row", "|", "k_userID"]
    assert set(table[1]) <= {"-", "+"} and table[2].split()[0] == str(js["row"])
    rows = q(wood, "--format", "json", "select * from purchase:2014-09-01:2014-09-01 limit 2")
    first = json.loads(rows.splitlines()[0])
    assert list(first) == ["purchaseDate", "userID", "articleID", "price", "refID"]
    assert isinstance(first["price"], float) and isinstance(first["userID"], str)


def test_dropped_rows_are_one_stderr_line(wood: EssEnv) -> None:
    r = wood.ess("query", "select count(*) from purchase:2014-09-01:2014-09-01", check=True)
    assert r.stderr.splitlines() == [
        "ess query: 22 row(s) dropped: a field does not convert to the type of the column "
        "spec (as aq_pp -f,eok)"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["select count(*) from nowhere:*:*"], "unknown category 'nowhere'"),
        (
            ["select usrID from browse:*:*"],
            "unknown column usrID in category browse (did you mean userID?)",
        ),
        (["select count(*) from browse:*:* where usrid > 3"], "did you mean userID?"),
        (["select sum(articleid), avg(pricee) from purchase:*:*"], "did you mean price?"),
        (["select count(*) from browse:2014-13-45:*"], "'2014-13-45': not a valid date"),
        (
            ["select count(*) from browse:*:* whre userID > 3"],
            "syntax error at position 38 near 'userID'",
        ),
        (["select count(*) from browse:*:* where userID > 3 &&"], "position 50 near '&&'"),
        (
            ["--check", "select count(*) from browse:*:* limit 3"],
            "LIMIT is not supported for COUNT queries",
        ),
        (["--check", "select * from browse:*:* group by userID"], "GROUP BY is not supported"),
    ],
)
def test_errors_are_one_line(wood: EssEnv, args: list[str], message: str) -> None:
    r = wood.ess("query", *args)
    assert r.returncode != 0 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr


def test_check_reads_nothing_and_statement_words_are_joined(wood: EssEnv) -> None:
    r = wood.ess("query", "--check", "select", "count(*)", "from", "browse:*:*", check=True)
    assert (r.stdout, r.stderr) == ("", "")
    r = wood.ess("query", "select", "count(*)", "from", "browse:2014-09-01:2014-09-01")
    assert r.stdout == '"row"\n9715\n'


def test_help_documents_the_dialect(wood: EssEnv) -> None:
    out = wood.ess("query", "--help", check=True).stdout
    for text in ("--label", "--check", "--format", "category:start:end", "example:", "DuckDB"):
        assert text in out


def test_label_chooses_the_datastore(wood: EssEnv) -> None:
    r = wood.ess("query", "--label", "local", "select count(*) from browse:2014-09-01:2014-09-01")
    assert r.stdout == '"row"\n9715\n'
    r = wood.ess("query", "--label", "nowhere", "select count(*) from browse:*:*")
    assert r.returncode != 0 and "nowhere" in r.stderr and r.stderr.count("\n") == 1


def test_udbsql_lists_help_and_errors_without_a_udb(wood: EssEnv) -> None:
    r = wood.run("-l", "select a, b from db:t where x > 1 order by b desc limit 5", tool="udbsql")
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout == "aq_udb -exp db:t -filt 'x > 1' -sort,dec b -top 5 -c a b\n"
    out = wood.run("--help", tool="udbsql", check=True).stdout
    for text in ("--verbose", "--list", "aq_udb -exp", "IN (select", "example:"):
        assert text in out
    r = wood.run("select sum(x) from db:t", tool="udbsql")
    assert r.returncode != 0 and r.stdout == ""
    assert r.stderr.startswith("udbsql: error: ") and r.stderr.count("\n") == 1

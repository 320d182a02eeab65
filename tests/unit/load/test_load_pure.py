"""ess.load's pure parts: names, options, type mapping, CSV rendering, row checks, pgpass."""

from __future__ import annotations

import datetime
import decimal
from pathlib import Path

import polars as pl
import pytest

from ess.errors import NotSupportedError, UsageError
from ess.load.options import literal, parse_options
from ess.load.redshift import copy_sql, manifest
from ess.load.rows import check_rows, cut_bytes
from ess.load.schema import TableColumn, apply_keys, columns_from_spec, create_table_sql
from ess.load.sqlcsv import render_rows
from ess.load.target import fold_name, parse_url, pgpass_password, quote_ident, quote_table


def test_identifiers_are_quoted_never_pasted() -> None:
    assert quote_ident("April2014") == '"april2014"'  # folded like an unquoted name
    assert quote_ident('x"; drop table t; --') == '"x""; drop table t; --"'
    assert quote_table("s.t") == '"s"."t"'
    assert fold_name("April2014") == "april2014"
    assert fold_name('a"b') == 'a"b'
    with pytest.raises(UsageError):
        quote_ident("")


def test_options_as_redshift_spells_them() -> None:
    opts = parse_options(["TRUNCATECOLUMNS", "MAXERROR 10", "ignoreheader as 1", "NULL AS '\\N'"])
    assert opts.truncatecolumns and opts.maxerror == 10 and opts.ignoreheader == 1
    assert opts.null_as == "\\N"
    assert opts.redshift_sql() == "TRUNCATECOLUMNS MAXERROR 10 IGNOREHEADER 1 NULL AS '\\N'"
    assert parse_options(["DATEFORMAT", '"it\'s"']).redshift_sql() == "DATEFORMAT 'it''s'"
    with pytest.raises(UsageError, match="unknown"):
        parse_options(["TRUNCATECOLUMNS; drop table x"])
    with pytest.raises(UsageError, match="whole number"):
        parse_options(["MAXERROR", "lots"])
    with pytest.raises(NotSupportedError):
        parse_options(["DATEFORMAT 'MM/DD/YYYY'"]).check_postgresql()
    parse_options(["DATEFORMAT 'auto'", "EMPTYASNULL"]).check_postgresql()
    assert literal("a'b") == "'a''b'"


def test_type_mapping_and_keys() -> None:
    cols = columns_from_spec("S:purchaseDate I:userID IS:s L:big LS:l F:price IP:ip X s,n=8:w")
    types = [c.sqltype for c in cols]
    assert types == [
        "VARCHAR(256)",
        "BIGINT",  # unsigned 32-bit
        "INTEGER",
        "NUMERIC(20,0)",
        "BIGINT",
        "DOUBLE PRECISION",
        "VARCHAR(45)",
        "VARCHAR(8)",
    ]
    keyed = apply_keys(cols, ["userID = distkey", "price=encode zstd"])
    assert create_table_sql("t", keyed[:2], redshift=True) == (
        'CREATE TABLE "t" ("purchasedate" VARCHAR(256), "userid" BIGINT DISTKEY)'
    )
    assert "DISTKEY" not in create_table_sql("t", keyed, redshift=False)
    with pytest.raises(UsageError, match="no column"):
        apply_keys(cols, ["nope = distkey"])
    with pytest.raises(UsageError, match="expected"):
        apply_keys(cols, ["userID = distkey; drop"])


def test_sql_results_in_aq_conventions() -> None:
    rows = [
        (1, 2.5, 'a"b', None, "", True, datetime.date(2014, 9, 1), decimal.Decimal("1.10")),
    ]
    lines = list(render_rows(["n", "f", "s", "z", "e", "b", "d", "m"], iter(rows)))
    assert lines == [
        '"n","f","s","z","e","b","d","m"',
        '1,2.5,"a""b",,,true,"2014-09-01",1.10',
    ]
    assert list(render_rows(["x"], iter([(0.1,)])))[1] == "0.10000000000000001"  # %.17g


def test_utf8_safe_truncation_in_bytes() -> None:
    df = pl.DataFrame({"s": ["abcdef", "ééé", "a😀b", "ok", None]})
    out = cut_bytes(df, "s", 4)["s"].to_list()
    assert out == ["abcd", "éé", "a", "ok", None]
    assert all(len(v.encode()) <= 4 for v in out if v is not None)


def _cols() -> list[TableColumn]:
    return [
        TableColumn("id", "int4", None),
        TableColumn("name", "varchar", 4),
        TableColumn("price", "float8", None),
    ]


def test_check_rows_rejects_and_counts() -> None:
    data = (
        b'1,abc,1.5\nx,abc,2\n3,toolong,3\n4,ok,nan?\n5,"a,b",1e3\n6,ok,1,extra\n99999999999,a,1\n'
    )
    res = check_rows(data, _cols(), parse_options(["MAXERROR 10"]))
    assert res.rows == 2 and res.bad == 5
    assert res.csv == b'1,abc,1.5\n5,"a,b",1e3\n'
    got = [(r.line, r.column, r.value) for r in res.rejected]
    assert got == [
        (2, "id", "x"),
        (3, "name", "toolong"),
        (4, "price", "nan?"),
        (6, "", "extra"),
        (7, "id", "99999999999"),
    ]
    assert "Overflow" in res.rejected[-1].reason


def test_check_rows_truncates_and_skips_header() -> None:
    data = b"id,name,price\n1,abcdefgh,1\n2,\xc3\xa9\xc3\xa9\xc3\xa9,2\n"
    res = check_rows(data, _cols(), parse_options(["TRUNCATECOLUMNS", "IGNOREHEADER 1"]))
    assert res.bad == 0 and res.csv.decode() == "1,abcd,1\n2,éé,2\n"


def test_redshift_copy_and_manifest() -> None:
    sql = copy_sql('"t"', "s3://b/p/run/manifest", "arn:aws:iam::1:role/r", parse_options([]))
    assert sql == (
        "COPY \"t\" FROM 's3://b/p/run/manifest' IAM_ROLE 'arn:aws:iam::1:role/r' MANIFEST GZIP CSV"
    )
    assert b'"mandatory": true' in manifest(["s3://b/p/1.gz"])


def test_url_and_pgpass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_url("postgresql://me@db:6543/logs") == ("db", 6543, "logs", "me", None)
    assert parse_url("postgres://me:p%40ss@db/logs")[4] == "p@ss"
    with pytest.raises(UsageError):
        parse_url("mysql://me@db/x")
    pgpass = tmp_path / "pgpass"
    pgpass.write_text("# comment\nother:*:*:*:no\ndb:6543:*:me:se\\:cret\n")
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    assert pgpass_password("db", 6543, "logs", "me") == "se:cret"
    assert pgpass_password("db", 5432, "logs", "me") is None

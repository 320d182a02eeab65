"""Random queries from a small grammar: `ess query` answers as DuckDB does over aq_pp's output.

For each drawn query the test itself runs `aq_pp -f,+1,eok FILES -d SPEC [-filt WHERE] -o`,
reads that CSV into DuckDB with the spec's types and runs the same question as plain SQL (a
stable ORDER BY through the row number); `ess query` (the library behind the command, on this
machine's cores) must give the same values, in the same order.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.acceptance.test_query_examples import PURCHASE, setup_woodworking
from tests.conftest import BIN, WOODWORKING, EssEnv, make_env

DAYS = ["20140901", "20140902", "20140903", "20140904"]
COLUMNS = {
    "purchaseDate": "VARCHAR",
    "userID": "VARCHAR",
    "articleID": "BIGINT",
    "price": "DOUBLE",
    "refID": "BIGINT",
}


@dataclass(frozen=True)
class Query:
    lower: int
    upper: int
    where: str | None
    shape: str  # rows | count | distinct | group
    columns: tuple[str, ...]
    order: str | None
    limit: int | None

    def essentia(self) -> str:
        src = f"purchase:{_date(DAYS[self.lower])}:{_date(DAYS[self.upper])}"
        where = f" where {self.where}" if self.where else ""
        if self.shape == "count":
            return f"select count(*) from {src}{where}"
        if self.shape == "distinct":
            return f"select count(distinct {self.columns[0]}) from {src}{where}"
        if self.shape == "group":
            return f"select count({self.columns[0]}) from {src}{where} group by {self.columns[0]}"
        order = f" order by {self.order}" if self.order else ""
        limit = f" limit {self.limit}" if self.limit is not None else ""
        return f"select {', '.join(self.columns)} from {src}{where}{order}{limit}"

    def duckdb(self) -> str:
        if self.shape == "count":
            return "select count(*) from t"
        if self.shape == "distinct":
            return f"select count(*), count(distinct {self.columns[0]}) from t"
        if self.shape == "group":
            c = self.columns[0]
            return f"select {c}, count(*) from t group by {c} order by {c}"
        order = f" order by {self.order}, rn" if self.order else " order by rn"
        limit = f" limit {self.limit}" if self.limit is not None else ""
        return f"select {', '.join(self.columns)} from t{order}{limit}"


def _date(day: str) -> str:
    return f"{day[:4]}-{day[4:6]}-{day[6:]}"


comparisons = st.one_of(
    st.builds(
        lambda op, n: f"articleID {op} {n}",
        st.sampled_from(["<", "<=", ">", ">=", "==", "!="]),
        st.integers(0, 52),
    ),
    st.builds(
        lambda op, x: f"price {op} {x}",
        st.sampled_from(["<", ">="]),
        st.sampled_from(["1.5", "5", "9.99"]),
    ),
    st.builds(lambda p: f'PatCmp(userID, "{p}")', st.sampled_from(["1*", "*66*", "2?3*"])),
    st.builds(lambda u: f'userID == "{u}"', st.sampled_from(["1010", "4084", "nobody"])),
    st.builds(lambda n: f"refID > {n}", st.sampled_from(["0", "1000"])),
)
wheres = st.one_of(
    st.none(),
    comparisons,
    st.builds(
        lambda a, op, b: f"{a} {op} {b}", comparisons, st.sampled_from(["&&", "||"]), comparisons
    ),
)


@st.composite
def queries(draw: st.DrawFn) -> Query:
    lower = draw(st.integers(0, len(DAYS) - 1))
    upper = draw(st.integers(lower, len(DAYS) - 1))
    shape = draw(st.sampled_from(["rows", "count", "distinct", "group"]))
    names = list(COLUMNS)
    if shape == "rows":
        columns = tuple(draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True)))
        order = draw(st.none() | st.sampled_from(names))
        limit = draw(st.none() | st.integers(0, 40))
    else:
        columns, order, limit = (draw(st.sampled_from(names)),), None, None
    return Query(lower, upper, draw(wheres), shape, columns, order, limit)


@pytest.fixture(scope="module")
def wood(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EssEnv, Path]]:
    root = tmp_path_factory.mktemp("query-diff")
    env = make_env(root)
    setup_woodworking(env)
    plain = root / "plain"
    plain.mkdir()
    for day in DAYS:
        src = WOODWORKING / f"purchase_{day}.gz"
        (plain / day).write_bytes(gzip.decompress(src.read_bytes()))
    yield env, plain


@contextlib.contextmanager
def environment(env: EssEnv) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(env.env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def norm(value: object) -> object:
    """Numbers compare as numbers (aq prints %.17g floats, Python repr), strings as text."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return float(value)
    text = str(value)
    try:
        return float(text)
    except ValueError:
        return text


def via_ess(env: EssEnv, query: Query) -> list[tuple[object, ...]]:
    from ess.query.engine import run_query
    from ess.workspace import Workspace

    out, err = io.BytesIO(), io.StringIO()
    with environment(env):
        run_query(Workspace.from_env(), query.essentia(), out=out, err=err)
    rows = list(csv.reader(io.StringIO(out.getvalue().decode())))
    if query.shape != "rows":
        rows = rows[1:]  # the title line of the COUNT forms
    return [tuple(norm(v) for v in row) for row in rows]


def via_aq_pp_and_duckdb(plain: Path, query: Query, tmp: Path) -> list[tuple[object, ...]]:
    files = [str(plain / d) for d in DAYS[query.lower : query.upper + 1]]
    argv = [str(BIN / "aq_pp"), "-f,+1,eok,qui", *files, "-d", *PURCHASE.split()]
    if query.where:
        argv += ["-filt", query.where]
    out = tmp / "rows.csv"
    subprocess.run([*argv, "-o", str(out)], check=True, capture_output=True)
    types = ", ".join(f"'{c}': '{t}'" for c, t in COLUMNS.items())
    con = duckdb.connect()
    con.execute(
        f"create table t as select *, row_number() over () rn from read_csv('{out}', "
        f"header=true, columns={{{types}}}, quote='\"', escape='\"')"
    )
    got = con.execute(query.duckdb()).fetchall()
    return [tuple(norm("" if v is None else v) for v in row) for row in got]


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(query=queries())
def test_same_answers_as_aq_pp_into_duckdb(
    wood: tuple[EssEnv, Path], tmp_path: Path, query: Query
) -> None:
    env, plain = wood
    expected = via_aq_pp_and_duckdb(plain, query, tmp_path)
    assert via_ess(env, query) == expected, query.essentia()

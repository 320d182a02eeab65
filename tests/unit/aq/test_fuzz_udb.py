"""Fuzz aq_udb through its command line over a small UDB of hostile values (a real local
cluster of one worker, one for the module): a documented exit code and one-line messages,
never a traceback. The rules themselves get many more cases without a cluster in
tests/unit/udb/test_query.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from ess.udb import spec
from ess.workspace import Workspace
from tests.unit.aq.fuzzing import (
    HOSTILE,
    Result,
    check_result,
    expressions,
    fuzz_settings,
    run_inprocess,
    run_pp,
    typed_expressions,
)
from tests.unit.udb.harness import Sandbox, cluster

pytestmark = pytest.mark.slow

COLUMNS = "s,pkey:k s:s i:i is:si l:l ls:sl f:f ip:ip"
NUMS = ["i", "si", "l", "sl", "f", "total"]
STRS = ["s", "ip", "k"]


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with cluster(tmp_path_factory.mktemp("udb-fuzz"), workers=1) as sandbox:
        with sandbox.inprocess(sandbox.root):
            ws = Workspace.from_env()
            spec.create_database(ws, "db", [])
            spec.create_target(ws, "table", "t", [COLUMNS])
            spec.create_target(ws, "vector", "v", ["s,pkey:k i,+add:i f,+max:f s,+last:s"])
            spec.create_target(ws, "var", "var", ["i:total"])
            rows = b"".join(
                b",".join([b"k%d" % (n % 7), value, value, value, value, value, value, value])
                + b"\n"
                for n, value in enumerate(HOSTILE)
            )
            table = ["s:k", "s:s", "i:i", "is:si", "l:l", "ls:sl", "f:f", "ip:ip", "-imp", "db:t"]
            vector = ["s:k", "s:s", "i:i", "X", "X", "X", "f:f", "X", "-imp", "db:v"]
            for spec_words in (table, vector):
                res = run_pp(["-f,eok", "-", "-d", *spec_words], rows)
                assert res.code == 0, res.err
        yield sandbox


def run_udb(box: Sandbox, argv: list[str]) -> Result:
    from ess.cli.aq_udb import main

    with box.inprocess(box.root):
        return run_inprocess(main, argv, b"")


@st.composite
def udb_commands(draw: st.DrawFn) -> list[str]:
    action = draw(st.sampled_from(["-exp", "-exp", "-cnt", "-scn", "-ord", "-inf"]))
    target = draw(st.sampled_from(["db:t", "db:t", "db:v", "db:var", "db:nope", "nodb:t"]))
    argv = [action, target]
    expr = st.one_of(typed_expressions(NUMS, STRS), expressions([*NUMS, *STRS]))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["-eval", "-filt", "-if", "-var", "-sort", "-top", "-lim"]))
        if kind == "-eval":
            argv += ["-eval", draw(st.sampled_from([*NUMS, *STRS, "var.total", "x"])), draw(expr)]
        elif kind == "-filt":
            argv += ["-filt", draw(expr)]
        elif kind == "-if":
            argv += ["-if", "-filt", draw(expr), "-goto", "next_key", "-endif"]
        elif kind == "-var":
            argv += ["-var", "total", draw(st.sampled_from(["0", "1e400", "x", "-1"]))]
        elif kind == "-sort":
            argv += ["-sort" + draw(st.sampled_from(["", ",dec"])),
                     draw(st.sampled_from([*NUMS, *STRS, "nope"]))]  # fmt: skip
        else:
            limit = draw(st.sampled_from(["0", "3", "-1", "x", "99999999999999999999"]))
            argv += [draw(st.sampled_from(["-top", "-lim_key", "-lim_rec"])), limit]
    if draw(st.booleans()):
        argv += ["-o" + draw(st.sampled_from(["", ",notitle", ",sep=|"])), "-"]
    return argv


def test_the_db_holds_hostile_values(box: Sandbox) -> None:
    """The fuzz below runs over data, not an empty table (runs first: file order)."""
    res = run_udb(box, ["-exp", "db:t", "-o,notitle", "-"])
    check_result(res, "aq_udb", [])
    assert res.code == 0 and len(res.out.splitlines()) >= 8


@fuzz_settings(300)
@given(udb_commands())
def test_fuzz_aq_udb_inprocess(box: Sandbox, argv: list[str]) -> None:
    res = run_udb(box, argv)
    event(f"exit {res.code}")  # --hypothesis-show-statistics: how many reach the workers
    check_result(res, "aq_udb", argv)

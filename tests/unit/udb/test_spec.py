"""udb.spec parsing and the `ess create/drop/use` definitions."""

from __future__ import annotations

from pathlib import Path

import pytest

from ess.errors import UdbError
from ess.udb import spec
from ess.workspace import Workspace

GOLDEN = Path(__file__).parents[3].parent / "shared/acceptance/golden"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / ".conf", tmp_path / ".ess", tmp_path / ".aws")


def test_create_writes_spec_equivalent_to_golden_udb_spec(ws: Workspace) -> None:
    spec.create_database(ws, "my_database", ["1"])
    spec.create_target(
        ws,
        "vector",
        "country_grouping",
        ["s,pkey:country s:full_name i,+add:integer_col f,+max:float_col s:extra_column"],
    )
    mine = spec.load(ws, "my_database")
    text = (GOLDEN / "pp_opt_20_udb_import_vector/udb.spec").read_text()
    golden = spec.parse_spec(text, name="my_database", source="udb.spec")
    assert mine.pkey == golden.pkey
    assert mine.targets == golden.targets
    assert mine.ports == (10010,)
    assert spec.parse_spec(mine.text(), name="x", source="x").targets == mine.targets


def test_ports_allocation_and_reset(ws: Workspace) -> None:
    spec.create_database(ws, "a", [])
    spec.create_database(ws, "b", ["2"])
    spec.create_database(ws, "c", ["10020"])
    assert spec.load(ws, "b").ports == (10011, 10012)
    assert spec.all_ports(ws) == [10010, 10011, 10012, 10020]
    spec.reset(ws)
    assert spec.list_databases(ws) == []
    spec.create_database(ws, "d", [])
    assert spec.load(ws, "d").ports == (10010,)


def test_names_case_insensitive_and_drop(ws: Workspace) -> None:
    spec.create_database(ws, "Wood", [])
    spec.create_target(ws, "table", "CJ", ["s,pkey:UserID", "i,tkey:ptime", "f:price"])
    spec.create_target(ws, "var", "var", ["i:total"])
    db = spec.load(ws, "wood")
    assert db.require("cj").tkey is not None and db.var is not None
    assert spec.drop(ws, "table", "cj") is True
    assert spec.drop(ws, "table", "cj") is False
    assert spec.drop(ws, "variable", None) is True
    spec.use(ws, "WOOD")
    assert spec.active(ws) == "Wood"
    assert spec.drop(ws, "database", "wood") is True
    with pytest.raises(UdbError, match="not defined"):
        spec.load(ws, "wood")


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["s,pkey:a", "s,+add:b"], "numeric"),
        (["s,pkey:a", "i,+zap:b"], "unknown column attribute"),
        (["s,pkey:a", "q:b"], "unknown column type"),
        (["i,pkey:a", "i:b"], "differs from the database's pkey"),
        (["s,pkey:a", "i:b", "f:B"], "duplicate column"),
    ],
)
def test_bad_definitions(ws: Workspace, words: list[str], message: str) -> None:
    spec.create_database(ws, "db", [])
    spec.create_target(ws, "table", "first", ["s,pkey:a", "i:x"])
    with pytest.raises(UdbError, match=message):
        spec.create_target(ws, "table", "t", words)


def test_no_active_database_and_no_pkey(ws: Workspace) -> None:
    with pytest.raises(UdbError, match="no active database"):
        spec.create_target(ws, "table", "t", ["s,pkey:a"])
    spec.create_database(ws, "db", [])
    with pytest.raises(UdbError, match="no column has the pkey"):
        spec.create_target(ws, "table", "t", ["s:a", "i:b"])

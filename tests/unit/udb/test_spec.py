"""udb.spec parsing and the `ess create/drop/use` definitions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ess.errors import UdbError
from ess.udb import spec
from ess.workspace import Workspace

BIN = Path(sys.executable).parent
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


def _ess_at_once(env: dict[str, str], root: Path, commands: list[list[str]]) -> None:
    """Start every `ess` command before waiting for any; each must exit 0 (bounded wait)."""
    procs = [
        subprocess.Popen(
            [str(BIN / "ess"), *argv],
            env=env,
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for argv in commands
    ]
    for argv, proc in zip(commands, procs, strict=True):
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"ess {' '.join(argv)}: {err.decode()}"


def test_concurrent_create_table_loses_no_definition(tmp_path: Path) -> None:
    """Eight `ess create table` processes at once, three trials: every table is defined
    (before the edits were one locked read-modify-write, 1-4 of 8 were lost per trial)."""
    from tests.conftest import sandbox_env

    env = sandbox_env(tmp_path)
    ws = Workspace(tmp_path / ".conf", tmp_path / ".ess", tmp_path / ".aws")
    _ess_at_once(env, tmp_path, [["create", "database", "db"]])
    for trial in range(3):
        names = [f"t{trial}_{i}" for i in range(8)]
        creates = [["create", "table", n, "s,pkey:k", f"i:v{i}"] for i, n in enumerate(names)]
        _ess_at_once(env, tmp_path, creates)
        defined = {t.name for t in spec.load(ws, "db").targets}
        assert set(names) <= defined, f"trial {trial}: lost {sorted(set(names) - defined)}"
    # databases created at once get distinct ports, and drops at once all happen
    _ess_at_once(env, tmp_path, [["create", "database", f"d{i}"] for i in range(6)])
    ports = [p for i in range(6) for p in spec.load(ws, f"d{i}").ports]
    assert len(set(ports)) == 6 and 10010 not in ports
    spec.use(ws, "db")
    _ess_at_once(env, tmp_path, [["drop", "table", f"t0_{i}"] for i in range(8)])
    left = {t.name for t in spec.load(ws, "db").targets}
    assert left == {f"t{t}_{i}" for t in (1, 2) for i in range(8)}

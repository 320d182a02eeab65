"""Staged imports (ess.udb.staging): which attempt of a file is committed, the checks before a
commit applies anything, and how staged batches are joined for it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pytest

from ess.errors import UdbError
from ess.udb import staging


def manifest(part: int, *, runner: str, complete: bool = True, rows: int = 10) -> dict[str, Any]:
    return {"part": part, "rows": rows, "workers": {"w1": [0]}, "complete": complete,
            "runner": runner}  # fmt: skip


def scheduler(*alive: str) -> Any:
    return SimpleNamespace(workers=dict.fromkeys(alive))


def test_the_attempt_of_a_live_worker_wins_over_the_one_of_a_dead_worker() -> None:
    s = scheduler("tls://b")
    staging.s_note(s, "r", 3, "old", manifest(0, runner="tls://a"))  # its worker died
    staging.s_note(s, "r", 3, "new", manifest(0, runner="tls://b"))  # the re-run
    chosen = staging.s_take(s, "r", 3)
    assert chosen is not None
    attempt, parts = chosen
    assert attempt == "new" and parts == [manifest(0, runner="tls://b")]
    staging.s_note(s, "r", 3, "late", manifest(0, runner="tls://b"))  # after the commit
    assert staging.s_take(s, "r", 3) is None  # nothing applied twice
    assert staging.s_take(s, "r", 4) is None  # a file that imported nothing


def test_a_complete_attempt_wins_then_the_one_with_most_parts_then_the_first() -> None:
    s = scheduler("tls://a", "tls://b")
    staging.s_note(s, "r", 0, "broken", manifest(0, runner="tls://a", complete=False))
    staging.s_note(s, "r", 0, "short", manifest(0, runner="tls://a"))
    staging.s_note(s, "r", 0, "full", manifest(0, runner="tls://b"))
    staging.s_note(s, "r", 0, "full", manifest(1, runner="tls://b"))
    staging.s_note(s, "r", 0, "twin", manifest(0, runner="tls://b"))
    staging.s_note(s, "r", 0, "twin", manifest(1, runner="tls://b"))
    chosen = staging.s_take(s, "r", 0)
    assert chosen is not None
    attempt, parts = chosen
    assert attempt == "full" and [p["part"] for p in parts] == [0, 1]
    assert [staging.s_part(s, "r", 5, "x") for _ in range(3)] == [0, 1, 2]
    staging.s_forget(s, "r")
    assert staging.s_part(s, "r", 5, "x") == 0


def test_taking_a_complete_attempt_reserves_its_stamps_in_the_same_call() -> None:
    s = scheduler("tls://a")
    staging.s_note(s, "r", 0, "one", manifest(0, runner="tls://a", rows=7))
    staging.s_note(s, "r", 0, "one", manifest(1, runner="tls://a", rows=5))
    staging.s_note(s, "r", 1, "bad", manifest(0, runner="tls://a", complete=False))
    taken = staging.s_take_stamped(s, "r", 0)
    assert taken is not None
    attempt, parts, base = taken
    assert attempt == "one" and [p["part"] for p in parts] == [0, 1] and base is not None
    assert s._ess_udb_stamp == base + 12 - 1  # the 12 rows' stamps are taken
    assert staging.s_take_stamped(s, "r", 1) == (
        "bad",
        [manifest(0, runner="tls://a", complete=False)],
        None,
    )
    assert s._ess_udb_stamp == base + 11  # an incomplete attempt reserves nothing
    assert staging.s_take_stamped(s, "r", 0) is None


def batch(pid: int, stamps: list[int], key: str = "a") -> dict[int, pa.Table]:
    n = len(stamps)
    return {pid: pa.table({"k": [key] * n, "__r": pa.array(stamps, pa.int64())})}


def test_commit_refuses_missing_batches_and_a_half_applied_commit(tmp_path: Path) -> None:
    meta = {"spec": "", "db": "d", "target": "t", "premerged": False}
    staging.write_batch(staging.batch_path(tmp_path, "r", 1, "at", 0, 0), batch(3, [0, 1]), meta)
    with pytest.raises(UdbError, match=r"1 staged batch\(es\) of file #1 are missing"):
        staging.check_files(tmp_path, "r", [(1, "at", [(0, 0, 100), (0, 1, 100)])], "w1")
    assert not (staging.file_dir(tmp_path, "r", 1) / staging.APPLYING).exists()
    paths = staging.check_files(tmp_path, "r", [(1, "at", [(0, 0, 100)])], "w1")
    assert paths is not None and len(paths) == 1  # the commit started: a second is refused
    with pytest.raises(UdbError, match="stopped while applying it"):
        staging.check_files(tmp_path, "r", [(1, "at", [(0, 0, 100)])], "w1")
    staging.committed(tmp_path, "r", [1])
    fdir = staging.file_dir(tmp_path, "r", 1)
    assert [p.name for p in fdir.iterdir()] == [staging.COMMITTED]  # the batches are gone
    # a retry of the commit (its answer was lost with the worker) is told it is done
    assert staging.check_files(tmp_path, "r", [(1, "at", [(0, 0, 100)])], "w1") is None


def test_consecutive_batches_of_a_target_are_joined_in_order_with_shifted_stamps(
    tmp_path: Path,
) -> None:
    t = {"spec": "", "db": "d", "target": "t", "premerged": True}
    v = {**t, "target": "v"}
    staged = [(batch(1, [0, 1]), t, 100), (batch(1, [2]) | batch(2, [3], "b"), t, 100),
              (batch(1, [4]), v, 100), (batch(2, [0]), t, 200)]  # fmt: skip
    paths = []
    for seq, (parts, meta, base) in enumerate(staged):
        path = staging.batch_path(tmp_path, "r", 0, "at", 0, seq)
        staging.write_batch(path, parts, meta)
        paths.append((path, base))
    got = list(staging.groups(paths))
    assert [(g[1]["target"], g[2]) for g in got] == [("t", False), ("v", True), ("t", True)]
    first = got[0][0]
    assert first[1].column("__r").to_pylist() == [100, 101, 102]  # batch order kept
    assert first[2].column("__r").to_pylist() == [103]
    assert got[2][0][2].column("__r").to_pylist() == [200]
    assert "__p" not in first[1].column_names
    small = list(staging.groups(paths[:2], max_rows=2))  # a group stays under max_rows
    assert [sum(t.num_rows for t in g[0].values()) for g in small] == [2, 2]


def test_a_staged_file_of_the_earlier_layout_still_loads(tmp_path: Path) -> None:
    """Files written before the partition sizes went into the metadata carry a column of
    partition numbers instead: a stream started before an upgrade still commits them."""
    import json

    import pyarrow.ipc as ipc

    meta = {"spec": "", "db": "d", "target": "t", "premerged": True}
    old = pa.table({"k": ["a", "b", "c"], "__r": pa.array([0, 1, 2], pa.int64()),
                    "__p": pa.array([1, 1, 4], pa.int32())})  # fmt: skip
    path = tmp_path / "old.arrow"
    old = old.replace_schema_metadata({"ess": json.dumps(meta)})
    with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, old.schema) as writer:
        writer.write_table(old)
    parts, got_meta = staging.load(path, 10)
    assert got_meta == meta
    assert {p: t.column("__r").to_pylist() for p, t in parts.items()} == {1: [10, 11], 4: [12]}
    assert all("__p" not in t.column_names for t in parts.values())
    new = tmp_path / "new.arrow"
    staging.write_batch(new, {4: parts[4], 1: parts[1]}, meta)
    again, again_meta = staging.load(new, 0)
    assert again_meta == meta and list(again) == [1, 4]
    assert {p: t.equals(parts[p]) for p, t in again.items()} == {1: True, 4: True}


def test_sweep_removes_only_old_runs(tmp_path: Path) -> None:
    old = tmp_path / staging.STAGING / "old"
    new = tmp_path / staging.STAGING / "new"
    old.mkdir(parents=True)
    new.mkdir()
    import os

    os.utime(old, (0, 0))
    staging.sweep(tmp_path)
    assert not old.exists() and new.exists()


def _maps_of(path: Path) -> list[str]:
    return [line for line in Path("/proc/self/maps").read_text().splitlines()
            if str(path) in line]  # fmt: skip


@pytest.mark.parametrize("long", [True, False])
def test_a_kept_key_does_not_hold_the_removed_staged_file(tmp_path: Path, long: bool) -> None:
    """Polars shares the data buffers of string views through gathers and concatenations: a
    key a merge keeps would keep the whole memory-mapped staged file (its disk space and
    pages) after the commit removed it, unless loading copies views with long strings out
    of the map. Inline strings only (no data buffer) are not copied and hold nothing."""
    import polars as pl

    last = "a key longer than twelve" if long else "inline"
    keys = pa.array([f"user{i}" for i in range(2000)] + [last], pa.string_view())
    table = pa.table({"k": keys, "__r": pa.array(range(len(keys)), pa.int64())})
    path = tmp_path / "f0" / "a" / "0000-00000000.arrow"
    staging.write_batch(path, {0: table}, {"target": "v"})
    parts, _ = staging.load(path, 0)
    frame = pl.from_arrow(parts[0])
    assert isinstance(frame, pl.DataFrame)
    kept = pl.concat([frame.select("k").head(0), frame.select("k").gather([1, 2000])],
                     rechunk=True)  # fmt: skip
    del parts, frame
    path.unlink()
    assert _maps_of(path) == []
    assert kept.get_column("k").to_list() == ["user1", keys[2000].as_py()]


def test_a_commit_joins_files_cut_on_views_and_on_large_strings(tmp_path: Path) -> None:
    """One file's key cut as string views (the C cut), the next as large_string (a key with
    a null): the group's merge gets one table per partition, in file order."""
    views = pa.table({"k": pa.array(["a", "b" * 20], pa.string_view()), "__r": [0, 1]})
    large = pa.table({"k": pa.array([None, "c"], pa.large_string()), "__r": [0, 1]})
    paths = []
    for i, table in enumerate((views, large)):
        path = tmp_path / f"{i}.arrow"
        staging.write_batch(path, {3: table}, {"target": "v", "premerged": False})
        paths.append((path, 10 * i))
    [(parts, _, _)] = list(staging.groups(paths))
    assert parts[3].column("k").to_pylist() == ["a", "b" * 20, None, "c"]
    assert parts[3].column("__r").to_pylist() == [0, 1, 10, 11]

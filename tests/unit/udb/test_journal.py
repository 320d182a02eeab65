"""A stream commit cut short on a worker (ess.udb.journal): the worker's next load rolls the
commit back, and the commit applied again gives exactly the state of one clean commit. The
"death" is a write that raises part-way through the commit, leaving the disk as a SIGKILL
there would (tests/integration/test_udb_faults.py kills real workers)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from ess.udb import journal, server, staging
from ess.udb.client import cutter
from ess.udb.merge import K
from ess.udb.snapshot import Store
from ess.udb.spec import parse_spec

SPEC = "@PKey:\n  S:k\n@Vector:agg\n  I,+add:n\n  F,+add:x\n@Table:log\n  S:k\n  I:n\n"
RUN = "run1"


def stage(root: Path, file: int, start: int, rows: int) -> list[tuple[int, int, int]]:
    """File `file`'s staged batches (one per target) as a stream's aq_pp leaves them."""
    spec = parse_spec(SPEC, name="db", source="db.spec")
    i = pl.int_range(start, start + rows, eager=True)
    batch = pl.DataFrame({"k": "u" + (i * 7919 % 211).cast(pl.String), "n": i % 7,
                          "x": (i % 13).cast(pl.Float64) / 3})  # fmt: skip
    out = []
    for seq, target in enumerate(("agg", "log")):
        cut, premerged = cutter(spec, target)
        frame = batch.select(["k", "n", "x"] if target == "agg" else ["k", "n"])
        path = staging.batch_path(root, RUN, file, "a1", 0, seq)
        meta = {"spec": SPEC, "db": "db", "target": target, "premerged": premerged}
        staging.write_batch(path, cut(frame, 0), meta)
        out.append((0, seq, 1_000_000 * (file + 1) + seq * rows))
    return out


def state(store: Store) -> dict[str, pl.DataFrame]:
    parts = store.db("db").parts.values()
    return {
        "agg": pl.concat([p.vectors["agg"] for p in parts]).sort(K),
        "log": pl.concat([p.tables["log"] for p in parts]).sort(K),
        "keys": pl.concat([p.keys for p in parts]).sort(K),
    }


def one_by_one(tmp_path: Path, files: int, rows: int) -> dict[str, pl.DataFrame]:
    """The state after committing `files` files of `rows` rows one after the other."""
    clean = Store(tmp_path / "clean")
    clean.ready = True
    for file in range(files):
        server.commit_staged(clean, RUN, file, "a1", stage(clean.root, file, file * rows, rows))
    return state(clean)


def first_committed(tmp_path: Path, rows: int) -> tuple[Store, dict[str, pl.DataFrame]]:
    """A worker's store with file 0 committed, and its state."""
    store = Store(tmp_path / "w")
    store.ready = True
    server.commit_staged(store, RUN, 0, "a1", stage(store.root, 0, 0, rows))
    return store, state(store)


def dying_writes(monkeypatch: pytest.MonkeyPatch, at: int) -> dict[str, int]:
    """Snapshot writes that raise at the `at`-th, as a worker killed there leaves the disk;
    the count of writes tried so far."""
    writes = {"n": 0}
    real_write = Store.write

    def dies_part_way(self: Store, *args: object, **kwargs: object) -> None:
        writes["n"] += 1
        if writes["n"] == at:
            raise KeyboardInterrupt("the worker dies here")
        real_write(self, *args, **kwargs)

    monkeypatch.setattr(Store, "write", dies_part_way)
    return writes


def loaded(root: Path) -> Store:
    store = Store(root)
    store.load()
    return store


def test_a_commit_cut_short_is_rolled_back_and_then_applied_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    want = one_by_one(tmp_path, 2, 500)
    store, after_first = first_committed(tmp_path, 500)
    batches = stage(store.root, 1, 500, 500)

    real_write = Store.write
    writes = dying_writes(monkeypatch, 9)  # some partitions of the vector already rewritten
    with pytest.raises(KeyboardInterrupt):
        server.commit_staged(store, RUN, 1, "a1", batches)
    monkeypatch.setattr(Store, "write", real_write)
    marker = staging.file_dir(store.root, RUN, 1) / journal.APPLYING
    assert marker.exists()
    assert writes["n"] == 9

    back = loaded(store.root)  # the worker starts again
    assert not marker.exists()
    for name, frame in state(back).items():
        assert frame.equals(after_first[name]), name
    back.ready = True
    server.commit_staged(back, RUN, 1, "a1", batches)  # the stream's next try
    for name, frame in state(back).items():
        assert frame.equals(want[name]), name
    for name, frame in state(loaded(store.root)).items():  # and so after a restart
        assert frame.equals(want[name]), name


def test_an_older_marker_is_left_and_refused(tmp_path: Path) -> None:
    """A marker without the journal's header (written by an older version, whose writes were
    not journaled) is not rolled back: its commit is refused as before."""
    store = Store(tmp_path / "w")
    store.ready = True
    batches = stage(store.root, 0, 0, 50)
    marker = staging.file_dir(store.root, RUN, 0) / journal.APPLYING
    marker.write_text("12345")
    back = loaded(store.root)
    assert marker.exists()
    back.ready = True
    with pytest.raises(Exception, match="stopped while applying it"):
        server.commit_staged(back, RUN, 0, "a1", batches)


def test_a_commit_tried_again_after_it_was_applied_is_applied_once(tmp_path: Path) -> None:
    """The worker applied the file, then died before its answer reached the master, which
    tries the commit again once the worker is back: that try finds the commit's record and
    applies nothing (before, it failed the file: "staged batches ... are missing")."""
    clean = Store(tmp_path / "clean")
    clean.ready = True
    server.commit_staged(clean, RUN, 0, "a1", stage(clean.root, 0, 0, 300))
    want = state(clean)
    store = Store(tmp_path / "w")
    store.ready = True
    batches = stage(store.root, 0, 0, 300)
    assert server.commit_staged(store, RUN, 0, "a1", batches) > 0
    back = loaded(store.root)  # the worker starts again: nothing to roll back
    back.ready = True
    assert server.commit_staged(back, RUN, 0, "a1", batches) == 0
    for name, frame in state(loaded(store.root)).items():
        assert frame.equals(want[name]), name


def test_a_group_of_files_commits_as_one_and_equals_them_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream commits consecutive finished files together (one merge per worker): the
    result is bit for bit that of committing them one after the other; a group cut short is
    rolled back whole and applied once by the next try; a retry after it was applied applies
    nothing, and every file of the group is recorded as committed."""
    want = one_by_one(tmp_path, 3, 400)
    store, after_first = first_committed(tmp_path, 400)
    group = [(f, "a1", stage(store.root, f, f * 400, 400)) for f in (1, 2)]

    real_write = Store.write
    dying_writes(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        server.commit_files(store, RUN, group)
    monkeypatch.setattr(Store, "write", real_write)
    back = loaded(store.root)
    for name, frame in state(back).items():
        assert frame.equals(after_first[name]), name
    back.ready = True
    assert server.commit_files(back, RUN, group) > 0
    for file in (1, 2):
        assert (staging.file_dir(store.root, RUN, file) / staging.COMMITTED).exists()
    again = loaded(store.root)
    again.ready = True
    assert server.commit_files(again, RUN, group) == 0
    for name, frame in state(loaded(store.root)).items():
        assert frame.equals(want[name]), name

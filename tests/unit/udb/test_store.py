"""Worker-side store without Dask: imports, snapshots on disk, reload after a crash."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ess.udb import hashing, merge
from ess.udb.server import COMPACT_AFTER, Store, import_into
from ess.udb.spec import parse_spec

SPEC = parse_spec(
    "@PKey:\n s:k\n@Table:t\n i:n\n f:x\n@Vector:v\n i,+add:n\n f,+add:x\n@Var:\n i:total\n",
    name="db",
    source="test",
)


def batches(count: int, size: int) -> list[dict[int, object]]:
    out = []
    for b in range(count):
        i = pl.int_range(b * size, (b + 1) * size, eager=True)
        frame = pl.DataFrame(
            {"k": "k" + (i % 37).cast(pl.String), "n": i, "x": i / 7, merge.R: i + 1_000}
        )
        parts = frame.with_columns(hashing.partition_of(frame, ["k"], 4))
        out.append(
            {
                int(key[0]): v.drop("__p").to_arrow()
                for key, v in parts.partition_by("__p", as_dict=True).items()
            }
        )
    return out


def frames(store: Store) -> dict[str, pl.DataFrame]:
    state = store.db("db")
    out = {}
    for name in ("t", "v"):
        got = [
            p.tables.get(name) if name == "t" else p.vectors.get(name) for p in state.parts.values()
        ]
        stamps = [merge.K, merge.R] if name == "t" else [merge.K]
        out[name] = pl.concat([g for g in got if g is not None]).sort(stamps)
    out["keys"] = pl.concat([p.keys for p in state.parts.values()]).sort(merge.K)
    return out


def test_snapshots_reload_exactly_and_compact(tmp_path: Path) -> None:
    store = Store(tmp_path / "w1")
    store.ready = True
    for batch in batches(COMPACT_AFTER + 6, 50):
        import_into(store, SPEC.text(), "db", "t", batch)
        import_into(store, SPEC.text(), "db", "v", batch)
    before = frames(store)
    assert before["t"].height == (COMPACT_AFTER + 6) * 50
    assert before["keys"].height == 37
    reloaded = Store(tmp_path / "w1")  # a worker that crashed and came back
    reloaded.load()
    after = frames(reloaded)
    for name in before:
        assert after[name].equals(before[name]), name
    files = list((tmp_path / "w1").rglob("*.arrow"))
    # per partition: key set + table compacted once, vector rewritten as one base file
    assert len(files) < 4 * (2 * 8 + 1)
    assert not list((tmp_path / "w1").rglob("*.tmp"))


def test_snapshot_root_is_worker_local_off_the_masters_disk(tmp_path: Path) -> None:
    from ess.udb.udbd import snapshot_root
    from ess.workspace import Workspace

    ws = Workspace(work_dir=tmp_path / ".conf", cache_dir=tmp_path / ".ess", aws_dir=tmp_path)
    assert snapshot_root(ws, "c1") == str((tmp_path / ".ess" / "udb" / "c1").resolve())
    assert snapshot_root(ws, "c1", shared_filesystem=False) == "~/.ess-udb/c1"


def test_premerged_vector_import_same_with_and_without_the_key_shortcut(tmp_path: Path) -> None:
    """A vector holding every key takes one join per batch (server._merge_vector); the result,
    the key set and the snapshots equal the general path's (keys made by a table first)."""
    spec = parse_spec("@PKey:\n s:k\n@Table:t\n i:n\n@Vector:w\n i,+add:n\n i,+last:x\n",
                      name="db", source="test")  # fmt: skip
    text = spec.text()
    w = spec.require("w")

    def premerged(parts: dict[int, object]) -> dict[int, object]:
        out = {}
        for pid, table in parts.items():
            frame = pl.from_arrow(table)
            assert isinstance(frame, pl.DataFrame)
            frame = frame.with_columns(pl.col("x").cast(pl.Int64))
            out[pid] = merge.combine(frame, ["k"], w.columns).to_arrow()
        return out

    fast, general = Store(tmp_path / "a"), Store(tmp_path / "b")
    fast.ready = general.ready = True
    feed = batches(5, 40)
    import_into(general, text, "db", "t", feed[0])  # every key exists before the vector has rows
    for batch in feed:
        import_into(fast, text, "db", "w", premerged(batch), premerged=True)
        import_into(general, text, "db", "w", premerged(batch), premerged=True)

    def vector(store: Store) -> pl.DataFrame:
        parts = store.db("db").parts.values()
        return pl.concat([p.vectors["w"] for p in parts]).sort("k")

    def keys(store: Store) -> pl.DataFrame:
        return pl.concat([p.keys for p in store.db("db").parts.values()]).sort("k")

    got, want = vector(fast), vector(general)
    assert got.equals(want)  # values and key stamps (the first row's stamp either way)
    assert keys(fast).height == 37
    assert got.get_column(merge.K).equals(keys(fast).get_column(merge.K))
    reloaded = Store(tmp_path / "a")
    reloaded.load()
    assert vector(reloaded).equals(got) and keys(reloaded).equals(keys(fast))


def _files(root: Path, pattern: str) -> list[Path]:
    return sorted(root.rglob(pattern))


def test_damaged_segments_are_set_aside_and_the_rest_loads(tmp_path: Path) -> None:
    """A truncated table segment and a vector segment with one flipped byte: both are moved
    aside as *.damaged and named (database, table/vector, partition, file); every other
    partition reloads exactly; nothing raises."""
    store = Store(tmp_path / "w1")
    store.ready = True
    for batch in batches(3, 60):
        import_into(store, SPEC.text(), "db", "t", batch)
        import_into(store, SPEC.text(), "db", "v", batch)
    before = store.db("db").parts
    cut = _files(tmp_path, "p1/t_t.*.arrow")[0]
    flip = _files(tmp_path, "p2/v_v.*.arrow")[-1]
    with open(cut, "r+b") as f:
        f.truncate(100)
    data = bytearray(flip.read_bytes())
    data[len(data) // 2] ^= 0x40
    flip.write_bytes(bytes(data))

    half = cut.parent / (cut.name.split(".arrow")[0] + ".tmp")  # a write a crash cut short
    half.write_bytes(b"ARROW1")
    reloaded = Store(tmp_path / "w1")
    reloaded.load()
    assert reloaded.ready and not reloaded.error
    assert not half.exists()
    lost = sorted((d.partition, d.what) for d in reloaded.damaged)
    assert lost == [(1, "table t"), (2, "vector v")]
    assert all(Path(d.path).name.endswith(".arrow.damaged") for d in reloaded.damaged)
    assert "checksum mismatch" in reloaded.damaged[0].reason
    assert str(cut) + ".damaged" in {d.path for d in reloaded.damaged}
    assert not cut.exists() and Path(str(cut) + ".damaged").exists()
    parts = reloaded.db("db").parts
    for pid, part in before.items():
        if pid != 2:
            assert parts[pid].vectors["v"].equals(part.vectors["v"]), pid
        if pid != 1:
            assert parts[pid].tables["t"].equals(part.tables["t"]), pid
    # the other segments of partition 1's table (later imports) still load
    assert 0 < parts[1].tables["t"].height < before[1].tables["t"].height
    assert "v" not in parts[2].vectors
    again = Store(tmp_path / "w1")  # the next start finds the moved file, reason unknown
    again.load()
    assert again.damaged == [] and len(_files(tmp_path, "*.damaged")) == 2


def test_damaged_key_set_is_rebuilt_from_the_rows(tmp_path: Path) -> None:
    store = Store(tmp_path / "w1")
    store.ready = True
    for batch in batches(2, 60):
        import_into(store, SPEC.text(), "db", "t", batch)
    keys_before = {pid: p.keys for pid, p in store.db("db").parts.items()}
    first = _files(tmp_path, "p3/k_.*.arrow")[0]
    first.write_bytes(first.read_bytes()[:-10])
    reloaded = Store(tmp_path / "w1")
    reloaded.load()
    assert [(d.partition, d.what) for d in reloaded.damaged] == [(3, "key set")]
    assert reloaded.db("db").parts[3].keys_lost
    # the next import (which brings the definition) rebuilds and persists the key set
    import_into(reloaded, SPEC.text(), "db", "t", batches(3, 60)[2])
    part = reloaded.db("db").parts[3]
    assert not part.keys_lost
    old = keys_before[3].get_column(merge.K).to_list()
    assert part.keys.get_column(merge.K).to_list()[: len(old)] == old
    third = Store(tmp_path / "w1")
    third.load()
    assert third.db("db").parts[3].keys.equals(part.keys)


def test_snapshot_files_are_private(tmp_path: Path) -> None:
    store = Store(tmp_path / "udb" / "w1")
    store.ready = True
    import_into(store, SPEC.text(), "db", "t", batches(1, 30)[0])
    files = _files(tmp_path / "udb", "*.arrow")
    assert files and {f.stat().st_mode & 0o777 for f in files} == {0o600}
    dirs = [p for p in (tmp_path / "udb").rglob("*") if p.is_dir()] + [tmp_path / "udb"]
    assert {d.stat().st_mode & 0o777 for d in dirs} == {0o700}

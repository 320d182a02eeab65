"""The UDB on a real local cluster: 1 → 3 workers (same answers, redistribution), eight
concurrent importing processes, a worker crash, and bad input. One cluster for the module;
every daemon is killed by pid at the end.
"""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from ess.errors import UdbError
from ess.udb import moves, spec
from ess.udb.client import UdbSession
from ess.udb.imp import close_sessions
from ess.udb.query import run
from ess.workspace import Workspace
from tests.unit.udb.harness import BIN, Sandbox, cluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with cluster(tmp_path_factory.mktemp("udb-int"), workers=1) as sandbox:
        with sandbox.inprocess(sandbox.root):
            ws = Workspace.from_env()
            spec.create_database(ws, "db", [])
            spec.create_target(ws, "vector", "vec", ["s,pkey:k i,+add:n f,+add:x i,+max:hi s:last"])
            spec.create_target(ws, "table", "tab", ["s,pkey:k i,tkey:n f:x s:last"])
        yield sandbox


def rows(start: int, count: int) -> pl.DataFrame:
    i = pl.int_range(start, start + count, eager=True)
    return pl.DataFrame(
        {
            "k": "u" + (i * 7919 % 613).cast(pl.String),
            "n": i % 10,
            "x": (i % 17).cast(pl.Float64) / 10,
            "hi": i % 1000,
            "last": "r" + i.cast(pl.String),
        }
    )


def expected_vector(frame: pl.DataFrame) -> pl.DataFrame:
    """Single-process reference: per key in first-insertion order, x summed sequentially."""
    seq: dict[str, float] = {}
    for key, x in zip(frame["k"], frame["x"], strict=True):  # reference only, small input
        seq[key] = seq.get(key, 0.0) + x
    out = frame.group_by("k", maintain_order=True).agg(
        pl.col("n").sum(), pl.col("hi").max(), pl.col("last").last()
    )
    return out.with_columns(x=pl.Series([seq[k] for k in out["k"]]))


def export(box: Sandbox, argv: list[str], session: UdbSession | None = None) -> bytes:
    with box.inprocess(box.root):
        return run(Workspace.from_env(), argv, session=session)


def read_csv(data: bytes) -> pl.DataFrame:
    import io

    return pl.read_csv(io.BytesIO(data), schema_overrides={"k": pl.String, "last": pl.String})


def test_one_worker_then_three_same_answers(box: Sandbox) -> None:
    data = rows(0, 30_000)
    with box.inprocess(box.root):
        ws = Workspace.from_env()
        db = spec.load(ws, "db")
        with UdbSession(ws) as s:
            assert s.import_frames(db, "vec", [data.slice(0, 10_000), data.slice(10_000)]) == 30_000
            s.import_frames(db, "tab", [data], ddef=True)
    vec1 = export(box, ["-exp", "db:vec"])
    tab1 = export(box, ["-exp", "db:tab"])
    got = read_csv(vec1)
    want = expected_vector(data)
    assert got.select("k", "n", "hi", "last").equals(want.select("k", "n", "hi", "last"))
    assert got["x"].to_list() == pytest.approx(want["x"].to_list(), rel=0, abs=1e-9)
    assert read_csv(tab1).height == 30_000

    close_sessions()
    box.run("ess cluster create --add --number 2")
    with box.inprocess(box.root):
        ws = Workspace.from_env()
        with UdbSession(ws) as s, pytest.raises(UdbError, match="redistributed"):
            s.import_frames(spec.load(ws, "db"), "vec", [rows(0, 10)])
    started = box.run("ess udbd start").stdout.decode()
    assert "udbd-10010" in started and "already running" in started
    assert export(box, ["-exp", "db:vec"]) == vec1
    assert export(box, ["-exp", "db:tab"]) == tab1
    with box.inprocess(box.root):
        ws = Workspace.from_env()
        with UdbSession(ws) as s:
            held = s.each_worker(moves.w_inventory, "db")
            assert len(held) == 3 and all(parts.get("db") for parts in held.values())
            assert s.misplaced() == []


def test_eight_concurrent_importers_lose_nothing(box: Sandbox, tmp_path: Path) -> None:
    before = read_csv(export(box, ["-exp", "db:vec"]))
    count_before = export(box, ["-cnt", "db:tab"])
    files = []
    for p in range(8):
        path = tmp_path / f"part{p}.csv"
        rows(100_000 + p * 5_000, 5_000).write_csv(path, include_header=False)
        files.append(path)
    shm_before = set(glob.glob("/dev/shm/ess-udb-*"))
    procs = [
        subprocess.Popen(
            [
                str(BIN / "aq_pp"),
                "-f",
                str(f),
                "-d",
                "s:k",
                "i:n",
                "f:x",
                "i:hi",
                "s:last",
                "-imp",
                "db:vec",
                "-imp",
                "db:tab",
            ],
            env=box.env,
            cwd=box.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for f in files
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    # each importer removed its /dev/shm hand-over directory before exiting
    assert set(glob.glob("/dev/shm/ess-udb-*")) - shm_before == set()
    added = pl.concat([rows(100_000 + p * 5_000, 5_000) for p in range(8)])
    assert export(box, ["-cnt", "db:tab"]).splitlines()[2] == (
        f'"row",{int(count_before.splitlines()[2].split(b",")[1]) + 40_000}'.encode()
    )
    after = read_csv(export(box, ["-exp", "db:vec"]))
    totals = pl.concat([before.select("k", "n", "x"), added.select("k", "n", "x")])
    want = totals.group_by("k").agg(pl.col("n").sum(), pl.col("x").sum()).sort("k")
    got = after.select("k", "n", "x").sort("k")
    assert got["k"].to_list() == want["k"].to_list()
    assert got["n"].to_list() == want["n"].to_list()
    assert got["x"].to_list() == pytest.approx(want["x"].to_list(), abs=1e-6)


def test_stream_imports_from_inside_workers(box: Sandbox, tmp_path: Path) -> None:
    data = tmp_path / "parts"
    data.mkdir()
    for day in range(1, 5):
        rows(200_000 + day * 1_000, 1_000).write_csv(
            data / f"part_2014090{day}.csv", include_header=False
        )
    before = int(export(box, ["-cnt", "db:tab"]).splitlines()[2].split(b",")[1])
    box.run(f"ess select local && ess category add parts '{data}/part_*'")
    proc = box.run("ess stream parts '*' '*' 'aq_pp -f - -d s:k i:n f:x i:hi s:last -imp db:tab'")
    assert proc.stdout == b""
    after = int(export(box, ["-cnt", "db:tab"]).splitlines()[2].split(b",")[1])
    assert after == before + 4_000


def test_worker_crash_loses_no_committed_import(box: Sandbox) -> None:
    table = export(box, ["-exp", "db:tab"])
    vector = export(box, ["-exp", "db:vec"])
    close_sessions()
    victim = box.pids()["worker-2"]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{victim}").exists() and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(victim, os.WNOHANG)
        time.sleep(0.05)
    with box.inprocess(box.root):
        ws = Workspace.from_env()
        # without supervision the worker stays dead: the query names it, no partial answer
        with (
            UdbSession(ws, revive=False, timeout=5) as s,
            pytest.raises(UdbError, match=r"worker-2 \(partitions [0-9, ]+\)"),
        ):
            run(ws, ["-exp", "db:tab"], session=s)
    # the next ordinary command revives the worker, which reloads its snapshots
    assert export(box, ["-exp", "db:tab"]) == table
    assert export(box, ["-exp", "db:vec"]) == vector
    assert box.pids()["worker-2"] != victim


def test_memory_exhaustion_refuses_import_and_keeps_data(box: Sandbox) -> None:
    from ess.udb.server import DEFAULT_MARGIN_KB, UdbPlugin
    from ess.udb.udbd import snapshot_root

    before = export(box, ["-exp", "db:vec"])
    with box.inprocess(box.root):
        ws = Workspace.from_env()
        with UdbSession(ws) as s:
            root = snapshot_root(ws, s.conn.cluster_id)
            # a margin larger than the machine's memory: every import must be refused
            s.client.register_plugin(UdbPlugin(root, mem_margin_kb=1 << 40))
            try:
                with pytest.raises(UdbError, match=r"out of memory .* data already stored is kept"):
                    s.import_frames(spec.load(ws, "db"), "vec", [rows(0, 1_000)])
            finally:
                s.client.register_plugin(UdbPlugin(root, mem_margin_kb=DEFAULT_MARGIN_KB))
    assert export(box, ["-exp", "db:vec"]) == before


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("aq_pp -d s:k i:n -imp nodb:vec", "database 'nodb' is not defined"),
        ("aq_pp -d s:k i:n -imp db:nosuch", "no table or vector 'nosuch'"),
        ("aq_pp -d s:k s:n f:x i:hi s:last -imp db:vec", "does not match"),
        ("aq_pp -d s:k i:n -imp db:vec", "column 'x' of vec is missing"),
        ("aq_udb -exp db:nosuch", "no table or vector 'nosuch'"),
    ],
)
def test_bad_input_is_refused_and_nothing_changes(box: Sandbox, command: str, message: str) -> None:
    before = export(box, ["-cnt", "db:vec"])
    fields = command.split(" -imp")[0].count(":")  # one input field per -d column
    line = ",".join(["zz", *["1"] * (fields - 1)]) + "\n"
    proc = box.run(command, input=line.encode(), check=False)
    assert proc.returncode != 0
    assert message in proc.stderr.decode()
    assert export(box, ["-cnt", "db:vec"]) == before


def test_workers_are_seen_while_dask_refreshes_its_cache(box: Sandbox) -> None:
    """Dask refreshes the client's cached scheduler identity in the background with no worker
    list; the session's view of the workers must never come from that cache."""
    import threading

    with box.inprocess(box.root), UdbSession(Workspace.from_env()) as s:
        done = threading.Event()

        def refresh() -> None:
            while not done.is_set():
                s.client.sync(s.client._update_scheduler_info, n_workers=0)

        thread = threading.Thread(target=refresh)
        thread.start()
        try:
            seen = [len(s.addresses()) for _ in range(300)]
        finally:
            done.set()
            thread.join()
    assert set(seen) == {len(s.workers)}


def test_batches_before_a_bad_one_are_imported(box: Sandbox) -> None:
    """Batches are cut ahead of shipping (threads): a refused batch still leaves the ones
    read before it imported, in order, as when each was shipped as soon as it was read."""
    good = [
        rows(0, 6).with_columns(k=pl.lit("zq") + pl.int_range(0, 6).cast(pl.String), n=pl.lit(b))
        for b in range(1, 4)
    ]
    with box.inprocess(box.root):
        ws = Workspace.from_env()
        with UdbSession(ws) as s, pytest.raises(UdbError, match="column 'x' of vec is missing"):
            s.import_frames(spec.load(ws, "db"), "vec", [*good, good[0].drop("x")])
    got = read_csv(export(box, ["-exp", "db:vec"])).filter(pl.col("k").str.starts_with("zq"))
    assert got.get_column("k").to_list() == [f"zq{i}" for i in range(6)]
    assert got.get_column("n").to_list() == [1 + 2 + 3] * 6
    assert got.get_column("last").to_list() == good[2].get_column("last").to_list()


def test_var_vector_rules_del_key_and_seg(box: Sandbox, tmp_path: Path) -> None:
    from tests.unit.udb.harness import run_line

    with box.inprocess(tmp_path):
        for line in (
            "ess create database vdb",
            "ess create table t s,pkey:k i:n s:name",
            "ess create variable i:total s:label f:avg",
        ):
            run_line(line)
        Path("in.csv").write_text("a,1,x\nb,2,y\na,3,z\nc,4,w\n")
        Path("v.csv").write_text("7,abc,1.5\n")
        run_line("aq_pp -f in.csv -d s:k i:n s:name -imp vdb:t")
        assert run_line("aq_udb -exp vdb:var") == b'"total","label","avg"\n0,,0\n'
        run_line("aq_pp -f v.csv -d i:total s:label f:avg -imp vdb:var")
        assert run_line("aq_udb -exp vdb:var") == b'"total","label","avg"\n7,"abc",1.5\n'
        # a Var running across keys (no -bvar): rules run on the client in export order
        out = run_line("aq_udb -exp vdb:t -eval total 'total + n' -eval name 'ToS(total)'")
        assert out == b'"k","n","name"\n"a",1,"8"\n"a",3,"11"\n"b",2,"13"\n"c",4,"17"\n'
        assert run_line("aq_udb -exp vdb:var") == b'"total","label","avg"\n17,"abc",1.5\n'
        run_line("aq_udb -scn vdb:t -if -filt 'n == 3' -del_key -endif")
        assert run_line("aq_udb -exp vdb") == b'"pkey"\n"b"\n"c"\n'
        assert run_line("aq_udb -cnt vdb:t") == b'"field","count"\n"pkey",2\n"row",2\n'
        halves = run_line("aq_udb -exp,seg=1/2 vdb") + run_line("aq_udb -exp,seg=2/2 vdb")
        assert sorted(halves.splitlines()) == sorted([b'"pkey"', b'"pkey"', b'"b"', b'"c"'])
        run_line("aq_udb -clr vdb:var")
        assert run_line("aq_udb -inf vdb") == b'"pkey","var","t"\n2,1,2\n'


def test_snapshots_are_private_and_checksummed(box: Sandbox) -> None:
    """After the imports above: every snapshot file is 0600 in folders 0700 (they hold the
    users' rows) and carries its CRC-32 in its name, which matches its bytes."""
    from ess.udb.snapshot import SEG_RE, read_segment

    root = box.root / ".ess" / "udb"
    files = sorted(root.rglob("*.arrow"))
    assert len(files) > 32
    assert {f.stat().st_mode & 0o777 for f in files} == {0o600}
    folders = [d for d in root.rglob("*") if d.is_dir()]
    assert {d.stat().st_mode & 0o777 for d in folders} == {0o700}
    for f in files:
        m = SEG_RE.match(f.name)
        assert m is not None and m["crc"] is not None, f
        assert read_segment(f)[0] is not None, f

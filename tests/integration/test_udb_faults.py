"""The UDB's state under damage, through the commands a user types, on real 2-worker local
clusters: a truncated snapshot (cluster down, or a worker killed), `ess udbd stop` after the
cluster was stopped and started, and daemons that stop with the work directory.

Each test makes its own cluster in a temporary directory and kills exactly the pids of its
daemons at the end (harness.cluster), so none is left behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from ess.udb.snapshot import read_segment
from tests.unit.udb.harness import BIN, Sandbox, cluster, sandbox

pytestmark = pytest.mark.slow

ROWS = 30_000


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    with cluster(tmp_path / "c", workers=2) as sandbox_:
        sandbox_.run("ess create database db && ess create table tab s,pkey:k i:id i:v")
        yield sandbox_


def _load(box: Sandbox, start: int, count: int, batches: int = 3) -> None:
    """Import `count` rows with unique ids in `batches` imports (so each partition's table
    has several snapshot segments)."""
    step = count // batches
    for b in range(batches):
        i = pl.int_range(start + b * step, start + (b + 1) * step, eager=True)
        path = box.root / f"in{start}_{b}.csv"
        pl.DataFrame({"k": "u" + (i % 997).cast(pl.String), "id": i, "v": i % 7}).write_csv(
            path, include_header=False
        )
        box.run(f"aq_pp -f {path} -d s:k i:id i:v -imp db:tab")


def _ids(box: Sandbox) -> set[int]:
    out = box.run("aq_udb -exp db:tab -o,notitle - -c id").stdout
    return {int(line) for line in out.split()}


def _count(box: Sandbox) -> int:
    out = box.run("aq_udb -cnt db:tab").stdout.decode().splitlines()
    return int(out[-1].split(",")[1])


def _segments(box: Sandbox, pattern: str) -> list[Path]:
    return sorted((box.root / ".ess" / "udb").glob(f"*/*/db/p*/{pattern}"))


def _truncate_largest_table_segment(box: Sandbox) -> tuple[Path, set[int]]:
    victim = max(_segments(box, "t_tab.*.arrow"), key=lambda p: p.stat().st_size)
    frame, _ = read_segment(victim)
    assert frame is not None and frame.height > 0
    with open(victim, "r+b") as f:
        f.truncate(100)
    return victim, set(frame.get_column("id").to_list())


def _wait_gone(pids: list[int], seconds: float) -> float:
    """Seconds until none of `pids` is alive (zombies count as gone); fails after `seconds`."""
    start = time.monotonic()
    while any(_alive(p) for p in pids):
        assert time.monotonic() - start < seconds, f"still running: {pids}"
        time.sleep(0.2)
    return time.monotonic() - start


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _check_loss_named(box: Sandbox, victim: Path, start_err: bytes) -> None:
    moved = Path(str(victim) + ".damaged")
    assert moved.exists() and not victim.exists()
    assert str(moved).encode() in start_err  # 'ess udbd start' says it on stderr
    status = box.run("ess udbd status").stdout.decode()
    pid = victim.parent.name[1:]
    assert "is running" in status
    assert f"database db, table tab, partition {pid}: {moved}" in status, status
    assert victim.parent.parent.parent.name in status  # the worker holding it


def test_truncated_snapshot_while_the_cluster_is_down(box: Sandbox) -> None:
    _load(box, 0, ROWS)
    before = _ids(box)
    assert len(before) == ROWS
    box.run("ess cluster stop")
    victim, lost = _truncate_largest_table_segment(box)
    box.run("ess cluster start")
    started = box.run("ess udbd start")
    _check_loss_named(box, victim, started.stderr)
    assert _ids(box) == before - lost  # only that segment's rows are missing
    assert _count(box) == ROWS - len(lost)
    _load(box, ROWS, 3_000, batches=1)  # imports work again, into every partition
    assert _count(box) == ROWS - len(lost) + 3_000


def test_truncated_snapshot_of_a_killed_worker(box: Sandbox) -> None:
    _load(box, 0, ROWS)
    before = _ids(box)
    victim, lost = _truncate_largest_table_segment(box)
    worker = victim.parents[2].name
    pid = box.pids()[worker]
    os.kill(pid, signal.SIGKILL)
    _wait_gone([pid], 10)
    # the next command revives the worker, which reloads what is intact
    assert _count(box) == ROWS - len(lost)
    _check_loss_named(box, victim, box.run("ess udbd start").stderr)
    assert _ids(box) == before - lost
    stop = box.run("ess udbd stop")  # a healthy cluster again: stop clears everything
    assert b"stopped" in stop.stdout
    assert _segments(box, "*") == []


def test_worker_killed_during_an_import(box: Sandbox) -> None:
    """A worker SIGKILLed while an import ships batches to it, with one of its snapshots
    truncated: the import ends within seconds (it waited the 600 s task timeout before),
    `ess udbd start` names the loss, and every earlier row outside that segment is there."""
    _load(box, 0, ROWS)
    before = _ids(box)
    victim, lost = _truncate_largest_table_segment(box)
    worker = victim.parents[2].name
    big = box.root / "big.csv"
    i = pl.int_range(1_000_000, 3_000_000, eager=True)
    pl.DataFrame({"k": "u" + (i % 997).cast(pl.String), "id": i, "v": i % 7}).write_csv(
        big, include_header=False
    )
    store = victim.parents[2]
    files = len(list(store.rglob("*.arrow")))
    argv = [str(BIN / "aq_pp"), "-f", str(big), "-d", "s:k", "i:id", "i:v", "-imp", "db:tab"]
    proc = subprocess.Popen(argv, env=box.env, cwd=box.root, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(list(store.rglob("*.arrow"))) == files and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    pid = box.pids()[worker]
    os.kill(pid, signal.SIGKILL)
    start = time.monotonic()
    _, err = proc.communicate(timeout=90)
    print(f"import ended {time.monotonic() - start:.1f} s after the kill, exit {proc.returncode}")
    if proc.returncode:  # the kill came while its tasks ran (else it had just finished)
        assert b"stopped while running its part of this UDB operation" in err, err
        assert b"Traceback" not in err
    _check_loss_named(box, victim, box.run("ess udbd start").stderr)
    after = _ids(box)
    assert {i for i in after if i < 1_000_000} == before - lost


#: trials of the stream kill test (ESS_UDB_KILL_TRIALS=10 for the full check)
KILL_TRIALS = int(os.environ.get("ESS_UDB_KILL_TRIALS", "3"))
STREAM_FILES, STREAM_ROWS = 60, 2_000


def test_worker_killed_during_a_stream_import(box: Sandbox, tmp_path: Path) -> None:
    """A worker SIGKILLed while `ess stream ... aq_pp -imp` runs (its files are re-run on the
    other worker, its staged batches wait for it to come back): every row imported exactly
    once, the vector's +add totals exact, the stream succeeds within a bound."""
    parts = tmp_path / "parts"
    parts.mkdir()
    for f in range(STREAM_FILES):
        i = pl.int_range(f * STREAM_ROWS, (f + 1) * STREAM_ROWS, eager=True)
        pl.DataFrame({"k": "u" + (i % 997).cast(pl.String), "id": i, "v": i % 5}).write_csv(
            parts / f"p_{f:03d}.csv", include_header=False
        )
    box.run(f"ess create vector vec s,pkey:k i,+add:v && ess select local && "
            f"ess category add parts '{parts}/p_*'")  # fmt: skip
    total = STREAM_FILES * STREAM_ROWS
    i = pl.int_range(0, total, eager=True)
    want = (
        pl.DataFrame({"k": "u" + (i % 997).cast(pl.String), "v": i % 5})
        .group_by("k")
        .agg(pl.col("v").sum())
    )
    command = "aq_pp -f - -d s:k i:id i:v -imp db:tab -imp db:vec"
    for trial in range(KILL_TRIALS):
        box.run("aq_udb -clr db")
        proc = subprocess.Popen(
            ["bash", "-c", f"ess stream parts '*' '*' '{command}'"],
            env=box.env, cwd=box.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        staging = box.root / ".ess" / "udb"
        deadline = time.monotonic() + 120
        # busy: batches staged (or applied, were imports not staged)
        while not list(staging.glob("*/*/.staging/*/f*/*/*.arrow")) and not _segments(
            box, "t_tab.*.arrow"
        ):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5 * trial)  # later and later in the run
        victim = box.pids()["worker-2"]
        os.kill(victim, signal.SIGKILL)
        start = time.monotonic()
        _, err = proc.communicate(timeout=600)
        print(f"trial {trial}: stream ended {time.monotonic() - start:.1f} s after the kill, "
              f"exit {proc.returncode}")  # fmt: skip
        assert proc.returncode == 0, err.decode()[-3000:]
        assert b"Traceback" not in err
        assert sorted(_ids(box)) == list(range(total))  # each row once: none lost or doubled
        assert _count(box) == total
        got = pl.read_csv(box.run("aq_udb -exp db:vec").stdout, schema_overrides={"k": pl.String})
        assert got.sort("k").equals(want.sort("k").select(got.columns)), trial


def test_worker_killed_during_a_direct_import_is_all_or_nothing(box: Sandbox) -> None:
    """A worker SIGKILLed while a direct `aq_pp -imp` stages its batches (ESS_UDB_KILL_TRIALS
    trials, at different moments): the command ends within 60 s, and its rows are in the
    database exactly once, all of them (the worker came back in time) or none (exit non-zero,
    the worker named) - never part of the import."""
    _load(box, 0, 3_000, batches=1)
    before = _ids(box)
    rows = 400_000
    for trial in range(KILL_TRIALS):
        start_id = 1_000_000 * (trial + 1)
        path = box.root / f"direct{trial}.csv"
        i = pl.int_range(start_id, start_id + rows, eager=True)
        pl.DataFrame({"k": "u" + (i % 997).cast(pl.String), "id": i, "v": i % 7}).write_csv(
            path, include_header=False
        )
        argv = [str(BIN / "aq_pp"), "-f", str(path), "-d", "s:k", "i:id", "i:v", "-imp", "db:tab"]
        proc = subprocess.Popen(argv, env=box.env, cwd=box.root, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        staging = box.root / ".ess" / "udb"
        while not list(staging.glob("*/*/.staging/*/f*/*/*.arrow")) and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.3 * trial)
        os.kill(box.pids()["worker-2"], signal.SIGKILL)
        start = time.monotonic()
        _, err = proc.communicate(timeout=90)
        took = time.monotonic() - start
        print(f"trial {trial}: import ended {took:.1f} s after the kill, exit {proc.returncode}")
        assert took < 60
        assert b"Traceback" not in err
        ids = _ids(box)
        assert {x for x in ids if x < start_id} == before  # what was there is intact
        new = {x for x in ids if x >= start_id}
        if proc.returncode == 0:
            assert new == set(range(start_id, start_id + rows))
            before |= new
        else:
            assert b"worker-2" in err, err
            assert new == set()
        assert _count(box) == len(before)


def test_stop_after_cluster_stop_start_clears_the_snapshots(box: Sandbox) -> None:
    _load(box, 0, 3_000, batches=1)
    box.run("ess cluster stop && ess cluster start")
    assert _segments(box, "*.arrow")  # on disk, not loaded (the UDB is not registered)
    proc = box.run("ess udbd stop")
    assert proc.stdout.decode().splitlines()[-1].endswith("udbd-10010 stopped.")
    assert _segments(box, "*.arrow") == []
    box.run("ess udbd start")
    assert _count(box) == 0  # nothing came back


def test_udbd_stop_stops_the_cluster_udbd_start_created(tmp_path: Path) -> None:
    box = sandbox(tmp_path / "s")
    try:
        box.run("ess create database db && ess udbd start")
        pids = list(box.pids().values())
        assert len(pids) >= 2 and all(_alive(p) for p in pids)
        box.run("ess udbd restart")  # keeps the cluster
        assert box.pids() and all(_alive(p) for p in pids)
        box.run("ess udbd stop")
        _wait_gone(pids, 30)
        assert b"not running" in box.run("ess udbd status").stdout
    finally:
        _kill(list(box.pids().values()))


def test_daemons_exit_when_their_work_dir_is_deleted(tmp_path: Path) -> None:
    box = sandbox(tmp_path / "s")
    try:
        box.run("ess create database db && ess udbd start")
        saved = dict(box.pids())
        pids = _processes_of(box.work_dir)  # the daemons and whatever they started
        assert set(saved.values()) <= set(pids)
        shutil.rmtree(box.work_dir)
        seconds = _wait_gone(pids, 60)
        print(f"daemons gone {seconds:.1f} s after the work dir was deleted")
    finally:
        _kill(list(saved.values()) if "saved" in locals() else [])
        _kill(pids if "pids" in locals() else [])
        _kill(list(box.pids().values()))


def _processes_of(folder: Path) -> list[int]:
    """Pids whose command line names `folder`."""
    out = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and str(folder).encode() in (proc / "cmdline").read_bytes():
                out.append(int(proc.name))
    return out


def _kill(pids: list[int]) -> None:
    """SIGKILL the daemons among `pids` still running (checked by command line: a pid of a
    daemon already gone may belong to another process by now)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            if b"\0ess." in Path(f"/proc/{pid}/cmdline").read_bytes():  # -m ess.<module>
                os.kill(pid, signal.SIGKILL)

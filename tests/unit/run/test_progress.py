"""Run records (ess.run.progress): what ess ui's work page reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ess.run import progress
from ess.run.progress import RunRecorder, read_runs, runs_dir
from ess.workspace import Workspace


def _ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / ".conf", tmp_path / ".ess", tmp_path / ".aws")


def _stored(ws: Workspace) -> dict:  # type: ignore[type-arg]
    (path,) = runs_dir(ws).glob("*.json")
    return json.loads(path.read_bytes())  # type: ignore[no-any-return]


def test_a_run_is_recorded_privately_file_by_file(tmp_path: Path) -> None:
    ws = _ws(tmp_path)
    rec = RunRecorder.start(ws, kind="stream", command="wc -l", labels=["a", "b", "c"],
                            sizes=[10, 20, 30], detail="cat * *")  # fmt: skip
    (path,) = runs_dir(ws).glob("*.json")
    assert path.stat().st_mode & 0o777 == 0o600
    assert runs_dir(ws).stat().st_mode & 0o077 == 0
    first = _stored(ws)
    assert first["state"] == "running" and first["total"] == 3 and first["bytes_total"] == 60
    assert [f["state"] for f in first["files"]] == ["pending"] * 3
    rec.completed(2)
    rec.file_done(0, ok=True, node="worker-1")
    rec.file_done(1, ok=False, node="worker-2", returncode=3, stderr=b"x" * 5000 + b"boom\n")
    rec.file_done(2, ok=True, node="worker-1")
    rec.finish(False)
    last = _stored(ws)
    assert last["state"] == "failed"
    assert (last["done"], last["failed"], last["completed"], last["bytes_done"]) == (2, 1, 3, 60)
    bad = last["files"][1]
    assert bad["error"] == "exit status 3" and bad["node"] == "worker-2"
    assert bad["stderr"].endswith("boom\n") and len(bad["stderr"]) == progress.STDERR_TAIL
    assert not list(runs_dir(ws).glob(".*.tmp"))


def test_writes_are_throttled_but_the_end_is_always_written(tmp_path: Path) -> None:
    ws = _ws(tmp_path)
    labels = [f"f{i}" for i in range(1000)]
    rec = RunRecorder.start(ws, kind="stream", command="cat", labels=labels)
    (path,) = runs_dir(ws).glob("*.json")
    writes, inode = 0, path.stat().st_ino
    for i in range(1000):
        rec.file_done(i, ok=True)
        now = path.stat().st_ino  # every write renames a new file over the record
        writes, inode = writes + (now != inode), now
    assert writes <= 1  # 1000 files in well under MIN_INTERVAL: one write at most
    rec.finish(True)
    assert _stored(ws)["state"] == "done" and _stored(ws)["done"] == 1000


def test_a_run_stopped_early_is_interrupted_and_a_dead_writer_too(tmp_path: Path) -> None:
    ws = _ws(tmp_path)
    rec = RunRecorder.start(ws, kind="exec", command="true", labels=["master", "n2"])
    rec.file_done(0, ok=True)
    rec.finish(False)
    assert read_runs(ws)[0]["state"] == "interrupted"
    # a running record whose process is gone (killed) reads as interrupted
    code = (
        "from pathlib import Path; from ess.workspace import Workspace; "
        "from ess.run.progress import RunRecorder; "
        f"RunRecorder.start(Workspace(Path({str(ws.work_dir)!r}), Path('.'), Path('.')), "
        "kind='stream', command='cat', labels=['x'])"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    states = sorted(r["state"] for r in read_runs(ws))
    assert states == ["interrupted", "interrupted"]


def test_only_the_newest_records_are_kept(tmp_path: Path) -> None:
    ws = _ws(tmp_path)
    runs_dir(ws).mkdir(parents=True)
    for i in range(progress.KEEP + 5):
        (runs_dir(ws) / f"20000101-0000{i:02d}-x.json").write_text("{}")
    RunRecorder.start(ws, kind="exec", command="true", labels=[])
    kept = sorted(p.name for p in runs_dir(ws).glob("*.json"))
    assert len(kept) == progress.KEEP
    assert "20000101-000000-x.json" not in kept
    assert os.path.exists(runs_dir(ws))


def test_runs_read_newest_first_even_within_one_second(tmp_path: Path) -> None:
    ws = _ws(tmp_path)
    for name in ("first", "second", "third"):
        RunRecorder.start(ws, kind="exec", command=name, labels=[]).finish(True)
    assert [r["command"] for r in read_runs(ws)] == ["third", "second", "first"]

"""Daemons by pid file: a pid is only ours while its command line carries our marker."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from ess.engine import daemon


def _spec(tmp_path: Path, name: str = "d") -> daemon.DaemonSpec:
    marker = f"{tmp_path}/{name}"
    code = "import time; print('up', flush=True); time.sleep(60)"
    return daemon.DaemonSpec(
        name=name,
        argv=(sys.executable, "-c", code, marker),
        pid_file=tmp_path / f"{name}.pid",
        log_file=tmp_path / f"{name}.log",
        marker=marker,
    )


def _wait_until(cond: object, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_start_outlives_and_stop_kills(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    pid = daemon.start(spec)
    try:
        assert _wait_until(lambda: daemon.running_pid(spec) == pid)
        assert _wait_until(lambda: "up" in spec.log_file.read_text())
        assert daemon.stop(spec) == pid
        assert not daemon.alive(pid)
        assert not spec.pid_file.exists()
        assert daemon.running_pid(spec) is None
    finally:
        daemon.kill_and_wait(pid, spec.marker, timeout=1)


def test_stale_pid_file_pointing_at_a_stranger_is_ignored(tmp_path: Path) -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        spec = _spec(tmp_path)
        spec.pid_file.write_text(f"{stranger.pid}\n")
        assert daemon.running_pid(spec) is None
        assert daemon.stop(spec) is None
        assert stranger.poll() is None  # never signalled
    finally:
        stranger.kill()
        stranger.wait()


def test_garbage_pid_file(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    spec.pid_file.write_text("not a pid")
    assert daemon.running_pid(spec) is None

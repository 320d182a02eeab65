"""ess.engine.watchdog: a process exits once its pid file is gone or names another process,
and is left alone when it was never started through a pid file."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = """
import sys, time
from pathlib import Path
from ess.engine.watchdog import watch_pid_file
watch_pid_file(Path(sys.argv[1]), interval=0.2, arm_within=float(sys.argv[2]))
time.sleep(60)
"""


def _start(pid_file: Path, arm_within: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(pid_file), str(arm_within)])


def _exits_within(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


@pytest.mark.parametrize("change", ["delete", "other pid"])
def test_exits_when_the_pid_file_goes_or_changes(tmp_path: Path, change: str) -> None:
    pid_file = tmp_path / "worker-1.pid"
    proc = _start(pid_file, 30)
    try:
        pid_file.write_text(f"{proc.pid}\n")
        assert not _exits_within(proc, 1.5)  # armed, file in place: keeps running
        if change == "delete":
            pid_file.unlink()
        else:
            pid_file.write_text("1\n")
        start = time.monotonic()
        assert _exits_within(proc, 10)
        assert time.monotonic() - start < 10
    finally:
        proc.kill()
        proc.wait()


def test_never_armed_without_its_pid_file(tmp_path: Path) -> None:
    proc = _start(tmp_path / "none.pid", 0.5)
    try:
        assert not _exits_within(proc, 2.5)
    finally:
        proc.kill()
        proc.wait()

"""Cancelled runs: no pipeline of them starts, the running ones' process groups end."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from ess.engine import runs
from ess.run.pipeline import Pipeline, run_pipeline


def _gone(proc: subprocess.Popen[bytes], within: float) -> bool:
    try:
        proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        return False
    return True


def test_cancel_ends_the_whole_process_group() -> None:
    # bash and its child sleep share the group; the child ignores nothing, bash waits on it
    proc = subprocess.Popen(["bash", "-c", "sleep 30; true"], process_group=0)
    runs.track("run-a", proc.pid)
    assert runs.cancel("run-a") == 1
    assert _gone(proc, 5)
    assert runs.is_cancelled("run-a")
    assert not runs.is_cancelled("run-b")


def test_a_group_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    ready = tmp_path / "trapped"
    script = f"trap '' TERM; touch {ready}; sleep 30; true"
    proc = subprocess.Popen(["bash", "-c", script], process_group=0)
    deadline = time.monotonic() + 30
    while not ready.exists():  # the trap is set
        assert time.monotonic() < deadline
        time.sleep(0.05)
    runs.track("run-c", proc.pid)
    started = time.monotonic()
    runs.cancel("run-c")
    assert _gone(proc, runs.GRACE + 5)
    assert time.monotonic() - started >= runs.GRACE * 0.9


def test_a_pipeline_started_after_the_cancel_is_ended_at_once() -> None:
    runs.cancel("run-d")
    proc = subprocess.Popen(["sleep", "30"], process_group=0)
    assert runs.track("run-d", proc.pid) is False
    assert _gone(proc, 5)


def test_no_pipeline_of_a_cancelled_run_starts(tmp_path: Path) -> None:
    mark = tmp_path / "started"
    p = Pipeline(index=0, label="f", command=f"touch {mark}", run_id="run-e")
    runs.cancel("run-e")
    with pytest.raises(runs.RunCancelled, match="f: the command was cancelled"):
        run_pipeline(p)
    assert not mark.exists()
    other = Pipeline(index=0, label="g", command="echo ok", run_id="run-f")
    assert run_pipeline(other).stdout == b"ok\n"


def test_cancelled_ids_are_bounded() -> None:
    for i in range(runs.REMEMBERED + 10):
        runs.cancel(f"bulk-{i}")
    assert not runs.is_cancelled("bulk-0")
    assert runs.is_cancelled(f"bulk-{runs.REMEMBERED + 9}")

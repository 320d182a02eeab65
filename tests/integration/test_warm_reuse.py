"""Reused children of the warm service (ess.warm.reuse), through the fast launcher as a shell
runs it: a child that ended its command cleanly runs the next command with the same start-up
environment, with the same bytes and exit codes as a cold run; a failed command, another
environment, a killed launcher or ESS_WARM_REUSE=0 get a fresh child; a signal that arrives
after a command ended never reaches the next one."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ess.warm import service
from ess.warm.fastbin import bin_dir
from tests.integration.test_warm import (
    BIN,
    _children,
    _env,
    _gone,
    _run,
    _server_pid,
    _start_blocked,
    running_service,
)

pytestmark = pytest.mark.slow
ROWS = b"x\ny\n"
OK = ["-f", "-", "-d", "s:a", "-eval", "s:b", "a + a", "-o", "-"]
FAILS = ["-f", "-", "-d", "s:a", "-o", "/nonexistent/dir/out.csv"]


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[service.Service]:
    yield from running_service(tmp_path_factory.mktemp("reuse"))


def _aq(svc: service.Service, cwd: Path, argv: list[str], *, warm: bool = True,
        **extra: str) -> tuple[int, bytes, bytes]:  # fmt: skip
    """aq_pp through the fast launcher (or cold), with a tag of its own in the environment."""
    env = {**_env(svc, warm=warm), **extra}
    tool = f"{bin_dir(svc.socket)}/aq_pp" if warm else str(BIN / "aq_pp")
    return _run([tool, *argv], env=env, cwd=cwd, stdin=ROWS)  # type: ignore[no-any-return]


def _kids(svc: service.Service) -> set[int]:
    return set(_children(_server_pid(svc)))


def _settled(svc: service.Service, want: int, before: set[int]) -> set[int]:
    """The server's new children once there are `want` of them (reaping takes a moment)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        new = _kids(svc) - before
        if len(new) == want:
            return new
        time.sleep(0.05)
    raise AssertionError(f"expected {want} new children, have {_kids(svc) - before}")


def _one_waiting(svc: service.Service, cwd: Path) -> tuple[dict[str, str], tuple, set[int], int]:
    """(a tag of its own, the cold result of OK with it, the server's children before, the
    child that ran OK warm and now waits for the next command)."""
    tag = {"ESS_TEST_TAG": uuid.uuid4().hex}
    cold = _aq(svc, cwd, OK, warm=False, **tag)
    before = _kids(svc)
    _aq(svc, cwd, OK, **tag)
    (child,) = _settled(svc, 1, before)
    return tag, cold, before, child


def test_consecutive_commands_run_in_one_child(warm: service.Service, tmp_path: Path) -> None:
    tag = {"ESS_TEST_TAG": uuid.uuid4().hex}
    cold = _aq(warm, tmp_path, OK, warm=False, **tag)
    before = _kids(warm)
    assert _aq(warm, tmp_path, OK, **tag) == cold
    first = _settled(warm, 1, before)
    for _ in range(3):
        assert _aq(warm, tmp_path, OK, **tag) == cold
        assert _settled(warm, 1, before) == first, "the next command did not reuse the child"


def test_a_failed_command_ends_its_child(warm: service.Service, tmp_path: Path) -> None:
    tag = {"ESS_TEST_TAG": uuid.uuid4().hex}
    before = _kids(warm)
    _aq(warm, tmp_path, OK, **tag)
    (child,) = _settled(warm, 1, before)
    cold = _aq(warm, tmp_path, FAILS, warm=False, **tag)
    assert cold[0] != 0
    assert _aq(warm, tmp_path, FAILS, **tag) == cold  # run by the waiting child
    assert _gone(child), "a child whose command failed was kept"
    _aq(warm, tmp_path, OK, **tag)
    assert _settled(warm, 1, before) != {child}


def test_another_start_up_environment_gets_another_child(
    warm: service.Service, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex
    before = _kids(warm)
    one = _aq(warm, tmp_path, OK, ESS_TEST_TAG=tag, POLARS_MAX_THREADS="1")
    (first,) = _settled(warm, 1, before)
    two = _aq(warm, tmp_path, OK, ESS_TEST_TAG=tag, POLARS_MAX_THREADS="2")
    assert one == two and one[0] == 0
    assert first in _settled(warm, 2, before), "the first child went away"


def test_per_file_variables_do_not_stop_reuse(warm: service.Service, tmp_path: Path) -> None:
    tag = {"ESS_TEST_TAG": uuid.uuid4().hex}
    before = _kids(warm)
    _aq(warm, tmp_path, OK, ESS_FILE="a.csv", ESS_FILE_INDEX="0", **tag)
    first = _settled(warm, 1, before)
    _aq(warm, tmp_path, OK, ESS_FILE="b.csv", ESS_FILE_INDEX="1", **tag)
    assert _settled(warm, 1, before) == first


def test_a_late_signal_never_reaches_the_next_command(
    warm: service.Service, tmp_path: Path
) -> None:
    tag, cold, before, child = _one_waiting(warm, tmp_path)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # as a relay that came late
        os.kill(child, sig)
    time.sleep(0.3)
    assert not _gone(child, timeout=0.1), "a waiting child died of a late signal"
    assert _aq(warm, tmp_path, OK, **tag) == cold
    assert _settled(warm, 1, before) == {child}


def test_a_killed_launcher_kills_its_reused_child(warm: service.Service, tmp_path: Path) -> None:
    _run([f"{bin_dir(warm.socket)}/aq_pp", *OK], env=_env(warm, warm=True), cwd=tmp_path,
         stdin=ROWS)  # fmt: skip
    waiting = _kids(warm)
    proc, child = _start_blocked(warm, "fast launcher")  # the same start-up environment
    assert child in waiting, "not a reused child"
    proc.kill()
    proc.wait(10)
    assert _gone(child), f"pid {child} outlived its killed launcher"
    assert proc.stdin is not None
    proc.stdin.close()
    cold = _aq(warm, tmp_path, OK, warm=False)
    assert _aq(warm, tmp_path, OK) == cold


def test_reuse_off_forks_a_child_per_command(tmp_path_factory: pytest.TempPathFactory) -> None:
    gen = running_service(tmp_path_factory.mktemp("noreuse"), ESS_WARM_REUSE="0")
    svc = next(gen)
    try:
        cwd = tmp_path_factory.mktemp("cwd")
        for _ in range(2):
            assert _aq(svc, cwd, OK)[0] == 0
            deadline = time.monotonic() + 10
            while _kids(svc) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not _kids(svc), "a child outlived its command with reuse off"
    finally:
        next(gen, None)


def test_the_service_and_its_children_run_without_huge_pages(
    warm: service.Service, tmp_path: Path
) -> None:
    tag = {"ESS_TEST_TAG": uuid.uuid4().hex}
    before = _kids(warm)
    _aq(warm, tmp_path, OK, **tag)
    (child,) = _settled(warm, 1, before)
    for pid in (warm.pid, _server_pid(warm), child):  # ess.engine.hugepages, inherited
        assert "THP_enabled:\t0" in Path(f"/proc/{pid}/status").read_text(), pid


def test_a_waiting_child_that_dies_is_reaped_and_replaced(
    warm: service.Service, tmp_path: Path
) -> None:
    tag, cold, before, child = _one_waiting(warm, tmp_path)
    os.kill(child, signal.SIGKILL)  # e.g. the OOM killer, while no command of it runs
    assert _gone(child, timeout=5), "a dead waiting child was left a zombie"
    assert _aq(warm, tmp_path, OK, **tag) == cold
    assert _settled(warm, 1, before) != {child}

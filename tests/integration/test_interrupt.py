"""^C, SIGTERM and SIGKILL of `ess stream`/`ess exec` stop the run everywhere (docs/cluster.md).

A real local cluster of 2 workers; the commands record their start (file and time) in a marks
file and carry a marker in their command line, so the test sees what started after the signal
and which pipeline processes are left. Each trial: start the command, wait until it is busy,
signal it, then check the exit status, that nothing of the run started later than the bound,
that no pipeline process (nor a warm aq_pp child) is left, and that the next command runs at
once instead of queueing behind the old run.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BIN, EssEnv, make_env
from tests.integration.test_local_cluster import _kill_all, daemon_pids

pytestmark = pytest.mark.slow

FILES = 200  # 25 per batch: a batch runs 25 s, so a run that is not cancelled is obvious
MARKER = "ess-interrupt-test-marker"
BUSY_WAIT = 120.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EssEnv]:
    env = make_env(tmp_path_factory.mktemp("interrupt"))
    data = env.root / "data"
    data.mkdir()
    day = datetime.date(2014, 1, 1)
    for i in range(FILES):
        (data / f"ev_{day + datetime.timedelta(days=i):%Y%m%d}.txt").write_text(f"line {i}\n")
    env.ess("select", "local", check=True)
    env.ess("category", "add", "ev", f"{data}/ev_*", check=True)
    seen: dict[str, int] = {}
    try:
        env.ess("cluster", "create", "--number", "2", check=True, timeout=180)
        seen.update(daemon_pids(env))
        yield env
    finally:
        seen.update(daemon_pids(env))
        env.ess("cluster", "terminate", "-y", timeout=60)
        _kill_all(seen)


def _procs_with(needle: bytes) -> list[int]:
    """This user's processes whose command line contains ``needle``."""
    found = []
    uid = os.getuid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if entry.stat().st_uid != uid:
                continue
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                if needle in f.read():
                    found.append(int(entry.name))
    return found


def _children_of(parents: list[int]) -> list[int]:
    wanted = {str(p) for p in parents}
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry.name}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[1] in wanted:
                    found.append(int(entry.name))
    return found


def _warm_children(env: EssEnv) -> list[int]:
    """Commands the workers' warm services are running: children of their servers, except the
    reused children waiting for their next command (their stdin is /dev/null meanwhile)."""
    servers = _procs_with(f"{env.work_dir}/cluster/".encode() + b"worker")
    servers = [p for p in servers if p in set(_procs_with(b"ess.warm.server"))]
    return [pid for pid in _children_of(servers) if not _waiting(pid)]


def _waiting(pid: int) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/fd/0") == os.devnull
    except OSError:  # gone meanwhile
        return True


def _describe(pids: list[int]) -> str:
    rows = subprocess.run(
        ["ps", "-o", "pid,ppid,pgid,stat,etimes,args", "-p", ",".join(map(str, pids)) or "1"],
        capture_output=True,
        text=True,
    )
    return rows.stdout


def _starts(marks: Path) -> list[float]:
    return [float(line.split()[-1]) for line in marks.read_text().splitlines() if line.strip()]


@contextlib.contextmanager
def _running(
    env: EssEnv, argv: list[str], marks: Path, busy: int
) -> Iterator[subprocess.Popen[bytes]]:
    """The command, once busy; killed at the end whatever happened (the cluster then cancels
    its run), so a failed test leaves nothing running into the next."""
    proc = _start(env, argv, marks, busy)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def _start(env: EssEnv, argv: list[str], marks: Path, busy: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [str(BIN / "ess"), *argv],
        cwd=env.root,
        env=env.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # the signal goes to ess alone, not to this test
    )
    deadline = time.monotonic() + BUSY_WAIT
    while len(_starts(marks)) < busy:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the command never got busy: {proc.communicate()[1]!r}")
        time.sleep(0.1)
    time.sleep(1.0)  # the first pipelines are now running
    return proc


def _interrupt(
    env: EssEnv, proc: subprocess.Popen[bytes], sig: int, marks: Path, bound: float
) -> tuple[int, float, list[float]]:
    """Send ``sig``; return (exit status, seconds until quiet, starts later than ``bound``)."""
    assert _procs_with(MARKER.encode()), "no pipeline was running when the signal was sent"
    sent = time.time()
    os.kill(proc.pid, sig)
    code = proc.wait(timeout=30)
    quiet = None
    while time.time() - sent < bound + 5:
        if quiet is None and not _procs_with(MARKER.encode()) and not _warm_children(env):
            quiet = time.time() - sent
        if quiet is not None and time.time() - sent > bound + 2:
            break  # watched long enough for a late start to show up
        time.sleep(0.1)
    late = [t - sent for t in _starts(marks) if t > sent + bound]
    assert quiet is not None, f"pipelines left: {_describe(_procs_with(MARKER.encode()))}"
    return code, quiet, late


def _wait_quiet() -> None:
    deadline = time.monotonic() + 30
    while _procs_with(MARKER.encode()) and time.monotonic() < deadline:
        time.sleep(0.2)


def _next_stream_is_prompt(env: EssEnv) -> None:
    t = time.monotonic()
    r = env.ess("stream", "ev", "*", "*", "wc -c", "--limit", "3", check=True, timeout=120)
    assert r.stdout.split() == ["7", "7", "7"]
    assert time.monotonic() - t < 20, "the next stream waited behind the cancelled one"


STREAM_CMD = f'echo "$ESS_FILE $(date +%s.%N)" >> {{marks}}; sleep 1; true # {MARKER}'


@pytest.mark.parametrize(
    ("sig", "code", "bound"),
    [(signal.SIGINT, 130, 2.0), (signal.SIGTERM, 143, 2.0), (signal.SIGKILL, -9, 10.0)],
    ids=["SIGINT", "SIGTERM", "SIGKILL"],
)
def test_signal_cancels_the_stream(
    cluster: EssEnv, tmp_path: Path, sig: int, code: int, bound: float
) -> None:
    marks = tmp_path / "marks"
    marks.touch()
    argv = ["stream", "ev", "*", "*", STREAM_CMD.format(marks=marks)]
    with _running(cluster, argv, marks, 2) as proc:
        status, quiet, late = _interrupt(cluster, proc, sig, marks, bound)
    assert status == code
    assert late == [], f"{len(late)} pipelines started more than {bound} s after the signal"
    assert quiet <= bound, f"pipelines still running {quiet:.1f} s after the signal"
    assert len(_starts(marks)) < FILES // 2  # the run really was cut short
    _next_stream_is_prompt(cluster)


def test_sigint_of_exec_ends_its_command(cluster: EssEnv, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.touch()
    cmd = f'echo "x $(date +%s.%N)" >> {marks}; sleep 60; true # {MARKER}'
    with _running(cluster, ["exec", cmd], marks, 1) as proc:
        status, quiet, _ = _interrupt(cluster, proc, signal.SIGINT, marks, 2.0)
    assert status == 130
    assert quiet <= 2.0


def test_sigterm_ends_warm_aq_pp_children(cluster: EssEnv, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    # aq_pp waits on its input (a sleep) inside a child of the worker's warm service
    cmd = (
        f'echo "$ESS_FILE $(date +%s.%N)" >> {marks}; sleep 60 | aq_pp -f - -d s:a -o -; '
        f"true # {MARKER}"
    )
    argv = ["stream", "ev", "*", "*", cmd]
    for _attempt in range(3):
        _wait_quiet()  # an earlier attempt's pipelines are gone
        # a service whose sources changed since it started (the tree is being edited) runs
        # that command cold and restarts: warm it up, then try again
        cluster.ess("stream", "ev", "*", "*", "aq_pp -f - -d s:a -o -", "--limit", "4")
        marks.write_text("")
        with _running(cluster, argv, marks, 2) as proc:
            deadline = time.monotonic() + 15
            while not _warm_children(cluster) and time.monotonic() < deadline:
                time.sleep(0.2)
            if not _warm_children(cluster):
                continue
            status, quiet, late = _interrupt(cluster, proc, signal.SIGTERM, marks, 2.0)
            break
    else:
        pytest.fail("aq_pp never ran in a warm service")
    assert status == 143
    assert late == []
    assert quiet <= 2.0
    assert _warm_children(cluster) == []


def test_sigint_of_a_master_stream(cluster: EssEnv, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.touch()
    argv = ["stream", "--master", "--threads", "2", "ev", "*", "*", STREAM_CMD.format(marks=marks)]
    with _running(cluster, argv, marks, 2) as proc:
        status, quiet, late = _interrupt(cluster, proc, signal.SIGINT, marks, 2.0)
    assert status == 130
    assert late == []
    assert quiet <= 2.0

"""Warm start of aq_pp/aq_udb (ess.warm): the service started as ess starts it, the commands
run as a user types them. Warm and cold give the same bytes and exit codes; a killed command
leaves no process behind; a crashed server comes back; another user cannot use the socket."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ess.warm import service
from ess.warm.fastbin import bin_dir
from ess.warm.launcher import served
from tests.acceptance.test_golden_aq_pp import XFAIL as GOLDEN_XFAIL
from tests.acceptance.test_golden_aq_pp import cases as golden_cases
from tests.acceptance.test_golden_aq_pp import golden_env
from tests.acceptance.test_golden_udb import cases as udb_cases
from tests.unit.udb.harness import Sandbox, cluster

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def running_service(home: Path, **env: str) -> Iterator[service.Service]:
    """A service started as ess starts it, with `env` added to its own environment; stopped
    at the end, with nothing of it left behind."""
    os.chmod(home, 0o700)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        svc = service.start(socket=str(home / "s.sock"), log=home / "warm.log")
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.update({k: v})
    try:
        assert svc.ready(timeout=300), (home / "warm.log").read_text()
        yield svc
    finally:
        svc.stop()
    assert not _processes_mentioning(svc.socket), "the service left processes behind"
    assert not os.path.exists(svc.socket)
    assert not os.path.exists(bin_dir(svc.socket)), "the fast launchers outlived the service"


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[service.Service]:
    yield from running_service(tmp_path_factory.mktemp("warm"))


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in cmdline:
                found.append(int(entry.name))
    return found


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _server_pid(svc: service.Service) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        kids = _children(svc.pid)
        if kids and served(svc.socket) is not None:
            return kids[0]
        time.sleep(0.1)
    raise AssertionError("the warm server did not come up")


def _env(svc: service.Service, *, warm: bool) -> dict[str, str]:
    env = golden_env()
    env.pop("ESS_WARM_SOCKET", None)
    if warm:  # as a worker or a local stream sets it: the fast launchers first on the PATH
        env.update(ESS_WARM_SOCKET=svc.socket, ESS_WARM="1")
        env["PATH"] = f"{bin_dir(svc.socket)}{os.pathsep}{env['PATH']}"
    else:
        env["ESS_WARM"] = "0"
    return env


def _run(cmd: list[str], *, env: dict[str, str], cwd: Path, stdin: bytes = b"") -> tuple:
    proc = subprocess.run(cmd, cwd=cwd, env=env, input=stdin, capture_output=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("case", [c for c in golden_cases() if c.name not in GOLDEN_XFAIL],
                         ids=lambda c: c.name)  # fmt: skip
def test_golden_aq_pp_warm_equals_cold(case: Path, warm: service.Service, tmp_path: Path) -> None:
    """Every golden aq_pp case by bash, twice: stdout, stderr, exit code and the files it
    writes are byte-identical, and the warm run really ran in the service."""
    got = {}
    for mode in ("cold", "warm"):
        work = tmp_path / mode
        shutil.copytree(case, work)
        before = served(warm.socket)
        assert before is not None
        env = _env(warm, warm=mode == "warm")
        got[mode] = (_run(["bash", str(work / "cmd.sh")], env=env, cwd=work), _tree(work))
        after = served(warm.socket)
        assert after is not None
        assert (after > before) == (mode == "warm"), (mode, before, after)
    assert got["warm"] == got["cold"]
    assert got["cold"][0][0] == 0


BAD = [
    ["aq_pp", "-bogus"],
    ["aq_pp", "-f", "no-such-file.csv", "-d", "s:a"],
    ["aq_pp", "-f", "-", "-d", "s:a", "-eval", "i:x", "a +", "-o", "-"],
    ["aq_pp", "-f", "-", "-d", "i:a", "-o", "-"],  # 'x' is not an integer
    ["aq_pp", "-f", "-", "-d", "s:a", "-o", "/no/such/dir/out.csv"],
    ["aq_pp", "-f", "-", "-d", "s:a", "-o", "-", "-stat"],
    ["aq_pp", "-f,qui", "-", "-d", "i:a", "-o", "-"],
    ["aq_pp"],
    ["aq_udb", "-bogus"],
    ["aq_udb", "-exp"],
]


@pytest.mark.parametrize("argv", BAD, ids=lambda a: " ".join(a))
def test_errors_warm_equal_cold(argv: list[str], warm: service.Service, tmp_path: Path) -> None:
    """By the entry point and by the fast launcher, warm and cold (the fast launcher's cold
    path exec's the entry point): the same bytes and exit code all four ways."""
    data = b'x\ny,z\n"q\n'
    got = set()
    for where in (str(BIN), bin_dir(warm.socket)):
        cmd = [os.path.join(where, argv[0]), *argv[1:]]
        for hot in (False, True):
            got.add(_run(cmd, env=_env(warm, warm=hot), cwd=tmp_path, stdin=data))
    assert len(got) == 1, got


def test_the_fast_launchers_are_first_and_private(warm: service.Service, tmp_path: Path) -> None:
    """A command of a warm stream finds the service's launcher (in C: this machine has a
    compiler) before the entry point; the directory and launchers are the user's alone."""
    found = subprocess.run(["bash", "-c", "command -v aq_pp aq_udb"], env=_env(warm, warm=True),
                           capture_output=True, text=True, timeout=60).stdout.split()  # fmt: skip
    assert found == [os.path.join(bin_dir(warm.socket), t) for t in ("aq_pp", "aq_udb")]
    assert stat.S_IMODE(os.stat(bin_dir(warm.socket)).st_mode) == 0o700
    for tool in found:
        assert stat.S_IMODE(os.stat(tool).st_mode) == 0o700
        assert Path(tool).read_bytes()[:4] == b"\x7fELF"


def test_without_the_c_launcher_the_fast_launchers_are_python_scripts(tmp_path: Path) -> None:
    env = {**os.environ, "ESS_WARM_C": "0"}
    code = "import sys; from ess.warm.fastbin import install; print(install(sys.argv[1]))"
    made = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s.sock")], env=env,
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    for tool in ("aq_pp", "aq_udb"):
        first = (Path(made.stdout.strip()) / tool).read_text().splitlines()[0]
        assert first == f"#!{sys.executable} -S"


def _best(cmd: list[str], env: dict[str, str], runs: int = 7) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        best = min(best, time.perf_counter() - start)
    return best


def test_start_up_is_cheap(warm: service.Service) -> None:
    help_time = _best([str(BIN / "aq_pp"), "-h"], _env(warm, warm=True))
    assert help_time < 0.05, f"aq_pp -h took {help_time * 1000:.0f} ms"
    tiny = [str(BIN / "aq_pp"), "-f", "-", "-d", "s:a", "-o", "-"]
    hot = _best(tiny, _env(warm, warm=True))
    cold = _best(tiny, _env(warm, warm=False), runs=3)
    assert hot < cold / 3, (hot, cold)


#: the two ways in: the regular entry point (Python), a warm stream's fast launcher (C)
LAUNCHERS = ("entry point", "fast launcher")


def _launcher(svc: service.Service, which: str) -> str:
    return str(BIN / "aq_pp") if which == "entry point" else f"{bin_dir(svc.socket)}/aq_pp"


def _start_blocked(svc: service.Service, which: str = "entry point"
                   ) -> tuple[subprocess.Popen[bytes], int]:  # fmt: skip
    """A warm aq_pp waiting on its stdin, and the pid of the child running it (a new one or
    a reused one: the child of the server whose stdin is this command's pipe)."""
    server = _server_pid(svc)
    proc = subprocess.Popen(
        [_launcher(svc, which), "-f", "-", "-d", "s:a", "-o", "-"],
        env=_env(svc, warm=True), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None
    pipe = os.fstat(proc.stdin.fileno()).st_ino
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for child in _children(server):
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{child}/fd/0").st_ino == pipe:
                    return proc, child
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the command did not start in the service")


def _gone(pid: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            st = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if st == "Z":
            time.sleep(0.05)  # not reaped yet
            continue
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("which", LAUNCHERS)
def test_sigkill_of_the_launcher_kills_the_command(warm: service.Service, which: str) -> None:
    proc, child = _start_blocked(warm, which)
    proc.kill()
    proc.wait(10)
    assert _gone(child), f"pid {child} outlived its killed launcher"
    assert proc.stdin is not None
    proc.stdin.close()


def _drain(proc: subprocess.Popen[bytes]) -> bytes:
    """The stderr of an ended process (its pipes closed)."""
    assert proc.stdin is not None and proc.stderr is not None and proc.stdout is not None
    proc.stdin.close()
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    return err


@pytest.mark.parametrize("which", LAUNCHERS)
def test_sigint_reaches_the_command_as_cold(warm: service.Service, tmp_path: Path,
                                            which: str) -> None:  # fmt: skip
    proc, child = _start_blocked(warm, which)
    time.sleep(2)  # let the child reach its read (an interrupt during start-up ends differently)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)  # stdin stays open: an EOF would end the command before the signal
    err = _drain(proc)
    assert _gone(child)
    cold = subprocess.Popen(
        [str(BIN / "aq_pp"), "-f", "-", "-d", "s:a", "-o", "-"], env=_env(warm, warm=False),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(3)  # past its imports, into the read
    cold.send_signal(signal.SIGINT)
    cold.wait(timeout=30)
    cold_err = _drain(cold)
    assert proc.returncode == cold.returncode == -signal.SIGINT, (err, cold_err)
    assert err == cold_err == b""  # no traceback either way


def test_a_crashed_server_comes_back(warm: service.Service, tmp_path: Path) -> None:
    server = _server_pid(warm)
    os.kill(server, signal.SIGKILL)
    # meanwhile a command still runs (cold, or warm on the new server)
    cmd = [str(BIN / "aq_pp"), "-f", "-", "-d", "s:a", "-o", "-"]
    hot = _env(warm, warm=True)
    assert _run(cmd, env=hot, cwd=tmp_path, stdin=b"x\n")[:2] == (0, b'"a"\n"x"\n')
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        new = _children(warm.pid)
        if new and new[0] != server and served(warm.socket) is not None:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the server was not restarted")
    before = served(warm.socket)
    assert _run(cmd, env=hot, cwd=tmp_path, stdin=b"y\n")[:2] == (0, b'"a"\n"y"\n')
    assert served(warm.socket) == (before or 0) + 1


def test_the_socket_is_private(warm: service.Service) -> None:
    assert stat.S_IMODE(os.stat(warm.socket).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(warm.socket).st_mode)


KNOCK = """
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("refused", type(e).__name__); sys.exit(0)
p = b"aq_pp\\0/\\x001\\0aq_pp"
try:
    socket.send_fds(s, [b"ESW1" + struct.pack("!I", len(p))], [0, 1, 2])
    s.sendall(p)
    s.settimeout(20)
    print("answer", s.recv(5) or "closed")
except OSError as e:  # closed before we finished talking
    print("answer closed")
"""


@pytest.fixture
def other_user() -> Iterator[str]:
    if os.geteuid() != 0 or not shutil.which("useradd"):
        pytest.skip("needs root and useradd to create a second local user (mode 0600 and "
                    "SO_PEERCRED are still checked by test_the_socket_is_private)")  # fmt: skip
    name = f"esswarm{uuid.uuid4().hex[:6]}"
    subprocess.run(["useradd", "-M", "-r", "-s", "/bin/sh", name], check=True, timeout=60)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False, timeout=60)


def _as_user(name: str, *args: str) -> str:
    user = pwd.getpwnam(name)

    def drop() -> None:
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    out = subprocess.run(["/usr/bin/python3", "-I", "-c", KNOCK, *args], preexec_fn=drop,
                         capture_output=True, timeout=60, cwd="/")  # fmt: skip
    return out.stdout.decode() + out.stderr.decode()


def test_another_user_cannot_use_the_socket(
    warm: service.Service, other_user: str, tmp_path: Path
) -> None:
    assert _as_user(other_user, warm.socket).startswith("refused PermissionError")
    # with the file opened up by mistake, the server itself still turns the stranger away
    open_dir = Path(tempfile.mkdtemp(prefix="ess-warm-open-"))  # not under pytest's 0700 dir
    os.chmod(open_dir, 0o755)
    svc = service.start(socket=str(open_dir / "s.sock"))
    try:
        assert svc.ready(timeout=300)
        os.chmod(svc.socket, 0o666)
        before = served(svc.socket)
        assert _as_user(other_user, svc.socket) == "answer closed\n"  # no word
        assert served(svc.socket) == before
    finally:
        svc.stop()
        shutil.rmtree(open_dir, ignore_errors=True)
        shutil.rmtree(open_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def udb_box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with cluster(tmp_path_factory.mktemp("warm-udb"), workers=2) as box:
        yield box


def _every_third_in_ci(cases: list[Path]) -> list[object]:
    """make test compares a third of the UDB cases warm vs cold (about 9 s each); ESS_LONG=1
    all of them."""
    return [pytest.param(c, id=c.name, marks=() if i % 3 == 0 else pytest.mark.long)
            for i, c in enumerate(cases)]  # fmt: skip


@pytest.mark.parametrize("case", _every_third_in_ci(list(udb_cases())))
def test_golden_udb_warm_equals_cold(
    case: Path, warm: service.Service, udb_box: Sandbox, tmp_path: Path
) -> None:
    """Each UDB golden case's cmd.sh (setup included: aq_pp -imp, then aq_udb) by bash on a
    2-worker cluster, from an empty UDB, cold then warm: the same bytes and exit codes."""
    got = {}
    for mode in ("cold", "warm"):
        work = tmp_path / mode
        shutil.copytree(case, work)
        env = dict(udb_box.env)
        env.pop("ESS_WARM_SOCKET", None)
        env.update({"ESS_WARM_SOCKET": warm.socket, "ESS_WARM": "1"} if mode == "warm" else
                   {"ESS_WARM": "0"})  # fmt: skip
        udb_box.run("ess server reset", cwd=work)
        before = served(warm.socket) or 0
        got[mode] = _run(["bash", str(work / "cmd.sh")], env=env, cwd=work)
        assert ((served(warm.socket) or 0) > before) == (mode == "warm")
    assert got["warm"] == got["cold"]
    assert got["cold"][0] == 0, got["cold"][2].decode()


def test_a_local_stream_runs_its_commands_through_the_fast_launcher(tmp_path: Path) -> None:
    """`ess stream` on the local default, as a user types it: its commands find the warm
    service's launcher first, print what the cold entry point prints, and the launchers go
    away with the service when the stream ends."""
    from tests.unit.udb.harness import sandbox

    box = sandbox(tmp_path / "ws")
    files = tmp_path / "files"
    files.mkdir()
    for day in (1, 2, 3):
        (files / f"p_201409{day:02d}.csv").write_text(f"a\nx{day}\ny,{day}\n")
    box.run(f"ess select local && ess category add p '{files}/p_*'")
    stream = "ess stream p '*' '*' 'command -v aq_pp; aq_pp -f,+1 - -d s:a -o -'"
    hot = box.run(stream).stdout.decode().splitlines()
    cold = box.run(f"ESS_WARM=0 {stream}").stdout.decode().splitlines()
    launchers = {line for line in hot if line.endswith("/aq_pp")}
    assert len(launchers) == 1 and launchers.pop().endswith(".bin/aq_pp"), hot
    assert {line for line in cold if line.endswith("/aq_pp")} == {str(BIN / "aq_pp")}
    assert [x for x in hot if "/" not in x] == [x for x in cold if "/" not in x]
    assert len([x for x in hot if "/" not in x]) == 9  # header + 2 rows per file
    base = Path(box.env.get("XDG_RUNTIME_DIR") or "/tmp") / f"ess-warm-{os.getuid()}"
    assert not list(base.glob("run-*.sock.bin")), "the stream's fast launchers were left behind"


def test_a_long_socket_name_keeps_its_launchers_under_that_name(tmp_path: Path) -> None:
    """A worker names its service's socket after its own directory; when that name is too long
    for a socket the socket goes to the runtime dir, but the launchers stay at the name the
    worker put on its commands' PATH, and they reach the service."""
    home = tmp_path / ("d" * 100)
    home.mkdir(mode=0o700)
    wanted = str(home / "node.warm.sock")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ess.warm.service", "--socket", wanted,
         "--watch-pid", str(os.getpid())],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        from ess.warm.paths import socket_for

        real = socket_for(wanted)
        assert real != wanted
        deadline = time.monotonic() + 120
        while served(real) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        before = served(real)
        assert before is not None
        assert os.access(os.path.join(bin_dir(wanted), "aq_pp"), os.X_OK)
        assert not os.path.exists(bin_dir(real))
        env = {**os.environ, "ESS_WARM_SOCKET": wanted, "ESS_WARM": "1",
               "PATH": f"{bin_dir(wanted)}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
        out = subprocess.run(["aq_pp", "-f", "-", "-d", "s:a", "-o", "-"], input=b"x\n",
                             env=env, capture_output=True, timeout=60)  # fmt: skip
        assert (out.returncode, out.stdout) == (0, b'"a"\n"x"\n'), out.stderr
        assert served(real) == before + 1
    finally:
        proc.terminate()
        proc.wait(30)
    assert not os.path.exists(bin_dir(wanted))


def test_the_service_stops_when_its_worker_dies_unreaped(tmp_path: Path) -> None:
    """A SIGKILLed worker stays a zombie until its parent reaps it (seconds, for a worker a
    long-lived process revived, or one reparented to a container's init): its service must
    stop all the same, or the worker started in its place would send commands to a service
    that later dies under them."""
    worker = subprocess.Popen(["sleep", "600"])  # stands for the worker; this test its parent
    sock = str(tmp_path / "node.warm.sock")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ess.warm.service", "--socket", sock,
         "--watch-pid", str(worker.pid)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while served(sock) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert served(sock) is not None
        os.kill(worker.pid, signal.SIGKILL)  # not reaped yet: a zombie child of this process
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is not None, "the service outlived its killed worker"
        assert served(sock) is None
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        worker.wait()

"""Fixtures shared by every test: isolated ess state directories and a runner for the real CLI."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PROJECT = Path(__file__).resolve().parent.parent
SHARED = PROJECT.parent / "shared"
ACCEPTANCE = SHARED / "acceptance"
DATA = ACCEPTANCE / "data"
GOLDEN = ACCEPTANCE / "golden"
WOODWORKING = DATA / "woodworking" / "diy_woodworking"
BIN = Path(sys.executable).parent


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


TRACEBACK = "Traceback (most recent call last)"


def assert_no_traceback(tool: str, args: Sequence[str], stderr: str | bytes) -> None:
    """Fail the test when a command printed a Python traceback: bad input must get one clear
    line, and a crash must never pass for the expected non-zero exit of a negative test."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    if TRACEBACK in text:
        pytest.fail(f"{tool} {' '.join(args)} printed a traceback:\n{text}", pytrace=False)


#: Programs whose captured stderr is checked for tracebacks wherever a test runs them with
#: subprocess.run (shell scripts included: the tutorial scripts run ess and aq_pp).
CHECKED_PROGRAMS = frozenset({"ess", "aq_pp", "aq_udb", "bash", "sh"})


@pytest.fixture(autouse=True)
def no_traceback_from_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test that captures the stderr of ess/aq_pp/aq_udb (directly or in a script)
    fails on a Python traceback, not only those going through EssEnv.run."""
    real_run = subprocess.run

    def checked_run(*popenargs: Any, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        proc = real_run(*popenargs, **kwargs)
        argv = popenargs[0] if popenargs else kwargs.get("args")
        if kwargs.get("shell"):  # the string runs in sh, whatever programs it names
            words = ["sh", "-c", os.fsdecode(argv if isinstance(argv, str | bytes) else "")]
        elif isinstance(argv, str | bytes | os.PathLike):
            words = [argv]
        else:
            words = list(argv or [])
        program = Path(os.fsdecode(words[0])).name if words else ""
        if program in CHECKED_PROGRAMS and isinstance(proc.stderr, str | bytes):
            assert_no_traceback(program, [os.fsdecode(w) for w in words[1:]], proc.stderr)
        return proc

    monkeypatch.setattr(subprocess, "run", checked_run)


@dataclass
class EssEnv:
    """A sandboxed ess installation: its own work, cache and aws directories and cwd."""

    root: Path
    env: dict[str, str]

    @property
    def work_dir(self) -> Path:
        return Path(self.env["ESS_WORK_DIR"])

    @property
    def cache_dir(self) -> Path:
        return Path(self.env["ESS_CACHE_DIR"])

    def run(
        self,
        *args: str,
        tool: str = "ess",
        input: str | bytes | None = None,
        check: bool = False,
        timeout: float = 120,
    ) -> Result:
        text = not isinstance(input, bytes)
        proc = subprocess.run(
            [str(BIN / tool), *args],
            cwd=self.root,
            env=self.env,
            input=input,
            capture_output=True,
            text=text,
            timeout=timeout,
        )
        out = proc.stdout if text else proc.stdout.decode(errors="surrogateescape")
        err = proc.stderr if text else proc.stderr.decode(errors="replace")
        assert_no_traceback(tool, args, err)
        result = Result(proc.returncode, out, err)
        if check and proc.returncode != 0:
            raise AssertionError(f"{tool} {args} failed ({proc.returncode}): {err}")
        return result

    def ess(self, *args: str, **kw: object) -> Result:
        return self.run(*args, **kw)  # type: ignore[arg-type]


def sandbox_env(root: Path) -> dict[str, str]:
    """This process's environment with every ess directory (and HOME) moved under ``root``,
    no AWS credentials, UTC, the C locale, and the venv's tools first on PATH."""
    env = dict(os.environ)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.pop(var, None)
    env.update(
        ESS_WORK_DIR=str(root / ".conf"),
        ESS_CACHE_DIR=str(root / ".ess"),
        ESS_AWS_DIR=str(root / ".aws"),
        HOME=str(root),
        # the compiled aq helper is not state: one build serves every test (see ess.aq.native)
        ESS_NATIVE_DIR=env.get("ESS_NATIVE_DIR") or str(Path("~/.cache/ess/native").expanduser()),
        TZ="UTC",
        LC_ALL="C",
        # Dask's dashboard adds ~1 s to every scheduler start; tests/integration/test_ui.py
        # turns it back on and follows the link
        ESS_DASHBOARD="0",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def make_env(root: Path) -> EssEnv:
    return EssEnv(root=root, env=sandbox_env(root))


@pytest.fixture
def ess_env(tmp_path: Path) -> Iterator[EssEnv]:
    yield make_env(tmp_path)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_moto(env: dict[str, str] | None = None) -> Iterator[str]:
    """A real moto server on 127.0.0.1 (its URL), stopped when the block ends."""
    import time
    import urllib.request

    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server (S3, EC2, ...) for the whole session."""
    with running_moto() as url:
        yield url


@pytest.fixture
def aws_env(ess_env: EssEnv, moto_endpoint: str) -> EssEnv:
    """ess_env pointed at the moto server; no credentials in the environment."""
    ess_env.env.update(
        AWS_ENDPOINT_URL=moto_endpoint,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    return ess_env


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``long`` (the bigger variants of fault, determinism and warm/cold runs)
    are deselected unless ESS_LONG=1 (``make test-long``): make test stays within its time
    budget, and a deselected test is not reported as passing or skipped."""
    if os.environ.get("ESS_LONG") == "1":
        return
    long = [item for item in items if item.get_closest_marker("long")]
    if long:
        config.hook.pytest_deselected(items=long)
        items[:] = [item for item in items if not item.get_closest_marker("long")]

"""Test support for the UDB: a real local cluster in a sandbox, and in-process command runs.

The cluster is started with the real ``ess cluster create`` and torn down by killing exactly
the pids of its daemons (read from their pid files), so no test leaves a daemon behind.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent


@dataclass
class Sandbox:
    root: Path
    env: dict[str, str]

    @property
    def work_dir(self) -> Path:
        return Path(self.env["ESS_WORK_DIR"])

    def run(
        self,
        cmd: str,
        *,
        cwd: Path | None = None,
        input: bytes | None = None,
        check: bool = True,
        timeout: float = 180,
    ) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run(
            ["bash", "-c", cmd],
            cwd=cwd or self.root,
            env=self.env,
            input=input,
            capture_output=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{cmd!r} failed ({proc.returncode}): {proc.stderr.decode()}")
        return proc

    def pids(self) -> dict[str, int]:
        out = {}
        for f in (self.work_dir / "cluster").glob("*.pid"):
            with contextlib.suppress(ValueError, FileNotFoundError):
                out[f.stem] = int(f.read_text().strip())
        return out

    @contextlib.contextmanager
    def inprocess(self, cwd: Path) -> Iterator[None]:
        """Run library/CLI code in this process with the sandbox's environment and cwd."""
        saved_env = dict(os.environ)
        saved_cwd = os.getcwd()
        os.environ.update(self.env)
        os.chdir(cwd)
        try:
            yield
        finally:
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)


def sandbox(root: Path) -> Sandbox:
    from tests.conftest import sandbox_env

    root.mkdir(parents=True, exist_ok=True)
    return Sandbox(root, sandbox_env(root))


@contextlib.contextmanager
def cluster(root: Path, workers: int) -> Iterator[Sandbox]:
    """A local cluster of `workers` workers with the UDB started; always torn down."""
    box = sandbox(root)
    try:
        box.run(f"ess cluster create --number {workers}")
        box.run("ess udbd start")
        yield box
    finally:
        from ess.udb.imp import close_sessions

        close_sessions()
        for pid in box.pids().values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in box.pids().values()):
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def run_line(line: str) -> bytes:
    """Run one simple command line (`ess ...`, `aq_pp ...`, `aq_udb ...`) in this process and
    return its stdout; anything else (pipes, other tools) goes to bash."""
    words = shlex.split(line)
    tool, args = words[0], words[1:]
    if any(w in ("|", ">", "<", ";", "&&") for w in words) or tool not in (
        "ess",
        "aq_pp",
        "aq_udb",
    ):
        proc = subprocess.run(["bash", "-c", line], capture_output=True, env=dict(os.environ))
        if proc.returncode:
            raise AssertionError(f"{line!r} failed: {proc.stderr.decode()}")
        return proc.stdout
    buf = io.BytesIO()
    out = io.TextIOWrapper(buf, encoding="utf-8", write_through=True)
    saved = sys.stdout
    sys.stdout = out
    code: object = 0
    try:
        if tool == "ess":
            from ess.cli.main import run_cli

            code = run_cli(args)
        else:
            from ess.cli import aq_pp, aq_udb

            try:
                (aq_pp.main if tool == "aq_pp" else aq_udb.main)(args)
            except SystemExit as exc:
                code = exc.code
    finally:
        out.flush()
        sys.stdout = saved
    if code not in (0, None):
        raise AssertionError(f"{line!r} exited with {code}")
    return buf.getvalue()


def script_lines(path: Path) -> list[str]:
    """The command lines of a case script (comments, `set`, `cd` and `bash ./setup.sh` out)."""
    out = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith(("set ", "cd ", "bash ")):
            continue
        out.append(line)
    return out

"""Ctrl-C of a running aq_pp: it dies of SIGINT, as a shell expects, with no traceback (cold
start; the warm path relays the signal to a child that runs the same main)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

AQ_PP = str(Path(sys.executable).parent / "aq_pp")


def test_sigint_while_busy_dies_of_sigint_quietly(tmp_path: Path) -> None:
    data = tmp_path / "big.csv"
    with data.open("w") as f:
        for i in range(0, 3_000_000, 100_000):
            f.write("".join(f"{j},x{j}\n" for j in range(i, i + 100_000)))
    argv = [AQ_PP, "-f", str(data), str(data), str(data), "-d", "i:a", "s:b"]
    argv += ["-eval", "s:d", "ToS(a*2)+b", "-o", os.devnull]
    env = {**os.environ, "ESS_WARM": "0"}
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, env=env)
    time.sleep(1.0)  # past start-up, into the batches
    assert proc.poll() is None, "the run ended before the signal: make the input bigger"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGINT
    assert b"Traceback" not in err


def test_sigint_while_waiting_on_an_open_pipe(tmp_path: Path) -> None:
    """A Ctrl-C reaches an aq_pp blocked on its input (a terminal, a feed that stays open):
    Polars' own SIGINT handler would let the read resume (pola-rs/polars#21739)."""
    env = {**os.environ, "ESS_WARM": "0"}
    argv = [AQ_PP, "-f", "-", "-d", "s:a", "-o", "-"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)  # fmt: skip
    time.sleep(3.0)  # past start-up, into the read
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)  # stdin stays open: only the signal can end it
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("aq_pp ignored a Ctrl-C while waiting on its input") from None
    assert proc.stdin is not None and proc.stderr is not None and proc.stdout is not None
    proc.stdin.close()
    proc.stdout.close()
    assert proc.returncode == -signal.SIGINT
    assert b"Traceback" not in proc.stderr.read()
    proc.stderr.close()

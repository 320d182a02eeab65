"""Transparent huge pages off for ess's daemons (ess.engine.hugepages), in a real process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CHECK = """
import subprocess, sys
from ess.engine.hugepages import no_huge_pages
print(no_huge_pages())
status = open("/proc/self/status").read()
print([l for l in status.splitlines() if l.startswith("THP_enabled")][0].split()[1])
# inherited across fork and exec: a child process reports the same
child = subprocess.run(["grep", "THP_enabled", "/proc/self/status"], capture_output=True, text=True)
print(child.stdout.split()[1])
"""


def _run(**env: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", CHECK], env={**os.environ, **env},
                         capture_output=True, text=True, check=True)  # fmt: skip
    return out.stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_off_for_the_process_and_its_children() -> None:
    if "THP_enabled" not in open("/proc/self/status").read():  # noqa: SIM115
        pytest.fail("this kernel does not report THP_enabled (older than 5.0?)")
    assert _run(ESS_HUGE_PAGES="0") == ["True", "0", "0"]


def test_left_alone_when_asked() -> None:
    assert _run(ESS_HUGE_PAGES="1") == ["False", "1", "1"]

"""Hand-over directories in /dev/shm: named after their owner, swept when the owner is gone."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ess.udb import handoff


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_sweep_removes_only_directories_of_dead_owners(tmp_path: Path) -> None:
    dead = tmp_path / f"ess-udb-{_dead_pid()}-x1"
    live = tmp_path / f"ess-udb-{os.getpid()}-x2"
    old_style = tmp_path / "ess-udb-abc123"  # no pid in the name (older versions)
    other = tmp_path / "not-ours-1"
    for folder in (dead, live, old_style, other):
        folder.mkdir()
        (folder / "batch.arrow").write_bytes(b"x" * 100)
    assert handoff.sweep_stale(str(tmp_path)) == [str(dead)]
    assert not dead.exists()
    assert live.exists() and old_style.exists() and other.exists()
    assert handoff.sweep_stale(str(tmp_path / "missing")) == []


def test_client_folder_is_named_after_its_process_and_sweeps_stale_ones() -> None:
    stale = Path(handoff.SHM) / f"{handoff.PREFIX}{_dead_pid()}-test"
    stale.mkdir()
    with handoff.Handoff() as h:
        opened = h.open()
        assert opened is not None, "/dev/shm must be writable on the test machine"
        folder, token = opened
        assert Path(folder).name.startswith(f"{handoff.PREFIX}{os.getpid()}-")
        assert handoff.sees(folder, token)
        assert not stale.exists()
    assert not Path(folder).exists()

"""Which processes are ess daemons, and which of them are orphans (ess cluster status --all)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ess.cluster import census


class _Proc:
    """What census reads of a psutil.Process."""

    def __init__(self, pid: int, argv: list[str], *, age: float = 100, parent: Any = None):
        self.pid = pid
        self.info: dict[str, Any] = {
            "cmdline": argv,
            "create_time": time.time() - age,
            "memory_info": None,
        }
        self._parent = parent

    def parent(self) -> Any:
        return self._parent

    def cmdline(self) -> list[str]:
        return list(self.info["cmdline"])


def _serve(role: str, marker: Path) -> list[str]:
    return [sys.executable, "-m", "ess.engine.serve", role, "--tls-dir", "t", "--cluster-dir",
            str(marker)]  # fmt: skip


def _cluster(tmp_path: Path) -> Path:
    d = tmp_path / "work" / "cluster"
    d.mkdir(parents=True)
    (d / "cluster.json").write_text(json.dumps({"id": "local-abc"}))
    return d


def test_a_daemon_with_its_pid_file_is_not_an_orphan(tmp_path: Path) -> None:
    d = _cluster(tmp_path)
    (d / "worker-1.pid").write_text("4242\n")
    found = census._describe(_Proc(4242, _serve("worker", d / "worker-1")))
    assert found is not None
    assert (found.role, found.name, found.cluster_id, found.orphan) == (
        "worker", "worker-1", "local-abc", None)  # fmt: skip
    assert found.directory == str(d)


def test_orphans_lost_their_dir_or_pid_file(tmp_path: Path) -> None:
    d = _cluster(tmp_path)
    (d / "worker-1.pid").write_text("999\n")
    assert census._daemon_orphan(_Proc(1, []), str(d / "scheduler")) == "pid file gone"
    assert census._daemon_orphan(_Proc(1, []), str(d / "worker-1")) == "pid file names 999"
    gone = tmp_path / "deleted" / "cluster" / "worker-1"
    assert census._daemon_orphan(_Proc(1, []), str(gone)) == "work dir gone"
    # just started (its pid file is being written) or owned by a node's worker loop: not
    assert census._daemon_orphan(_Proc(1, [], age=1), str(d / "scheduler")) is None
    loop = _Proc(2, ["/bin/bash", "/opt/ess/run-worker.sh"])
    assert census._daemon_orphan(_Proc(1, [], parent=loop), str(d / "scheduler")) is None


def test_warm_services_of_a_cluster_are_listed(tmp_path: Path) -> None:
    d = _cluster(tmp_path)
    argv = [sys.executable, "-m", "ess.warm.service", "--socket", f"{d}/worker-1.warm.sock",
            "--watch-pid", str(os.getpid())]  # fmt: skip
    found = census._describe(_Proc(7, argv))
    assert found is not None
    assert (found.role, found.name, found.orphan) == ("warm", "worker-1", None)
    dead = [*argv[:-1], "999999999"]
    found = census._describe(_Proc(7, dead))
    assert found is not None and found.orphan == "its worker is gone"
    # the service of one `ess stream` without a cluster ends with that stream: not a daemon
    local = [sys.executable, "-m", "ess.warm.service", "--socket", "/run/x/run-1-0.sock"]
    assert census._describe(_Proc(8, local)) is None


def test_other_processes_are_not_daemons() -> None:
    assert census._describe(_Proc(9, ["bash", "-c", "ess.engine.serve worker"])) is None
    assert census._describe(_Proc(9, [sys.executable, "-m", "ess.engine.serve", "worker"])) is None


def test_find_daemons_lists_only_this_users_processes() -> None:
    assert all(os.stat(f"/proc/{d.pid}").st_uid == os.getuid() for d in census.find_daemons())


def test_age_and_size() -> None:
    assert census.age(0, now=75) == "1m15s"
    assert census.age(0, now=3 * 3600 + 120) == "3h02m"
    assert census.age(0, now=2 * 86400 + 3600) == "2d01h"
    assert census.mib(3 << 20) == "3M"

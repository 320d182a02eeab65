"""The remote shell commands of custom clusters: values are quoted, and the scripts work (run
here with bash against a fake node directory)."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from ess.cluster import custom_remote as remote
from ess.cluster.custom import _version_problems, worker_names
from ess.cluster.custom_config import Reservation
from ess.cluster.ssh import Host


def bash(command: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {"HOME": str(home), "PATH": os.environ["PATH"]}
    return subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True)


def test_slug_and_node_dir() -> None:
    assert remote.slug("my_id") == "my-id"
    assert remote.slug("../../etc") == "etc"
    assert remote.slug("") == "cluster"
    node = remote.NodeDir.of(".ess-node", "my-id", "10.0.0.1_2222")
    assert node.shell == '"$HOME"/.ess-node/my-id/10.0.0.1_2222'
    assert node.absolute("/home/u") == "/home/u/.ess-node/my-id/10.0.0.1_2222"
    assert remote.NodeDir.of("/opt/ess x", "c", "h").shell == "'/opt/ess x/c/h'"


def test_env_values_are_quoted() -> None:
    node = remote.NodeDir("d")
    evil = "x'; touch /tmp/pwned; echo '"
    command = remote.bootstrap(node, {"ESS_PIP_ARGS": evil, "ESS_BOOT_DIR": "/a b"})
    words = shlex.split(command)
    assert f"ESS_PIP_ARGS={evil}" in words and "ESS_BOOT_DIR=/a b" in words


def test_prepare_status_and_remove_on_a_fake_node(tmp_path: Path) -> None:
    node = remote.NodeDir.of(".ess-node", "c", "h x")
    out = bash(remote.prepare(node), tmp_path)
    assert out.returncode == 0, out.stderr
    keys = remote.parse_keys(out.stdout)
    assert keys == {"home": str(tmp_path), "installed": ""}
    base = tmp_path / ".ess-node" / "c" / "h x"
    assert (base / "work").is_dir() and (base / "stage").stat().st_mode & 0o777 == 0o700
    (base / "installed").write_text("0.1.0+abc\n")

    # a worker loop as the bootstrap script starts it: setsid, pid file, run-worker.sh
    (base / "run-worker.sh").write_text("#!/bin/bash\nwhile true; do sleep 0.1; done\n")
    (base / "run-worker.sh").chmod(0o700)
    proc = subprocess.Popen(["setsid", str(base / "run-worker.sh")], start_new_session=False)
    (base / "worker.pid").write_text(f"{proc.pid}\n")
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        cmd = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        if b"run-worker.sh" in cmd:
            break
        time.sleep(0.02)
    info = remote.parse_keys(bash(remote.status(node), tmp_path).stdout)
    assert info["worker"] == str(proc.pid) and info["installed"] == "0.1.0+abc"
    assert info["cpu"].startswith("[") and float(info["mem"]) > 0 and "disk" in info

    out = bash(remote.remove_node(node), tmp_path)
    assert out.returncode == 0, out.stderr
    assert proc.wait(10) != 0  # killed
    assert not (tmp_path / ".ess-node").exists()


def test_stop_never_signals_a_foreign_pid(tmp_path: Path) -> None:
    node = remote.NodeDir.of(".ess-node", "c", "h")
    bash(remote.prepare(node), tmp_path)
    other = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / ".ess-node/c/h/worker.pid").write_text(f"{other.pid}\n")
        bash(remote.stop_worker(node), tmp_path)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_workers_are_numbered_in_ip_list_order() -> None:
    res = Reservation(id="c", hosts=(Host("b"), Host("a"), Host("c", 2222)))
    assert list(worker_names(res).values()) == ["worker-1", "worker-2", "worker-3"]
    assert worker_names(res)[Host("a")] == "worker-2"


def test_python_patch_mismatch_is_not_a_problem() -> None:
    table = (
        "Mismatched versions found\n\n+---------+\n| Package | Client | Workers |\n"
        "+---------+\n| python  | 3.11.7.final.0 | 3.11.2.final.0 |\n"
    )
    assert _version_problems([table]) == []
    table += "| dask    | 2026.8.0 | 2024.1.0 |\n"
    assert _version_problems([table]) == [
        "package versions differ between master and workers: dask 2026.8.0 2024.1.0"
    ]

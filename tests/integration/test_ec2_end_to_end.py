"""End to end on a simulated cloud: moto launches the instances, the harness runs each one's
user-data here (its own venv, a 127.0.0.x address), real workers join the master's scheduler
over TLS, ``ess stream`` reads a category from a moto S3 bucket on them, and a node running
another build is flagged by ``status`` and re-synced by ``start``.

The master runs from a snapshot of the source tree (PYTHONPATH) so that edits made to the
working tree while the test runs do not change "the master's build" under it.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ess.cluster.bootstrap import build_id, build_wheel, script_from_user_data
from tests.conftest import PROJECT, WOODWORKING, EssEnv
from tests.integration.ec2_harness import (
    SimulatedCloud,
    client,
    cloud_env,
    cluster_id,
    live,
    tagged_instances,
    teardown,
    user_data,
)
from tests.integration.test_s3_datastore import CSV, make_bucket

pytestmark = pytest.mark.slow


def snapshot(dest: Path) -> Path:
    shutil.copytree(
        PROJECT / "src" / "ess", dest / "ess", ignore=shutil.ignore_patterns("__pycache__")
    )
    return dest


@pytest.fixture
def cloud(aws_env: EssEnv, moto_endpoint: str) -> Iterator[tuple[EssEnv, SimulatedCloud]]:
    snap = snapshot(aws_env.root / "snapshot")
    env = cloud_env(aws_env, PYTHONPATH=str(snap))
    sim = SimulatedCloud(root=aws_env.root / "nodes", endpoint=moto_endpoint)
    try:
        yield env, sim
    finally:
        teardown(env)
        sim.shutdown()


def rows(status_stdout: str) -> dict[str, list[str]]:
    return {
        line.split()[0]: line.split() for line in status_stdout.splitlines()[4:] if line.strip()
    }


def test_workers_join_stream_s3_and_resync(
    cloud: tuple[EssEnv, SimulatedCloud], moto_endpoint: str
) -> None:
    env, sim = cloud
    ec2 = client("ec2", moto_endpoint)
    master_build = build_id(Path(env.env["PYTHONPATH"]) / "ess")
    env.ess("cluster", "set", "cloud", check=True)
    made = env.ess("cluster", "create", "--number=2", "--type=t3.micro")
    assert made.returncode == 0, made.stderr
    cid = cluster_id(env)

    booted = sim.boot_running(ec2, cid)
    assert len(booted) == 2
    for iid in booted:
        boot = sim.nodes[iid]
        # the node runs the wheel it installed, not the project's checkout
        where = subprocess.run(
            [str(boot / "venv" / "bin" / "python"), "-c", "import ess; print(ess.__file__)"],
            capture_output=True,
            text=True,
            check=True,
            env={"PATH": "/usr/bin:/bin"},
        ).stdout
        assert where.startswith(str(boot / "venv")), where
        for name in ("ca.crt", "worker.crt", "worker.key"):
            assert (boot / "tls" / name).stat().st_mode & 0o777 == 0o600
        assert not (boot / "tls" / "ca.key").exists()
        assert (boot / "tls").stat().st_mode & 0o777 == 0o700

    # status waits for nothing: give the workers a moment to register, then every node shows
    status = wait_for_clean_status(env)
    table = rows(status.stdout)
    assert table["master"][-1] == master_build
    for iid in booted:
        assert table[iid][1] == "running" and table[iid][-1] == master_build

    # ess stream over an S3 category, run on the workers
    bucket = make_bucket(moto_endpoint)
    creds = env.root / "creds.csv"
    creds.write_text(CSV)
    env.ess("select", f"s3://{bucket}", f"--credentials={creds}", check=True)
    env.ess("category", "add", "purchase", "diy_woodworking/*purchase_*", check=True)
    out = env.ess("stream", "purchase", "2014-09-01", "2014-09-04", "wc -l", timeout=180)
    assert out.returncode == 0, out.stderr
    expected = [
        str(
            len(
                gzip.decompress((WOODWORKING / f"purchase_2014090{d}.gz").read_bytes()).splitlines()
            )
        )
        for d in range(1, 5)
    ]
    assert out.stdout.split() == expected

    # commands on cloud workers reach the UDB as on custom hosts (ess.udb.remote): the shipped
    # definitions, the scheduler address, the worker's own certificate, aq_udb on the PATH
    env.ess("create", "database", "shop", check=True)
    env.ess("create", "vector", "totals", "s,pkey:user", "i,+add:amount", check=True)
    probe = env.ess("exec", 'aq_udb -probe shop:totals && echo "probed $ESS_CLUSTER_ID"')
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["probed", cid] * 2
    undefined = env.ess("exec", "aq_udb -probe shop:nosuch")
    assert undefined.returncode != 0 and "nosuch" in undefined.stderr, undefined.stderr

    # a node with another build: flagged by status, re-synced by start
    added = env.ess("cluster", "create", "--add", "--number=1")
    assert added.returncode == 0, added.stderr
    (new,) = [
        i["InstanceId"] for i in live(tagged_instances(ec2, cid)) if i["InstanceId"] not in booted
    ]
    old_src = snapshot(env.root / "old")
    (old_src / "ess" / "cluster" / "ec2.py").write_text(
        (old_src / "ess" / "cluster" / "ec2.py").read_text() + "# an older build\n"
    )
    old_build = build_id(old_src / "ess")
    wheel = build_wheel(env.root / "old-wheel", source=old_src / "ess")
    boot = sim.root / new
    boot.mkdir(parents=True)
    sim.make_venv(boot)
    subprocess.run(
        [
            str(boot / "venv/bin/python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--no-deps",
            str(wheel),
        ],
        check=True,
    )
    # an image that already carries that build: the bootstrap keeps it
    (boot / "installed").write_text(master_build + "\n")
    sim.nodes[new] = boot
    (boot / "address").write_text("127.0.0.99")
    sim.boot(new, script_from_user_data(user_data(ec2, new)))

    flagged = wait_for(
        env, lambda r: f"{new} runs ess {old_build}, the master {master_build}" in r.stderr
    )
    assert flagged.returncode == 1

    env.env["ESS_EC2_JOIN_TIMEOUT"] = "90"
    started = env.ess("cluster", "start", timeout=180)
    assert started.returncode == 0, started.stderr
    status = wait_for_clean_status(env)
    table = rows(status.stdout)
    assert {table[i][-1] for i in [*booted, new]} == {master_build}
    assert (boot / "installed").read_text().strip() == master_build


def wait_for(env: EssEnv, ok, timeout: float = 60):  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + timeout
    while True:
        result = env.ess("cluster", "status")
        if ok(result) or time.monotonic() > deadline:
            return result
        time.sleep(1)


def wait_for_clean_status(env: EssEnv):  # type: ignore[no-untyped-def]
    result = wait_for(env, lambda r: r.returncode == 0)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))

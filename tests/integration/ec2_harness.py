"""A simulated cloud for the EC2 tests: moto is EC2 and S3; the user-data of each instance moto
reports running is run here, as cloud-init would run it, with the node's address on 127.0.0.x.

The bootstrap script is the production one. The only differences from a real node are the
environment overrides the script documents: ESS_BOOT_DIR (a scratch dir), ESS_NODE_ADDRESS /
ESS_INSTANCE_ID (instead of the metadata service), ESS_WORKER_PORT (a free port), and
ESS_PIP_ARGS="--no-index --no-deps" with a pre-made virtualenv whose .pth points at the
project's site-packages for the dependencies, so nothing is fetched from the internet. The
script still installs the wheel the master uploaded (ess itself lands in the node's venv).
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from ess.cluster.bootstrap import script_from_user_data
from ess.cluster.ec2_state import TAG_KEY
from tests.conftest import EssEnv, free_port

SITE_PACKAGES = sysconfig.get_paths()["purelib"]


def client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIATESTKEY",
        aws_secret_access_key="testsecret",
    )


def tagged_instances(ec2: Any, cluster_id: str) -> list[dict[str, Any]]:
    out = []
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": f"tag:{TAG_KEY}", "Values": [cluster_id]}]
    )
    for page in pages:
        for res in page["Reservations"]:
            for inst in res["Instances"]:
                out.append({**inst, "ReservationId": res["ReservationId"]})
    return out


def live(instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [i for i in instances if i["State"]["Name"] not in ("terminated", "shutting-down")]


def user_data(ec2: Any, instance_id: str) -> str:
    raw = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    return base64.b64decode(raw["UserData"]["Value"]).decode()


@dataclass
class SimulatedCloud:
    root: Path
    endpoint: str
    nodes: dict[str, Path] = field(default_factory=dict)
    next_address: int = 20

    def make_venv(self, boot: Path) -> None:
        venv = boot / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        purelib = next((venv / "lib").glob("python3*/site-packages"))
        (purelib / "ess_test_dependencies.pth").write_text(SITE_PACKAGES + "\n")

    def boot(self, instance_id: str, script: str, *, venv_ready: bool = False) -> Path:
        """Run ``script`` as the instance's cloud-init would (again at a reboot)."""
        boot = self.nodes.get(instance_id) or self.root / instance_id
        if instance_id not in self.nodes:
            boot.mkdir(parents=True)
            self.make_venv(boot)
            self.nodes[instance_id] = boot
            self.next_address += 1
            (boot / "address").write_text(f"127.0.0.{self.next_address}")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ESS_", "PYTHON"))}
        env.update(
            ESS_BOOT_DIR=str(boot),
            ESS_NODE_ADDRESS=(boot / "address").read_text(),
            ESS_INSTANCE_ID=instance_id,
            ESS_WORKER_PORT=str(free_port()),
            ESS_PIP_ARGS="--no-index --no-deps",
            ESS_PYTHON=sys.executable,
            PATH=os.environ["PATH"],
        )
        proc = subprocess.run(["bash", "-c", script], env=env, timeout=180)
        log = (boot / "boot.log").read_text() if (boot / "boot.log").exists() else ""
        assert proc.returncode == 0, f"bootstrap of {instance_id} failed:\n{log}"
        return boot

    def boot_running(self, ec2: Any, cluster_id: str) -> list[str]:
        """Boot every running instance of the cluster that has not booted yet."""
        started = []
        for inst in tagged_instances(ec2, cluster_id):
            iid = inst["InstanceId"]
            if inst["State"]["Name"] == "running" and iid not in self.nodes:
                self.boot(iid, script_from_user_data(user_data(ec2, iid)))
                started.append(iid)
        return started

    def kill(self, instance_id: str) -> None:
        boot = self.nodes[instance_id]
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            pid = int((boot / "worker.pid").read_text())
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                os.killpg(pid, 0)
                time.sleep(0.1)
            os.killpg(pid, signal.SIGKILL)

    def shutdown(self) -> None:
        for iid in list(self.nodes):
            self.kill(iid)


def cloud_env(aws_env: EssEnv, **extra: str) -> EssEnv:
    """``aws_env`` set up for cloud clusters on loopback addresses (default credential chain)."""
    settings = {
        "AWS_ACCESS_KEY_ID": "AKIATESTKEY",
        "AWS_SECRET_ACCESS_KEY": "testsecret",
        "ESS_EC2_SCHEDULER_HOST": "127.0.0.1",
        "ESS_EC2_SSH_CIDR": "127.0.0.1/32",
        "ESS_EC2_SCHEDULER_PORT": str(free_port()),
        "ESS_EC2_JOIN_TIMEOUT": "0",
    }
    aws_env.env.update({**settings, **extra})
    return aws_env


def cluster_id(env: EssEnv) -> str:
    import json

    return str(json.loads((env.work_dir / "reservation.json").read_text())["id"])


def teardown(env: EssEnv) -> None:
    """Leave nothing behind: terminate --all (also stops the scheduler daemon)."""
    if (env.work_dir / "reservation.json").exists():
        env.ess("cluster", "terminate", "--all", "-y", timeout=120)

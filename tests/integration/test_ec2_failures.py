"""Failures of cloud clusters: rejected credentials, the instance limit reached halfway, an
interrupted create re-run, and a worker that never joins.

The limit and interruption tests drive the provider in-process with a client factory that hands
out *real* boto3 clients to the moto server, wrapped so RunInstances fails like AWS does when
the quota is reached (InstanceLimitExceeded) or the command is interrupted (KeyboardInterrupt,
after EC2 already launched the batch). moto has no instance quota to hit, and a SIGKILL at the
right moment cannot be timed reliably; everything else is the production code path.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from ess.cluster.ec2 import Ec2Provider
from ess.cluster.ec2_settings import Ec2Settings
from ess.cluster.ec2_state import TAG_KEY
from ess.cluster.provider import CloudAuth, CreateOptions
from ess.errors import ClusterError
from ess.workspace import Workspace
from tests.conftest import EssEnv, free_port, running_moto
from tests.integration.ec2_harness import client, cloud_env, live, tagged_instances, teardown

pytestmark = pytest.mark.slow


@pytest.fixture
def auth_moto() -> Iterator[str]:
    """A second moto server with IAM authentication on: it accepts no access key at all."""
    with running_moto(dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="0")) as url:
        yield url


def test_rejected_credentials(aws_env: EssEnv, auth_moto: str) -> None:
    env = cloud_env(aws_env, AWS_ENDPOINT_URL=auth_moto)
    del env.env["AWS_ACCESS_KEY_ID"], env.env["AWS_SECRET_ACCESS_KEY"]
    env.ess("cluster", "set", "cloud", check=True)
    result = env.ess(
        "cluster",
        "create",
        "--number=2",
        "--aws_access_key=AKIAREJECTED",
        "--aws_secret_access_key=wr0ngSecretValue",
    )
    assert result.returncode == 3, result.stderr
    assert "AWS rejected the credentials (AuthFailure)" in result.stderr
    assert "wr0ngSecretValue" not in result.stderr + result.stdout
    assert not (env.work_dir / "reservation.json").exists()  # nothing recorded or created
    assert not list((env.root / ".aws").glob("*.pem")) if (env.root / ".aws").exists() else True
    # the CSV form is rejected the same way
    csv = env.root / "creds.csv"
    csv.write_text("User Name,Access Key Id,Secret Access Key\nu,AKIAREJECTED,wr0ngSecretValue\n")
    again = env.ess("cluster", "create", f"--credentials={csv}")
    assert again.returncode == 3 and "wr0ngSecretValue" not in again.stderr


def test_worker_that_never_joins(aws_env: EssEnv, moto_endpoint: str) -> None:
    env = cloud_env(aws_env, ESS_EC2_JOIN_TIMEOUT="2")
    env.ess("cluster", "set", "cloud", check=True)
    try:
        made = env.ess("cluster", "create", "--number=1")
        assert made.returncode == 0, made.stderr  # Essentia's default: warn, exit 0
        (inst,) = live(tagged_instances(client("ec2", moto_endpoint), _cid(env)))
        iid = inst["InstanceId"]
        assert f"instance {iid} did not join the scheduler" in made.stderr
        assert "within 2 s" in made.stderr
        strict = env.ess("cluster", "create", "--error_return_code")
        assert strict.returncode == 5
        assert f"instance {iid} did not join the scheduler" in strict.stderr
    finally:
        teardown(env)


def _cid(env: EssEnv) -> str:
    import json

    return str(json.loads((env.work_dir / "reservation.json").read_text())["id"])


class FlakyEc2:
    """A real EC2 client to moto whose RunInstances misbehaves on purpose."""

    def __init__(self, real: Any, *, limit: int | None = None, interrupt_after: int | None = None):
        self.real = real
        self.limit = limit
        self.interrupt_after = interrupt_after
        self.calls = 0
        self.launched = 0
        self.lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def run_instances(self, **kwargs: Any) -> Any:
        with self.lock:
            self.calls += 1
            call = self.calls
            n = int(kwargs["MaxCount"])
            if self.limit is not None and self.launched + n > self.limit:
                raise botocore.exceptions.ClientError(
                    {
                        "Error": {
                            "Code": "InstanceLimitExceeded",
                            "Message": "You have requested more instances than your limit.",
                        }
                    },
                    "RunInstances",
                )
            if self.interrupt_after is not None and call > self.interrupt_after + 1:
                raise KeyboardInterrupt  # Ctrl-C before this batch
            self.launched += n
        result = self.real.run_instances(**kwargs)
        if self.interrupt_after is not None and call == self.interrupt_after + 1:
            raise KeyboardInterrupt  # Ctrl-C after EC2 launched the batch, before ess saw it
        return result


def provider(root: Path, endpoint: str, ec2: Any = None) -> Ec2Provider:
    ws = Workspace(root / ".conf", root / ".ess", root / ".aws")
    clients = {s: client(s, endpoint) for s in ("ec2", "s3", "ssm")}
    if ec2 is not None:
        clients["ec2"] = ec2
    settings = Ec2Settings(
        scheduler_host="127.0.0.1",
        ssh_cidr="127.0.0.1/32",
        scheduler_port=free_port(),
        join_timeout=0,
        batch_size=2,
    )
    return Ec2Provider(ws, client_factory=clients.__getitem__, settings=settings)


def test_limit_halfway_then_interrupted_create_rerun(tmp_path: Path, moto_endpoint: str) -> None:
    ec2 = client("ec2", moto_endpoint)
    s3 = client("s3", moto_endpoint)
    limited = FlakyEc2(client("ec2", moto_endpoint), limit=4)
    p = provider(tmp_path, moto_endpoint, limited)
    try:
        # -- the quota allows 4 of 6: the 4 are kept, tagged and recorded; the problem is said
        status = p.create(CreateOptions(number=6))
        cid = status.cluster_id
        assert len(live(tagged_instances(ec2, cid))) == 4
        (problem,) = [x for x in status.problems if "launched" in x]
        assert "launched 4 of 6 instances" in problem and "InstanceLimitExceeded" in problem
        assert "re-run 'ess cluster create'" in problem
        state = p.load_state()
        assert state is not None and state.target == 6 and len(state.nodes) == 4
        with pytest.raises(ClusterError, match="InstanceLimitExceeded"):
            p.create(CreateOptions(error_return_code=True))

        # -- re-run once the quota is raised: only the shortfall is launched
        p = provider(tmp_path, moto_endpoint)
        p.create(CreateOptions())
        assert len(live(tagged_instances(ec2, cid))) == 6

        # -- interrupted: batch 2 launched but never recorded, batch 3 never launched
        flaky = FlakyEc2(client("ec2", moto_endpoint), interrupt_after=1)
        p = provider(tmp_path, moto_endpoint, flaky)
        with pytest.raises(KeyboardInterrupt):
            p.create(CreateOptions(number=6, add=True))
        assert len(live(tagged_instances(ec2, cid))) == 10
        state = p.load_state()
        assert state is not None and state.target == 12 and len(state.nodes) < 10
        # a failed create leaves nothing untagged: every instance with the key carries the tag
        everything = ec2.describe_instances(
            Filters=[{"Name": "key-name", "Values": [state.key_name]}]
        )
        for res in everything["Reservations"]:
            for inst in res["Instances"]:
                assert {t["Key"]: t["Value"] for t in inst["Tags"]}[TAG_KEY] == cid

        # -- the re-run adopts the unrecorded batch and launches only what is missing
        p = provider(tmp_path, moto_endpoint)
        p.create(CreateOptions())
        assert len(live(tagged_instances(ec2, cid))) == 12
        state = p.load_state()
        assert state is not None and len(state.nodes) == 12
        bucket = state.bucket
    finally:
        p = provider(tmp_path, moto_endpoint)
        p.terminate(forget=True, auth=CloudAuth())
    # -- terminate --all removed every tagged resource
    assert {i["State"]["Name"] for i in tagged_instances(ec2, cid)} == {"terminated"}
    flt = [{"Name": f"tag:{TAG_KEY}", "Values": [cid]}]
    assert ec2.describe_key_pairs(Filters=flt)["KeyPairs"] == []
    assert ec2.describe_security_groups(Filters=flt)["SecurityGroups"] == []
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert not (tmp_path / ".conf" / "reservation.json").exists()

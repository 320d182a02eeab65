"""Cloud cluster lifecycle against a moto server, through the real CLI, checking EC2 after
every step: create / create again / create --add / add / remove / stop / start / status /
iplist / terminate / create again / terminate --all (with and without a terminal)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from ess.cluster.ec2_state import TAG_KEY
from tests.conftest import EssEnv
from tests.integration.ec2_harness import (
    client,
    cloud_env,
    cluster_id,
    live,
    tagged_instances,
    teardown,
    user_data,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def env(aws_env: EssEnv) -> Iterator[EssEnv]:
    env = cloud_env(aws_env)
    env.ess("cluster", "set", "cloud", check=True)
    yield env
    teardown(env)


def tags(resource: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def states(ec2: object, cid: str) -> dict[str, str]:
    return {i["InstanceId"]: i["State"]["Name"] for i in tagged_instances(ec2, cid)}


def groups(ec2, cid: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return ec2.describe_security_groups(Filters=[{"Name": f"tag:{TAG_KEY}", "Values": [cid]}])[
        "SecurityGroups"
    ]


def keys(ec2, cid: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return ec2.describe_key_pairs(Filters=[{"Name": f"tag:{TAG_KEY}", "Values": [cid]}])["KeyPairs"]


def test_lifecycle(env: EssEnv, moto_endpoint: str) -> None:
    ec2, s3 = client("ec2", moto_endpoint), client("s3", moto_endpoint)

    # -- create: 3 instances, key pair, group, bucket, all tagged
    made = env.ess("cluster", "create", "--number=3", "--type=t3.micro")
    assert made.returncode == 0, made.stderr
    cid = cluster_id(env)
    assert f"cluster {cid}: 3 workers" in made.stderr
    insts = tagged_instances(ec2, cid)
    assert len(insts) == 3 and {i["State"]["Name"] for i in insts} == {"running"}
    assert {i["InstanceType"] for i in insts} == {"t3.micro"}
    for inst in insts:
        assert tags(inst)["Name"] == "Essentia Worker Node"
        assert inst["KeyName"] == cid
        assert script_ok(user_data(ec2, inst["InstanceId"]), cid)
    assert len({i["ReservationId"] for i in insts}) == 1
    (key,) = keys(ec2, cid)
    pem = env.root / ".aws" / f"{key['KeyName']}.pem"
    assert pem.stat().st_mode & 0o777 == 0o600
    assert pem.read_text().startswith("-----BEGIN")
    (group,) = groups(ec2, cid)
    assert {i["SecurityGroups"][0]["GroupId"] for i in insts} == {group["GroupId"]}
    perms = {p["FromPort"]: p for p in group["IpPermissions"]}
    assert [r["CidrIp"] for r in perms[22]["IpRanges"]] == ["127.0.0.1/32"]
    assert not perms[22]["UserIdGroupPairs"]
    engine = [p for port, p in perms.items() if port != 22]
    assert engine, perms
    for p in engine:
        assert [g["GroupId"] for g in p["UserIdGroupPairs"]] == [group["GroupId"]]
        assert [r["CidrIp"] for r in p["IpRanges"]] == ["127.0.0.1/32"]
    for p in group["IpPermissions"]:
        assert all(not r["CidrIp"].endswith("/0") for r in p["IpRanges"]), p
    state = json.loads((env.work_dir / "reservation.json").read_text())
    bucket = state["bucket"]
    assert {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]} == {
        TAG_KEY: cid
    }
    assert sorted(state["reservations"][insts[0]["ReservationId"]]) == sorted(
        i["InstanceId"] for i in insts
    )
    assert state["user"] == "ec2-user" and state["pem"] == str(pem)
    for path in env.work_dir.rglob("*.json"):
        assert "testsecret" not in path.read_text(), path

    # -- the same create again: nothing new
    again = env.ess("cluster", "create", "--number=3", "--type=t3.micro")
    assert again.returncode == 0, again.stderr
    assert len(live(tagged_instances(ec2, cid))) == 3
    assert len(keys(ec2, cid)) == 1 and len(groups(ec2, cid)) == 1

    # -- create --add: a second reservation
    added = env.ess("cluster", "create", "--add", "--number=2")
    assert added.returncode == 0, added.stderr
    insts = live(tagged_instances(ec2, cid))
    assert len(insts) == 5 and len({i["ReservationId"] for i in insts}) == 2

    # -- add: adopt a running instance launched elsewhere
    ami = state["image_id"]
    other = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.nano")
    rid, oid = other["ReservationId"], other["Instances"][0]["InstanceId"]
    adopt = env.ess("cluster", "add", rid)
    assert adopt.returncode in (0, 1), adopt.stderr  # 1: workers not joined (no simulated cloud)
    shown = env.ess("cluster", "status").stdout
    assert oid in shown and rid in shown
    assert states(ec2, cid)[oid] == "running"
    assert env.ess("cluster", "add", "r-doesnotexist").returncode == 5

    # -- remove: detached and untagged, but not stopped
    gone = env.ess("cluster", "remove", rid)
    assert gone.returncode in (0, 1), gone.stderr
    assert oid not in env.ess("cluster", "status").stdout
    assert oid not in states(ec2, cid)
    (o,) = ec2.describe_instances(InstanceIds=[oid])["Reservations"][0]["Instances"]
    assert o["State"]["Name"] == "running" and TAG_KEY not in tags(o)
    ec2.terminate_instances(InstanceIds=[oid])

    # -- stop: every instance stopped, the scheduler daemon too
    assert env.ess("cluster", "stop").returncode == 0
    assert set(states(ec2, cid).values()) == {"stopped"}
    assert not (env.work_dir / "cloud" / "scheduler.pid").exists()
    before = {i: user_data(ec2, i) for i in states(ec2, cid)}

    # -- start: fresh user-data (new presigned URLs), running again
    started = env.ess("cluster", "start")
    assert started.returncode == 0, started.stderr
    assert set(states(ec2, cid).values()) == {"running"}
    for iid, old in before.items():
        new = user_data(ec2, iid)
        assert new != old and script_ok(new, cid)

    # -- status: every node, reservation ids; non-zero while no worker has joined
    status = env.ess("cluster", "status")
    assert status.returncode == 1
    assert status.stdout.startswith(f"Summary for cluster {cid}\n")
    for iid in states(ec2, cid):
        assert iid in status.stdout
        assert f"{iid} is running but its worker has not joined" in status.stderr
    for r in {i["ReservationId"] for i in insts}:
        assert r in status.stdout

    # -- iplist
    private = env.ess("cluster", "iplist", "--private").stdout.split()
    public = env.ess("cluster", "iplist", "--public").stdout.split()
    insts = live(tagged_instances(ec2, cid))
    assert sorted(private) == sorted(i["PrivateIpAddress"] for i in insts)
    assert sorted(public) == sorted(i["PublicIpAddress"] for i in insts)

    # -- terminate: instances gone, key pair, pem, group and bucket kept for the next create
    assert env.ess("cluster", "terminate").returncode == 0
    assert set(states(ec2, cid).values()) == {"terminated"}
    assert len(keys(ec2, cid)) == 1 and len(groups(ec2, cid)) == 1 and pem.exists()
    again = env.ess("cluster", "create", "--number=1")
    assert again.returncode == 0, again.stderr
    assert cluster_id(env) == cid
    (inst,) = live(tagged_instances(ec2, cid))
    assert inst["KeyName"] == key["KeyName"]
    assert inst["SecurityGroups"][0]["GroupId"] == group["GroupId"]

    # -- terminate --all needs a confirmation: no terminal, no -y -> refused, nothing deleted
    refused = env.ess("cluster", "terminate", "--all", input="")
    assert refused.returncode == 2 and "confirm with -y" in refused.stderr
    assert len(live(tagged_instances(ec2, cid))) == 1

    # -- terminate --all -y: nothing tagged with the cluster id remains
    assert env.ess("cluster", "terminate", "--all", "-y").returncode == 0
    assert {i["State"]["Name"] for i in tagged_instances(ec2, cid)} <= {"terminated"}
    assert keys(ec2, cid) == [] and groups(ec2, cid) == []
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert not pem.exists()
    assert not (env.work_dir / "reservation.json").exists()
    assert not (env.work_dir / "cloud").exists()


def script_ok(text: str, cid: str) -> bool:
    return f"ess worker bootstrap: cluster {cid}" in text and "ess.engine.serve worker" in text


def test_legacy_instance_commands(aws_env: EssEnv, moto_endpoint: str) -> None:
    env = cloud_env(aws_env)
    # Credentials from instance.conf's aws_credential, not from the environment.
    del env.env["AWS_ACCESS_KEY_ID"], env.env["AWS_SECRET_ACCESS_KEY"]
    (env.root / "creds.csv").write_text(
        "User Name,Access Key Id,Secret Access Key\nanalyst,AKIATESTKEY,testsecret\n"
    )
    (env.root / "instance.conf").write_text(
        "[EC2]\naws_credential: creds.csv\nuse_private_ip: False\n"
        "instance_tag: Legacy Worker\ninstance_type:  t3.nano\ninstance_count: 2\n"
        "username: ec2-user\n"
    )
    ec2 = client("ec2", moto_endpoint)
    try:
        made = env.ess("instance", "ec2", "create", "--type=t3.small")
        assert made.returncode == 0, made.stderr
        cid = cluster_id(env)
        insts = live(tagged_instances(ec2, cid))
        assert len(insts) == 2  # instance_count
        assert {i["InstanceType"] for i in insts} == {"t3.small"}  # the flag wins
        assert {tags(i)["Name"] for i in insts} == {"Legacy Worker"}
        assert (env.work_dir / ".platform").read_text() == "cloud\n"
        assert "testsecret" not in (env.work_dir / "reservation.json").read_text()
        # later commands reuse the remembered credential file (its path only)
        status = env.ess("cluster", "status")
        assert "showing the last known state" not in status.stderr
        done = env.ess("instance", "ec2", "terminate", "all")
        assert done.returncode == 0, done.stderr
        assert live(tagged_instances(ec2, cid)) == []
        assert keys(ec2, cid) == [] and groups(ec2, cid) == []
        assert env.ess("instance", "ec2", "terminate", "r-123").returncode == 2
    finally:
        env.env.update(AWS_ACCESS_KEY_ID="AKIATESTKEY", AWS_SECRET_ACCESS_KEY="testsecret")
        teardown(env)

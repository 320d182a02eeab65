"""Pure logic of cloud clusters: user-data rendering, the wheel, state reconciliation, settings,
security-group rules and AWS error translation."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import botocore.exceptions
import pytest

from ess.cluster import aws
from ess.cluster.bootstrap import (
    BootConfig,
    build_id,
    build_wheel,
    package_dir,
    render_script,
    render_user_data,
    script_from_user_data,
)
from ess.cluster.ec2 import Ec2Provider
from ess.cluster.ec2_settings import Ec2Settings
from ess.cluster.ec2_state import CloudState, Node, reconcile, shortfall
from ess.errors import ClusterError, ConfigError, CredentialsError
from ess.workspace import Workspace


def boot(**kw: str) -> BootConfig:
    values = dict(
        cluster_id="ess-0a1b2c3d",
        scheduler="tls://10.0.0.5:8786",
        build="0.1.0+abcdef123456",
        wheel_file="ess-0.1.0-py3-none-any.whl",
        wheel_url="https://b.s3.amazonaws.com/w.whl?X-Amz-Signature=abc&x=1",
        ca_url="https://b.s3.amazonaws.com/ca.crt?sig=1",
        cert_url="https://b.s3.amazonaws.com/worker.crt?sig=2",
        key_url="https://b.s3.amazonaws.com/worker.key?sig=3'; rm -rf ~ #",
    )
    values.update(kw)
    return BootConfig(**values)  # type: ignore[arg-type]


def test_user_data_is_cloud_init_multipart_with_every_boot_script() -> None:
    text = render_user_data(boot())
    assert "Content-Type: multipart/mixed" in text
    assert "[scripts-user, always]" in text  # re-runs at every boot: start re-syncs
    script = script_from_user_data(text)
    assert script == render_script(boot())
    assert script.startswith("#!/bin/bash\n")


def test_script_quotes_values_and_is_valid_bash() -> None:
    script = render_script(boot())
    # A hostile URL stays one quoted word.
    assert "'https://b.s3.amazonaws.com/worker.key?sig=3'\"'\"'; rm -rf ~ #'" in script
    assert "umask 077" in script and 'chmod 700 "$BOOT_DIR" "$BOOT_DIR/tls"' in script
    assert "--scheduler '$SCHEDULER'" in script and "SCHEDULER=tls://10.0.0.5:8786" in script
    assert "BEGIN" not in script  # no key material, only URLs that expire
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


def test_script_rejects_bad_ids() -> None:
    with pytest.raises(ValueError):
        render_script(boot(cluster_id="x; reboot"))
    with pytest.raises(ValueError):
        render_script(boot(build="1.0 $(id)"))


def test_wheel_holds_the_package_and_valid_record(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    assert wheel.name.startswith("ess-") and wheel.name.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "ess/__init__.py" in names and "ess/cluster/ec2.py" in names
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        dist = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(f"{dist}/METADATA").decode()
        assert "Name: ess" in metadata and "Requires-Dist: dask" in metadata
        for line in zf.read(f"{dist}/RECORD").decode().splitlines():
            name, digest, _size = line.rsplit(",", 2)
            if not digest:
                continue
            raw = hashlib.sha256(zf.read(name)).digest()
            assert digest == "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_build_id_follows_the_code(tmp_path: Path) -> None:
    copy = tmp_path / "ess"
    shutil.copytree(package_dir(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    first = build_id(copy)
    assert first == build_id(copy)
    assert first.split("+")[0] == build_id().split("+")[0]
    (copy / "cluster" / "ec2.py").write_text((copy / "cluster" / "ec2.py").read_text() + "#\n")
    assert build_id(copy) != first


def node(i: str, state: str = "running", res: str = "r-1", launched: str = "") -> Node:
    return Node(instance_id=i, reservation=res, state=state, launched=launched or i)


def test_reconcile_adopts_tagged_and_drops_vanished() -> None:
    st = CloudState(id="ess-1", region="us-east-1", target=3).with_nodes(
        [node("i-a"), node("i-b"), node("i-c")]
    )
    described = [
        node("i-a", "stopped"),
        node("i-c", "terminated"),
        node("i-d", "pending", res="r-2"),  # launched by an interrupted create
        node("i-e", "terminated", res="r-2"),  # dead and unknown: ignored
    ]
    rec = reconcile(st, described)
    assert [(n.instance_id, n.state) for n in rec.state.nodes] == [
        ("i-a", "stopped"),
        ("i-d", "pending"),
    ]
    assert rec.adopted == ("i-d",) and rec.vanished == ("i-b", "i-c")
    assert shortfall(rec.state) == 1
    assert rec.state.reservations() == {"r-1": ["i-a"], "r-2": ["i-d"]}


def test_state_file_round_trip_has_no_secrets(tmp_path: Path) -> None:
    st = CloudState(id="ess-1", region="us-east-1", pem="/x/ess-1.pem", target=1).with_nodes(
        [Node("i-a", "r-1", "running", "10.0.0.1", "54.0.0.1", "t")]
    )
    data = st.to_json()
    assert data["ip_list"] == ["10.0.0.1"] and data["reservations"] == {"r-1": ["i-a"]}
    assert not {"secret", "secret_key", "access_key", "aws_secret_access_key"} & set(data)
    again = CloudState.from_json(json.loads(json.dumps(data)), path=tmp_path / "r.json")
    assert again == st
    with pytest.raises(ConfigError):
        CloudState.from_json({"id": "x", "ip_list": []}, path=tmp_path / "r.json")


def test_instance_conf(tmp_path: Path) -> None:
    conf = tmp_path / "instance.conf"
    conf.write_text(
        "[EC2]\naws_credential: creds.csv\nuse_private_ip: False\n"
        "instance_tag: Essentia Worker Node\ninstance_type:  m3.medium\ninstance_count: 2\n"
        "key_name: pem_file\nsecurity_groups: essentia-access\nusername: ec2-user\n"
    )
    s = Ec2Settings().with_instance_conf(conf)
    assert s.credentials_file == tmp_path / "creds.csv"
    assert (s.instance_type, s.instance_count, s.key_name, s.group_name) == (
        "m3.medium",
        2,
        "pem_file",
        "essentia-access",
    )
    assert s.use_private_ip is False and s.user == "ec2-user"
    conf.write_text("[EC2]\ninstance_count: many\n")
    with pytest.raises(ConfigError, match="instance_count"):
        Ec2Settings().with_instance_conf(conf)


def test_security_group_rules_never_open_to_the_world(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / ".conf", tmp_path / ".ess", tmp_path / ".aws")
    st = CloudState(
        id="ess-1", region="us-east-1", security_group="sg-1", scheduler_host="10.0.0.5"
    )
    rules = Ec2Provider(ws, settings=Ec2Settings(ssh_cidr="203.0.113.7/32")).ingress_rules(st)
    ssh = [r for r in rules if r["FromPort"] == 22]
    assert ssh[0]["IpRanges"][0]["CidrIp"] == "203.0.113.7/32"
    engine = [r for r in rules if r["FromPort"] != 22]
    assert {r["FromPort"] for r in engine} == {8786, 8787}
    for r in engine:
        assert r["UserIdGroupPairs"][0]["GroupId"] == "sg-1"
        assert r["IpRanges"] == [{"CidrIp": "10.0.0.5/32", "Description": "the ess master"}]
    with pytest.raises(ClusterError, match="world"):
        Ec2Provider(ws, settings=Ec2Settings(ssh_cidr="0.0.0.0/0")).ingress_rules(st)


def client_error(code: str) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": "m"}}, "RunInstances"
    )


def test_aws_errors_translation() -> None:
    with pytest.raises(CredentialsError, match="rejected the credentials"), aws.aws_errors("x"):
        raise client_error("AuthFailure")
    with pytest.raises(CredentialsError, match="no AWS credentials"), aws.aws_errors("x"):
        raise botocore.exceptions.NoCredentialsError()
    limit = pytest.raises(ClusterError, match="launching: InstanceLimitExceeded")
    with limit, aws.aws_errors("launching"):
        raise client_error("InstanceLimitExceeded")


def test_credentials_from_csv_and_flags(tmp_path: Path) -> None:
    from ess.cluster.provider import CloudAuth

    csv = tmp_path / "c.csv"
    csv.write_text("User Name,Access Key Id,Secret Access Key\nu,AKIAX,s3cr3t\n")
    assert aws.resolve_credentials(CloudAuth(credentials_file=csv)) == ("AKIAX", "s3cr3t")
    assert aws.resolve_credentials(CloudAuth(access_key="A", secret_key="B")) == ("A", "B")
    assert aws.resolve_credentials(CloudAuth()) is None
    with pytest.raises(CredentialsError):
        aws.resolve_credentials(CloudAuth(access_key="A"))
    assert "s3cr3t" not in repr(CloudAuth(access_key="A", secret_key="s3cr3t"))

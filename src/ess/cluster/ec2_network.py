"""The network side of a cloud cluster: its key pair, its security group, the master's address.

Every function takes the EC2 client and the cluster state and returns the new state; nothing
here launches an instance (:mod:`ess.cluster.ec2_instances`) or touches the scheduler.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

from ess.cluster import aws
from ess.cluster.ec2_settings import Ec2Settings
from ess.cluster.ec2_state import TAG_KEY, CloudState
from ess.errors import ClusterError
from ess.workspace import write_secret

#: Bounded retries of DeleteSecurityGroup while terminated instances still hold the group.
SG_DELETE_ATTEMPTS = 40
SG_DELETE_DELAY = 3.0


# -- key pair ----------------------------------------------------------------------------------
def ensure_key_pair(
    ec2: Any, state: CloudState, *, settings: Ec2Settings, aws_dir: Path
) -> CloudState:
    name = state.key_name or settings.key_name or state.id
    pem = aws_dir / f"{name}.pem"
    with aws.aws_errors(f"looking up key pair {name}"):
        found = ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [name]}])["KeyPairs"]
    if found:
        owned = any(t.get("Key") == TAG_KEY for t in found[0].get("Tags", []))
        if owned and not pem.exists():
            # An interrupted create made the key but never wrote the pem: start over.
            with aws.aws_errors(f"replacing key pair {name}"):
                ec2.delete_key_pair(KeyName=name)
            found = []
        else:
            return replace(state, key_name=name, key_owned=owned, pem=str(pem))
    with aws.aws_errors(f"creating key pair {name}"):
        made = ec2.create_key_pair(
            KeyName=name, TagSpecifications=[aws.tag_spec("key-pair", state.id)]
        )
    write_secret(pem, str(made["KeyMaterial"]).encode())
    return replace(state, key_name=name, key_owned=True, pem=str(pem))


def delete_key_pair(ec2: Any, state: CloudState) -> None:
    """The key pair ess made, and its pem."""
    if not (state.key_name and state.key_owned):
        return
    with aws.aws_errors(f"deleting key pair {state.key_name}"):
        ec2.delete_key_pair(KeyName=state.key_name)
    if state.pem:
        pem = Path(state.pem)
        for path in (pem, pem.with_name(f".{pem.name}.lock")):
            path.unlink(missing_ok=True)


# -- security group ----------------------------------------------------------------------------
def ensure_security_group(ec2: Any, state: CloudState, *, settings: Ec2Settings) -> CloudState:
    name = settings.group_name or state.id
    filters = [{"Name": "group-name", "Values": [name]}]
    vpc = _vpc(ec2, settings)
    if vpc:
        filters.append({"Name": "vpc-id", "Values": [vpc]})
    with aws.aws_errors(f"looking up security group {name}"):
        found = ec2.describe_security_groups(Filters=filters)["SecurityGroups"]
    if found:
        group = found[0]["GroupId"]
        owned = any(t.get("Key") == TAG_KEY for t in found[0].get("Tags", []))
    else:
        kwargs: dict[str, Any] = {
            "GroupName": name,
            "Description": f"ess cluster {state.id}: SSH from the master, engine inside",
            "TagSpecifications": [aws.tag_spec("security-group", state.id)],
        }
        if vpc:
            kwargs["VpcId"] = vpc
        with aws.aws_errors(f"creating security group {name}"):
            group = ec2.create_security_group(**kwargs)["GroupId"]
        owned = True
    state = replace(state, security_group=str(group), group_owned=owned)
    if owned:
        _authorize(ec2, state, settings)
    return state


def _vpc(ec2: Any, settings: Ec2Settings) -> str | None:
    if not settings.subnet_id:
        return None
    with aws.aws_errors(f"looking up subnet {settings.subnet_id}"):
        subnets = ec2.describe_subnets(SubnetIds=[settings.subnet_id])["Subnets"]
    return str(subnets[0]["VpcId"]) if subnets else None


def ingress_rules(state: CloudState, settings: Ec2Settings) -> list[dict[str, Any]]:
    """SSH from the master only; the engine's ports from the group and the master only."""
    ssh = settings.ssh_cidr or master_public_cidr(state.scheduler_host)
    master = f"{state.scheduler_host}/32"
    rules: list[dict[str, Any]] = [
        {
            "IpProtocol": "tcp",
            "FromPort": 22,
            "ToPort": 22,
            "IpRanges": [{"CidrIp": ssh, "Description": "SSH from the ess master"}],
        }
    ]
    for port in sorted({state.scheduler_port, settings.worker_port}):
        rules.append(
            {
                "IpProtocol": "tcp",
                "FromPort": port,
                "ToPort": port,
                "UserIdGroupPairs": [
                    {"GroupId": state.security_group, "Description": "ess cluster members"}
                ],
                "IpRanges": [{"CidrIp": master, "Description": "the ess master"}],
            }
        )
    for rule in rules:
        for r in rule.get("IpRanges", []):
            if r["CidrIp"].endswith("/0"):
                raise ClusterError(f"refusing to open port {rule['FromPort']} to the world")
    return rules


def _authorize(ec2: Any, state: CloudState, settings: Ec2Settings) -> None:
    import botocore.exceptions

    for rule in ingress_rules(state, settings):
        try:
            ec2.authorize_security_group_ingress(GroupId=state.security_group, IpPermissions=[rule])
        except botocore.exceptions.ClientError as exc:
            if aws.error_code(exc) != "InvalidPermission.Duplicate":
                with aws.aws_errors(f"opening ports in {state.security_group}"):
                    raise


def delete_group(ec2: Any, group_id: str) -> None:
    import botocore.exceptions

    for attempt in range(SG_DELETE_ATTEMPTS):
        try:
            ec2.delete_security_group(GroupId=group_id)
            return
        except botocore.exceptions.ClientError as exc:
            code = aws.error_code(exc)
            if code == "InvalidGroup.NotFound":
                return
            if code != "DependencyViolation" or attempt == SG_DELETE_ATTEMPTS - 1:
                with aws.aws_errors(f"deleting security group {group_id}"):
                    raise
        time.sleep(SG_DELETE_DELAY)


# -- the master's addresses --------------------------------------------------------------------
def _imds(path: str) -> str | None:
    """Instance metadata (IMDSv2) of the master when it runs on EC2, else None."""
    if os.environ.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
        return None
    base = "http://169.254.169.254/latest"
    try:
        req = urllib.request.Request(
            f"{base}/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
        )
        with urllib.request.urlopen(req, timeout=1) as r:
            token = r.read().decode()
        req = urllib.request.Request(
            f"{base}/meta-data/{path}", headers={"X-aws-ec2-metadata-token": token}
        )
        with urllib.request.urlopen(req, timeout=1) as r:
            return str(r.read().decode().strip()) or None
    except OSError:
        return None


def master_private_ip() -> str:
    ip = _imds("local-ipv4")
    if ip:
        return ip
    # The address this machine would use to reach a private network (no packet is sent).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def master_public_cidr(fallback: str) -> str:
    return f"{_imds('public-ipv4') or fallback}/32"

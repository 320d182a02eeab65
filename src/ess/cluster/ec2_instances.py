"""The instances of a cloud cluster: find them by tag, launch, start, and wait for their end.

Plain functions over the EC2 client; the provider (:mod:`ess.cluster.ec2`) decides when.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ess.cluster import aws
from ess.cluster.ec2_settings import Ec2Settings
from ess.cluster.ec2_state import TAG_KEY, CloudState, Node, node_from_ec2
from ess.errors import ClusterError, CredentialsError


@dataclass(frozen=True)
class LaunchReport:
    launched: int
    errors: tuple[str, ...]


def describe(ec2: Any, cluster_id: str) -> list[Node]:
    """Every instance tagged with the cluster's id, whatever its state."""
    nodes: list[Node] = []
    with aws.aws_errors("describing the cluster's instances"):
        pages = ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": f"tag:{TAG_KEY}", "Values": [cluster_id]}]
        )
        for page in pages:
            for res in page.get("Reservations", []):
                for inst in res.get("Instances", []):
                    nodes.append(node_from_ec2(inst, res["ReservationId"]))
    return nodes


def launch(
    ec2: Any,
    state: CloudState,
    count: int,
    user_data: str,
    on_batch: Callable[[list[Node]], None],
    *,
    settings: Ec2Settings,
) -> LaunchReport:
    """``count`` instances in batched RunInstances calls made in parallel; ``on_batch`` records
    each batch as it comes (from the launch threads)."""
    size = settings.batch_size
    batches = [min(size, count - i) for i in range(0, count, size)]
    base: dict[str, Any] = {
        "ImageId": state.image_id,
        "InstanceType": state.instance_type,
        "KeyName": state.key_name,
        "SecurityGroupIds": [state.security_group],
        "UserData": user_data,
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
        "TagSpecifications": [
            aws.tag_spec("instance", state.id, Name=state.name_tag),
            aws.tag_spec("volume", state.id),
        ],
    }
    if settings.subnet_id:
        base["SubnetId"] = settings.subnet_id
    if settings.instance_profile:
        key = "Arn" if settings.instance_profile.startswith("arn:") else "Name"
        base["IamInstanceProfile"] = {key: settings.instance_profile}

    def one(n: int) -> list[Node]:
        with aws.aws_errors(f"launching {n} {state.instance_type} instances"):
            res = ec2.run_instances(MinCount=n, MaxCount=n, **base)
        nodes = [node_from_ec2(i, res["ReservationId"]) for i in res["Instances"]]
        on_batch(nodes)
        return nodes

    launched, errors = 0, []
    with ThreadPoolExecutor(max_workers=min(8, len(batches) or 1)) as pool:
        futures = [pool.submit(one, n) for n in batches]
        for fut in futures:
            try:
                launched += len(fut.result())
            except CredentialsError:
                raise
            except ClusterError as exc:
                errors.append(str(exc))
    return LaunchReport(launched=launched, errors=tuple(dict.fromkeys(errors)))


def start(ec2: Any, instance_ids: list[str], user_data: str) -> None:
    """Give stopped instances fresh user-data (this build, new URLs), then start them."""
    encoded = base64.b64encode(user_data.encode())

    def modify(instance_id: str) -> None:
        with aws.aws_errors(f"updating the user-data of {instance_id}"):
            # Unlike RunInstances, boto3 does not base64 the user-data of
            # ModifyInstanceAttribute for us; EC2 wants it encoded.
            ec2.modify_instance_attribute(InstanceId=instance_id, UserData={"Value": encoded})

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(modify, instance_ids))
    with aws.aws_errors(f"starting {len(instance_ids)} instances"):
        ec2.start_instances(InstanceIds=instance_ids)


def wait_terminated(ec2: Any, ids: list[str], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with aws.aws_errors("waiting for the instances to terminate"):
            pages = ec2.get_paginator("describe_instances").paginate(InstanceIds=ids)
            states = [
                i["State"]["Name"]
                for page in pages
                for r in page["Reservations"]
                for i in r["Instances"]
            ]
        if all(s == "terminated" for s in states):
            return
        time.sleep(2)


def running_in(ec2: Any, reservations: list[str]) -> list[Node]:
    """The pending or running instances of these reservations (``ess cluster add``)."""
    with aws.aws_errors("looking up the reservations"):
        # Filtered here rather than with a "reservation-id" filter, which not every
        # EC2 implementation (moto) supports.
        pages = ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
        )
        found = [
            (r["ReservationId"], i)
            for page in pages
            for r in page["Reservations"]
            if r["ReservationId"] in reservations
            for i in r["Instances"]
        ]
    missing = sorted(set(reservations) - {r for r, _ in found})
    if missing:
        raise ClusterError(f"no running instances in reservation {', '.join(missing)}")
    return [node_from_ec2(i, r) for r, i in found]


def adopt(ec2: Any, ids: list[str], cluster_id: str) -> None:
    """Tag instances ``ess cluster add`` takes into the cluster."""
    with aws.aws_errors("tagging the adopted instances"):
        ec2.create_tags(Resources=ids, Tags=aws.tags(cluster_id, **{"ess:adopted": "true"}))


def release(ec2: Any, ids: list[str], cluster_id: str) -> None:
    """Untag instances ``ess cluster remove`` lets go (they keep running, marked detached)."""
    with aws.aws_errors("untagging the removed instances"):
        ec2.delete_tags(Resources=ids, Tags=[{"Key": TAG_KEY}])
        ec2.create_tags(Resources=ids, Tags=[{"Key": "ess:detached", "Value": cluster_id}])

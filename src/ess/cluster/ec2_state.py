"""The state of a cloud cluster in ``<ESS_WORK_DIR>/reservation.json``, and its reconciliation
against what EC2 reports.

The file keeps the custom-cluster keys of the spec (``id``, ``pem``, ``user``, ``ip_list``) and
adds the cloud ones: reservation ids and their instance ids, the key pair, security group and
bootstrap bucket, the scheduler's address and the target size. No credentials, ever.

EC2 is the truth about instances; the file is the memory of what ess made. Every resource
carries the tag ``ess:cluster=<id>``, so :func:`reconcile` can pick up instances an interrupted
create launched before it could write the file, and drop instances that were terminated behind
ess's back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ess.errors import ConfigError

TAG_KEY = "ess:cluster"
#: EC2 states of an instance that still exists (and counts towards the cluster's size).
LIVE_STATES = frozenset({"pending", "running", "stopping", "stopped"})
GONE_STATES = frozenset({"shutting-down", "terminated"})


@dataclass(frozen=True)
class Node:
    instance_id: str
    reservation: str
    state: str
    private_ip: str = ""
    public_ip: str = ""
    launched: str = ""  # ISO time, orders the workers stably

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


@dataclass(frozen=True)
class CloudState:
    id: str
    region: str
    target: int = 0
    instance_type: str = "t3.medium"
    image_id: str = ""
    user: str = "ec2-user"
    name_tag: str = "Essentia Worker Node"
    key_name: str = ""
    key_owned: bool = True  # False: a key pair named in instance.conf that ess did not create
    pem: str = ""
    security_group: str = ""
    group_owned: bool = True
    bucket: str = ""
    #: Path of the credential CSV given to create (never its content), reused by later commands.
    credentials_file: str = ""
    build: str = ""  # the ess build the workers were last given
    scheduler_host: str = ""
    scheduler_port: int = 8786
    stopped: bool = False
    use_private_ip: bool = True
    nodes: tuple[Node, ...] = field(default_factory=tuple)

    # -- views ---------------------------------------------------------------------------------
    def live_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.live]

    def node(self, instance_id: str) -> Node | None:
        return next((n for n in self.nodes if n.instance_id == instance_id), None)

    def reservations(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for n in self.nodes:
            out.setdefault(n.reservation, []).append(n.instance_id)
        return out

    def with_nodes(self, nodes: Iterable[Node]) -> CloudState:
        return replace(self, nodes=tuple(sort_nodes(nodes)))

    # -- file format ---------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["nodes"] = [asdict(n) for n in self.nodes]
        data["platform"] = "cloud"
        # The keys of the custom-cluster format, for tools that read reservation.json.
        data["reservations"] = self.reservations()
        data["ip_list"] = [
            (n.private_ip if self.use_private_ip else n.public_ip) or n.private_ip
            for n in self.nodes
            if n.state == "running"
        ]
        return data

    @classmethod
    def from_json(cls, data: Any, *, path: Path) -> CloudState:
        if not isinstance(data, dict) or data.get("platform") != "cloud":
            raise ConfigError(f"{path}: not a cloud cluster state file")
        try:
            nodes = tuple(Node(**n) for n in data.get("nodes", []))
            known = {f for f in cls.__dataclass_fields__ if f != "nodes"}
            values = {k: v for k, v in data.items() if k in known}
            return cls(**values, nodes=nodes)
        except TypeError as exc:
            raise ConfigError(f"{path}: corrupt cloud cluster state ({exc})") from exc


def sort_nodes(nodes: Iterable[Node]) -> list[Node]:
    return sorted(nodes, key=lambda n: (n.launched, n.instance_id))


def node_from_ec2(instance: dict[str, Any], reservation: str) -> Node:
    """A :class:`Node` from one ``Instances`` entry of DescribeInstances/RunInstances."""
    launched = instance.get("LaunchTime")
    return Node(
        instance_id=str(instance["InstanceId"]),
        reservation=reservation,
        state=str(instance.get("State", {}).get("Name", "pending")),
        private_ip=str(instance.get("PrivateIpAddress") or ""),
        public_ip=str(instance.get("PublicIpAddress") or ""),
        launched=launched.isoformat()
        if launched is not None and hasattr(launched, "isoformat")
        else str(launched or ""),
    )


@dataclass(frozen=True)
class Reconciled:
    state: CloudState
    adopted: tuple[str, ...]  # tagged instances the file did not know (interrupted create)
    vanished: tuple[str, ...]  # instances of the file that EC2 no longer has (or terminated)


def reconcile(state: CloudState, described: Iterable[Node]) -> Reconciled:
    """Merge what EC2 reports about the cluster's tagged instances into ``state``.

    ``described`` are the instances carrying the cluster tag, in any state. Known instances take
    EC2's state and addresses; unknown live ones are added; instances EC2 reports as gone, or
    does not report at all, are dropped.
    """
    seen = {n.instance_id: n for n in described}
    nodes: list[Node] = []
    vanished: list[str] = []
    for old in state.nodes:
        new = seen.pop(old.instance_id, None)
        if new is None or new.state in GONE_STATES:
            vanished.append(old.instance_id)
            continue
        nodes.append(replace(new, reservation=new.reservation or old.reservation))
    adopted = [n for n in seen.values() if n.live]
    nodes.extend(adopted)
    return Reconciled(
        state=state.with_nodes(nodes),
        adopted=tuple(sorted(n.instance_id for n in adopted)),
        vanished=tuple(sorted(vanished)),
    )


def shortfall(state: CloudState) -> int:
    """How many instances a (re-run) create still has to launch."""
    return max(0, state.target - len(state.live_nodes()))

"""Settings of cloud clusters: environment variables, and the legacy ``instance.conf``.

Environment (all optional):

==========================  ===================================================================
``ESS_EC2_AMI``             image of the workers (default: latest Amazon Linux 2023 via SSM)
``ESS_EC2_SUBNET``          subnet to launch into (default: the default VPC)
``ESS_EC2_INSTANCE_PROFILE`` IAM instance profile (name or ARN) for the workers (S3 access)
``ESS_EC2_SSH_CIDR``        who may SSH to the workers (default: the master's public IP /32)
``ESS_EC2_SCHEDULER_HOST``  the master address workers dial (default: its private IP)
``ESS_EC2_SCHEDULER_PORT``  the scheduler's port (default 8786)
``ESS_EC2_WORKER_PORT``     the workers' port (default 8787)
``ESS_EC2_JOIN_TIMEOUT``    seconds create/start wait for workers to join (default 900; 0: no wait)
``ESS_EC2_URL_TTL``         lifetime of the presigned bootstrap URLs in seconds (default 3600)
``ESS_EC2_BATCH``           instances per RunInstances call (default 25)
==========================  ===================================================================
"""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass, replace
from pathlib import Path

from ess.cluster.bootstrap import WORKER_PORT
from ess.errors import ConfigError

DEFAULT_TYPE = "t3.medium"
DEFAULT_COUNT = 2
DEFAULT_USER = "ec2-user"
DEFAULT_NAME_TAG = "Essentia Worker Node"
AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"


@dataclass(frozen=True)
class Ec2Settings:
    image_id: str | None = None
    subnet_id: str | None = None
    instance_profile: str | None = None
    ssh_cidr: str | None = None
    scheduler_host: str | None = None
    scheduler_port: int = 8786
    worker_port: int = WORKER_PORT
    join_timeout: float = 900.0
    url_ttl: int = 3600
    batch_size: int = 25
    # instance.conf ([EC2]) values; command-line flags win over them
    instance_type: str = DEFAULT_TYPE
    instance_count: int = DEFAULT_COUNT
    name_tag: str = DEFAULT_NAME_TAG
    user: str = DEFAULT_USER
    use_private_ip: bool = True
    key_name: str | None = None  # use/create this key pair instead of one per cluster
    group_name: str | None = None  # use/create this security group instead of one per cluster
    credentials_file: Path | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Ec2Settings:
        env = os.environ if environ is None else environ

        def number(name: str, default: float) -> float:
            raw = env.get(name)
            if not raw:
                return default
            try:
                return float(raw)
            except ValueError:
                raise ConfigError(f"{name}={raw!r}: expected a number") from None

        return cls(
            image_id=env.get("ESS_EC2_AMI") or None,
            subnet_id=env.get("ESS_EC2_SUBNET") or None,
            instance_profile=env.get("ESS_EC2_INSTANCE_PROFILE") or None,
            ssh_cidr=env.get("ESS_EC2_SSH_CIDR") or None,
            scheduler_host=env.get("ESS_EC2_SCHEDULER_HOST") or None,
            scheduler_port=int(number("ESS_EC2_SCHEDULER_PORT", 8786)),
            worker_port=int(number("ESS_EC2_WORKER_PORT", WORKER_PORT)),
            join_timeout=number("ESS_EC2_JOIN_TIMEOUT", 900.0),
            url_ttl=int(number("ESS_EC2_URL_TTL", 3600)),
            batch_size=max(1, int(number("ESS_EC2_BATCH", 25))),
        )

    def with_instance_conf(self, path: Path) -> Ec2Settings:
        """Apply the ``[EC2]`` section of a legacy ``instance.conf`` (spec 2.12)."""
        parser = configparser.ConfigParser()
        try:
            with open(path, encoding="utf-8") as f:
                parser.read_file(f)
        except OSError as exc:
            raise ConfigError(f"{path}: {exc.strerror or exc}") from exc
        except configparser.Error as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        if not parser.has_section("EC2"):
            raise ConfigError(f"{path}: no [EC2] section")
        sec = parser["EC2"]
        base = path.parent

        def opt(key: str) -> str | None:
            value = sec.get(key, "").strip()
            return value or None

        changes: dict[str, object] = {}
        if cred := opt("aws_credential"):
            cred_path = Path(cred).expanduser()
            changes["credentials_file"] = cred_path if cred_path.is_absolute() else base / cred
        if (flag := opt("use_private_ip")) is not None:
            try:
                changes["use_private_ip"] = sec.getboolean("use_private_ip")
            except ValueError:
                raise ConfigError(
                    f"{path}: use_private_ip={flag!r}: expected True or False"
                ) from None
        if tag := opt("instance_tag"):
            changes["name_tag"] = tag
        if itype := opt("instance_type"):
            changes["instance_type"] = itype
        if (count := opt("instance_count")) is not None:
            if not count.isdigit() or int(count) < 1:
                raise ConfigError(f"{path}: instance_count={count!r}: expected a positive number")
            changes["instance_count"] = int(count)
        if key := opt("key_name"):
            changes["key_name"] = key.removesuffix(".pem")
        if group := opt("security_groups"):
            changes["group_name"] = group
        if user := opt("username"):
            changes["user"] = user
        return replace(self, **changes)  # type: ignore[arg-type]

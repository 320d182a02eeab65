"""Cloud clusters: EC2 worker instances around a TLS Dask scheduler on the master.

What ``create`` makes, each tagged ``ess:cluster=<id>`` at creation (``TagSpecifications``, so
an interrupted create never leaves an untagged resource): a key pair (pem in ``ESS_AWS_DIR``,
0600), a security group (SSH from the master's address only; the engine ports from the group
itself and the master's address only; never 0.0.0.0/0), a private S3 bucket holding the
bootstrap files (the wheel of this build, the CA certificate and the worker's certificate and
key, handed to instances as presigned URLs that expire), and the instances, launched in batched
RunInstances calls made in parallel, whose user-data (:mod:`ess.cluster.bootstrap`) installs
this exact build and starts a worker that dials the master's scheduler.

Create is resumable: the state file records the cluster id and target size before anything is
launched, and every step finds what exists (by name and tag) before making anything, so a
re-run creates only the shortfall and starts stopped nodes.

State lives in ``<ESS_WORK_DIR>/reservation.json`` (:mod:`ess.cluster.ec2_state`) and
``<ESS_WORK_DIR>/cloud/`` (TLS material, scheduler pid/log, wheel cache).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ess.cluster import aws
from ess.cluster.bootstrap import BootConfig, build_id, build_wheel, render_user_data
from ess.cluster.ec2_settings import AMI_PARAMETER, Ec2Settings
from ess.cluster.ec2_state import (
    GONE_STATES,
    TAG_KEY,
    CloudState,
    Node,
    node_from_ec2,
    reconcile,
    shortfall,
)
from ess.cluster.provider import (
    CloudAuth,
    ClusterProvider,
    ClusterStatus,
    Connection,
    CreateOptions,
    NodeStatus,
    register_provider,
)
from ess.engine import daemon
from ess.engine.security import TlsFiles, create_tls
from ess.errors import ClusterError, CredentialsError
from ess.workspace import Workspace, locked, read_json, write_json_atomic, write_secret

SCHEDULER_START_TIMEOUT = 60.0
#: Bounded retries of DeleteSecurityGroup while terminated instances still hold the group.
SG_DELETE_ATTEMPTS = 40
SG_DELETE_DELAY = 3.0


@dataclass(frozen=True)
class LaunchReport:
    launched: int
    errors: tuple[str, ...]


@register_provider
class Ec2Provider(ClusterProvider):
    platform = "cloud"

    def __init__(
        self,
        ws: Workspace,
        *,
        client_factory: aws.ClientFactory | None = None,
        settings: Ec2Settings | None = None,
    ) -> None:
        super().__init__(ws)
        self._client_factory = client_factory
        self.settings = settings or Ec2Settings.from_env()

    # -- files ---------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.ws.work_dir / "reservation.json"

    @property
    def directory(self) -> Path:
        return (self.ws.work_dir / "cloud").resolve()

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles(self.directory / "tls")

    @property
    def address_file(self) -> Path:
        return self.directory / "scheduler.address"

    def load_state(self) -> CloudState | None:
        data = read_json(self.state_file)
        if data is None:
            return None
        return CloudState.from_json(data, path=self.state_file)

    def save(self, state: CloudState) -> None:
        write_json_atomic(self.state_file, state.to_json())

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with locked(self.directory / "cluster"):
            yield

    def _require_state(self) -> CloudState:
        state = self.load_state()
        if state is None:
            raise ClusterError(
                "no cloud cluster here; create one with 'ess cluster create --number N --type TYPE'"
            )
        return state

    # -- AWS -----------------------------------------------------------------------------------
    def _clients(self, auth: CloudAuth, state: CloudState | None = None) -> aws.ClientFactory:
        if self._client_factory is not None:
            return self._client_factory
        if not (auth.credentials_file or auth.access_key or auth.secret_key):
            remembered = (state.credentials_file if state else "") or self.settings.credentials_file
            if remembered:
                auth = CloudAuth(credentials_file=Path(remembered))
        return aws.session_factory(auth, region_name=state.region if state else None)

    def _describe(self, ec2: Any, cluster_id: str) -> list[Node]:
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

    def _refresh(self, ec2: Any, state: CloudState) -> tuple[CloudState, list[str]]:
        rec = reconcile(state, self._describe(ec2, state.id))
        notes = [f"{i} is gone from EC2 (terminated outside ess); dropped" for i in rec.vanished]
        return rec.state, notes

    def _image(self, factory: aws.ClientFactory) -> str:
        if self.settings.image_id:
            return self.settings.image_id
        with aws.aws_errors(f"looking up the worker image ({AMI_PARAMETER})"):
            value = factory("ssm").get_parameter(Name=AMI_PARAMETER)["Parameter"]["Value"]
        return str(value)

    def _ensure_key_pair(self, ec2: Any, state: CloudState) -> CloudState:
        name = state.key_name or self.settings.key_name or state.id
        pem = self.ws.aws_dir / f"{name}.pem"
        with aws.aws_errors(f"looking up key pair {name}"):
            found = ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [name]}])[
                "KeyPairs"
            ]
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

    def _ensure_security_group(self, ec2: Any, state: CloudState) -> CloudState:
        name = self.settings.group_name or state.id
        filters = [{"Name": "group-name", "Values": [name]}]
        vpc = self._vpc(ec2)
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
            self._authorize(ec2, state)
        return state

    def _vpc(self, ec2: Any) -> str | None:
        if not self.settings.subnet_id:
            return None
        with aws.aws_errors(f"looking up subnet {self.settings.subnet_id}"):
            subnets = ec2.describe_subnets(SubnetIds=[self.settings.subnet_id])["Subnets"]
        return str(subnets[0]["VpcId"]) if subnets else None

    def ingress_rules(self, state: CloudState) -> list[dict[str, Any]]:
        """SSH from the master only; the engine's ports from the group and the master only."""
        ssh = self.settings.ssh_cidr or _master_public_cidr(state.scheduler_host)
        master = f"{state.scheduler_host}/32"
        rules: list[dict[str, Any]] = [
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": ssh, "Description": "SSH from the ess master"}],
            }
        ]
        for port in sorted({state.scheduler_port, self.settings.worker_port}):
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

    def _authorize(self, ec2: Any, state: CloudState) -> None:
        import botocore.exceptions

        for rule in self.ingress_rules(state):
            try:
                ec2.authorize_security_group_ingress(
                    GroupId=state.security_group, IpPermissions=[rule]
                )
            except botocore.exceptions.ClientError as exc:
                if aws.error_code(exc) != "InvalidPermission.Duplicate":
                    with aws.aws_errors(f"opening ports in {state.security_group}"):
                        raise

    def _ensure_bucket(self, s3: Any, state: CloudState) -> None:
        import botocore.exceptions

        try:
            s3.head_bucket(Bucket=state.bucket)
            return
        except botocore.exceptions.ClientError as exc:
            if aws.error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                with aws.aws_errors(f"checking bucket {state.bucket}"):
                    raise
        kwargs: dict[str, Any] = {"Bucket": state.bucket}
        if state.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": state.region}
        with aws.aws_errors(f"creating bootstrap bucket {state.bucket}"):
            s3.create_bucket(**kwargs)
            s3.put_bucket_tagging(Bucket=state.bucket, Tagging={"TagSet": aws.tags(state.id)})
            s3.put_public_access_block(
                Bucket=state.bucket,
                PublicAccessBlockConfiguration={
                    "BlockPublicAcls": True,
                    "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True,
                    "RestrictPublicBuckets": True,
                },
            )

    def _boot_config(self, factory: aws.ClientFactory, state: CloudState) -> BootConfig:
        """Upload this build and the worker's TLS material; presigned URLs for the user-data."""
        s3 = factory("s3")
        self._ensure_bucket(s3, state)
        build = build_id()
        wheel = build_wheel(self.directory / "wheels" / build)
        prefix = f"{state.id}/{build}"
        objects = {
            "wheel": (f"{prefix}/{wheel.name}", wheel),
            "ca": (f"{prefix}/tls/ca.crt", self.tls.ca_cert),
            "cert": (f"{prefix}/tls/worker.crt", self.tls.cert("worker")),
            "key": (f"{prefix}/tls/worker.key", self.tls.key("worker")),
        }
        urls: dict[str, str] = {}
        with aws.aws_errors(f"uploading the bootstrap files to s3://{state.bucket}"):
            for name, (key, path) in objects.items():
                s3.put_object(
                    Bucket=state.bucket,
                    Key=key,
                    Body=path.read_bytes(),
                    ServerSideEncryption="AES256",
                    Tagging=f"{TAG_KEY}={state.id}",
                )
                urls[name] = s3.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": state.bucket, "Key": key},
                    ExpiresIn=self.settings.url_ttl,
                )
        return BootConfig(
            cluster_id=state.id,
            scheduler=f"tls://{_host_port(state.scheduler_host, state.scheduler_port)}",
            build=build,
            wheel_file=wheel.name,
            wheel_url=urls["wheel"],
            ca_url=urls["ca"],
            cert_url=urls["cert"],
            key_url=urls["key"],
            worker_port=self.settings.worker_port,
        )

    def _launch(
        self,
        ec2: Any,
        state: CloudState,
        count: int,
        user_data: str,
        on_batch: Callable[[list[Node]], None],
    ) -> LaunchReport:
        size = self.settings.batch_size
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
        if self.settings.subnet_id:
            base["SubnetId"] = self.settings.subnet_id
        if self.settings.instance_profile:
            key = "Arn" if self.settings.instance_profile.startswith("arn:") else "Name"
            base["IamInstanceProfile"] = {key: self.settings.instance_profile}

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

    # -- the scheduler on the master -----------------------------------------------------------
    def _scheduler_spec(self, state: CloudState) -> daemon.DaemonSpec:
        marker = f"{self.directory}/scheduler"
        argv = (
            sys.executable,
            "-m",
            "ess.engine.serve",
            "scheduler",
            "--host",
            state.scheduler_host,
            "--port",
            str(state.scheduler_port),
            "--address-file",
            str(self.address_file),
            "--tls-dir",
            str(self.tls.directory),
            "--cluster-dir",
            marker,
        )
        return daemon.DaemonSpec(
            name="scheduler",
            argv=argv,
            pid_file=self.directory / "scheduler.pid",
            log_file=self.directory / "scheduler.log",
            marker=marker,
        )

    def _ensure_scheduler(self, state: CloudState) -> None:
        spec = self._scheduler_spec(state)
        if daemon.running_pid(spec) is not None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.address_file.unlink()
        pid = daemon.start(spec)
        deadline = time.monotonic() + SCHEDULER_START_TIMEOUT
        while not self.address_file.exists():
            if not daemon.alive(pid) or time.monotonic() > deadline:
                daemon.stop(spec)
                raise ClusterError(
                    f"the scheduler did not start on {state.scheduler_host}:"
                    f"{state.scheduler_port}; see {spec.log_file}"
                )
            time.sleep(0.02)

    def _stop_scheduler(self, state: CloudState) -> None:
        daemon.stop(self._scheduler_spec(state))

    def _address(self, state: CloudState) -> str:
        return f"tls://{_host_port(state.scheduler_host, state.scheduler_port)}"

    def _client(self, state: CloudState, timeout: float = 10.0) -> Any:
        from ess.engine.client import SchedulerUnreachable, connect

        conn = self._conn(state, worker_names=())
        try:
            return connect(conn, timeout=timeout, wait="none")
        except SchedulerUnreachable as exc:
            raise ClusterError(
                f"cannot reach the scheduler of cluster {state.id} at {conn.address}: {exc.reason}"
            ) from exc

    def _conn(self, state: CloudState, *, worker_names: tuple[str, ...]) -> Connection:
        return Connection(
            cluster_id=state.id,
            address=self._address(state),
            tls=self.tls,
            worker_names=worker_names,
            shared_filesystem=False,
        )

    @staticmethod
    def _joined(client: Any) -> dict[str, str]:
        """Instance id -> worker address of the workers registered with the scheduler."""
        workers = client.scheduler_info(n_workers=-1)["workers"]
        return {str(info.get("name")): addr for addr, info in workers.items()}

    def _wait_for_join(self, state: CloudState, instance_ids: list[str]) -> list[str]:
        """Wait for the workers of ``instance_ids`` to join and run the master's build
        (re-syncing those that run another); problems for the ones that never made it."""
        timeout = self.settings.join_timeout
        if timeout <= 0 or not instance_ids:
            return []
        client = self._client(state)
        try:
            deadline = time.monotonic() + timeout
            resynced = False
            while True:
                joined = self._joined(client)
                missing = [i for i in instance_ids if i not in joined]
                stale = [] if missing else self._stale(client, joined)
                if stale and not resynced:
                    self._resync(client, state, [joined[i] for i in stale])
                    resynced = True
                if (not missing and not stale) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            problems = [
                f"instance {i} did not join the scheduler at {self._address(state)} within "
                f"{timeout:g} s (see /opt/ess/boot.log on the node; ESS_EC2_JOIN_TIMEOUT "
                "sets the wait)"
                for i in missing
            ]
            problems += [f"instance {i} could not be re-synced to {build_id()}" for i in stale]
            return problems
        finally:
            client.close()

    def _stale(self, client: Any, joined: dict[str, str]) -> list[str]:
        """Instance ids of joined workers that run another build than the master."""
        from ess.cluster import node_agent

        if not joined:
            return []
        infos = client.run(node_agent.node_info, workers=list(joined.values()), on_error="return")
        build = build_id()
        names = {addr: name for name, addr in joined.items()}
        return sorted(
            names[a]
            for a, info in infos.items()
            if a in names and (not isinstance(info, dict) or info.get("build") != build)
        )

    def _resync(self, client: Any, state: CloudState, addresses: list[str]) -> None:
        """Install the master's build on these workers; they restart with it."""
        from ess.cluster import node_agent

        boot = self._boot_config(self._clients(CloudAuth(), state), state)
        client.run(
            node_agent.resync,
            boot.wheel_url,
            boot.wheel_file,
            boot.build,
            workers=addresses,
            on_error="return",
        )

    # -- interface -----------------------------------------------------------------------------
    def create(self, options: CreateOptions) -> ClusterStatus:
        if options.number is not None and options.number < 1:
            raise ClusterError("--number must be at least 1")
        with self._lock():
            state, problems = self._create_locked(options)
        joined = [n.instance_id for n in state.nodes if n.state in ("pending", "running")]
        problems += self._wait_for_join(state, joined)
        status = self.status()
        all_problems = tuple(dict.fromkeys([*problems, *status.problems]))
        if problems and options.error_return_code:
            raise ClusterError("; ".join(problems))
        return replace(status, problems=all_problems)

    def _create_locked(self, options: CreateOptions) -> tuple[CloudState, list[str]]:
        state = self.load_state()
        factory = self._clients(options.auth, state)
        ec2 = factory("ec2")
        if state is None:
            # Probe the credentials before anything is written or created.
            with aws.aws_errors("checking the AWS credentials"):
                ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": ["ess-probe"]}])
            cluster_id = f"ess-{secrets.token_hex(4)}"
            state = CloudState(
                id=cluster_id,
                region=aws.region(),
                user=self.settings.user,
                name_tag=self.settings.name_tag,
                use_private_ip=self.settings.use_private_ip,
                bucket=f"{cluster_id}-boot-{secrets.token_hex(4)}",
                scheduler_host=self.settings.scheduler_host or _master_private_ip(),
                scheduler_port=self.settings.scheduler_port,
                credentials_file=str(options.auth.credentials_file or ""),
            )
            self.save(state)
        state, notes = self._refresh(ec2, state)
        live = len(state.live_nodes())
        if options.add:
            target = max(state.target, live) + (options.number or 1)
        elif options.number is not None:
            if state.target and live >= options.number and options.number < state.target:
                raise ClusterError(
                    f"cluster {state.id} already has {live} workers; use 'ess cluster create "
                    "--add', 'ess cluster remove' or 'ess cluster terminate'"
                )
            target = options.number
        else:
            target = state.target or self.settings.instance_count
        state = replace(
            state,
            target=target,
            stopped=False,
            instance_type=options.instance_type
            or state.instance_type
            or self.settings.instance_type,
            credentials_file=str(options.auth.credentials_file or state.credentials_file or ""),
        )
        if options.instance_type is None and not state.nodes:
            state = replace(state, instance_type=self.settings.instance_type)
        if not state.image_id:
            state = replace(state, image_id=self._image(factory))
        self.save(state)

        state = self._ensure_key_pair(ec2, state)
        self.save(state)
        state = self._ensure_security_group(ec2, state)
        self.save(state)
        if not self.tls.exists():
            create_tls(self.tls.directory, cluster_id=state.id, hosts=(state.scheduler_host,))
        self._ensure_scheduler(state)
        boot = self._boot_config(factory, state)
        user_data = render_user_data(boot)
        state = replace(state, build=boot.build)
        self.save(state)

        problems = list(notes)
        stopped = [n.instance_id for n in state.nodes if n.state == "stopped"]
        if stopped:
            self._start_instances(ec2, stopped, user_data)
        need = shortfall(state)
        if need:
            holder = [state]

            def record(nodes: list[Node]) -> None:
                # Runs in the launch threads: state updates are serialized by the file lock.
                with locked(self.state_file.with_name("reservation.batches")):
                    holder[0] = holder[0].with_nodes([*holder[0].nodes, *nodes])
                    self.save(holder[0])

            report = self._launch(ec2, state, need, user_data, record)
            state = holder[0]
            if report.errors:
                problems.append(
                    f"launched {report.launched} of {need} instances: "
                    + "; ".join(report.errors)
                    + f". What was made is tagged {TAG_KEY}={state.id}: re-run 'ess cluster "
                    "create' to finish, or 'ess cluster terminate --all' to remove it all"
                )
        return state, problems

    def _start_instances(self, ec2: Any, instance_ids: list[str], user_data: str) -> None:
        """Give stopped instances fresh user-data (this build, new URLs), then start them."""
        import base64

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

    def start(self, auth: CloudAuth) -> ClusterStatus:
        with self._lock():
            state = self._require_state()
            factory = self._clients(auth, state)
            ec2 = factory("ec2")
            state, _ = self._refresh(ec2, state)
            state = replace(state, stopped=False)
            self._ensure_scheduler(state)
            stopped = [n.instance_id for n in state.nodes if n.state in ("stopped", "stopping")]
            if stopped:
                boot = self._boot_config(factory, state)
                self._start_instances(ec2, stopped, render_user_data(boot))
                state = replace(state, build=boot.build)
            state, _ = self._refresh(ec2, state)
            self.save(state)
        problems = self._wait_for_join(
            state, [n.instance_id for n in state.nodes if n.state in ("pending", "running")]
        )
        status = self.status()
        return replace(status, problems=tuple(dict.fromkeys([*problems, *status.problems])))

    def stop(self, auth: CloudAuth) -> None:
        with self._lock():
            state = self._require_state()
            ec2 = self._clients(auth, state)("ec2")
            state, _ = self._refresh(ec2, state)
            ids = [n.instance_id for n in state.nodes if n.state in ("pending", "running")]
            if ids:
                with aws.aws_errors(f"stopping {len(ids)} instances"):
                    ec2.stop_instances(InstanceIds=ids)
            self._stop_scheduler(state)
            state, _ = self._refresh(ec2, state)
            self.save(replace(state, stopped=True))

    def terminate(self, *, forget: bool, auth: CloudAuth) -> None:
        with self._lock():
            state = self.load_state()
            if state is None:
                return
            factory = self._clients(auth, state)
            ec2 = factory("ec2")
            tagged = self._describe(ec2, state.id)
            ids = sorted(
                {n.instance_id for n in tagged if n.state not in GONE_STATES}
                | {n.instance_id for n in state.nodes}
            )
            if ids:
                with aws.aws_errors(f"terminating {len(ids)} instances"):
                    ec2.terminate_instances(InstanceIds=ids)
            self._stop_scheduler(state)
            if not forget:
                self._delete_bucket_objects(factory("s3"), state)
                self.save(replace(state, nodes=(), target=0, stopped=False))
                return
            self._forget(factory, state, ids)

    def _forget(self, factory: aws.ClientFactory, state: CloudState, ids: list[str]) -> None:
        ec2, s3 = factory("ec2"), factory("s3")
        if ids:
            self._wait_terminated(ec2, ids)
        if state.security_group and state.group_owned:
            self._delete_group(ec2, state.security_group)
        if state.key_name and state.key_owned:
            with aws.aws_errors(f"deleting key pair {state.key_name}"):
                ec2.delete_key_pair(KeyName=state.key_name)
            if state.pem:
                pem = Path(state.pem)
                for path in (pem, pem.with_name(f".{pem.name}.lock")):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
        if state.bucket:
            self._delete_bucket_objects(s3, state)
            import botocore.exceptions

            try:
                s3.delete_bucket(Bucket=state.bucket)
            except botocore.exceptions.ClientError as exc:
                if aws.error_code(exc) not in ("NoSuchBucket", "404"):
                    with aws.aws_errors(f"deleting bucket {state.bucket}"):
                        raise
        shutil.rmtree(self.directory, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()

    def _wait_terminated(self, ec2: Any, ids: list[str], timeout: float = 300.0) -> None:
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

    def _delete_group(self, ec2: Any, group_id: str) -> None:
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

    def _delete_bucket_objects(self, s3: Any, state: CloudState) -> None:
        import botocore.exceptions

        try:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=state.bucket)
            for page in pages:
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    s3.delete_objects(Bucket=state.bucket, Delete={"Objects": keys})
        except botocore.exceptions.ClientError as exc:
            if aws.error_code(exc) not in ("NoSuchBucket", "404"):
                with aws.aws_errors(f"emptying bucket {state.bucket}"):
                    raise

    def reset(self) -> None:
        state = self.load_state()
        if state is None:
            return
        live = state.live_nodes()
        if live:
            raise ClusterError(
                f"cluster {state.id} still has {len(live)} instances in EC2; 'ess cluster "
                "terminate --all' removes them with everything else (reset would orphan them)"
            )
        with self._lock():
            self._stop_scheduler(state)
            shutil.rmtree(self.directory, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                self.state_file.unlink()

    def iplist(self, *, kind: str | None = None) -> list[str]:
        state = self._require_state()
        running = [n for n in state.nodes if n.state == "running"]
        private = [n.private_ip for n in running if n.private_ip]
        public = [n.public_ip for n in running if n.public_ip]
        if kind == "private":
            return private
        if kind == "public":
            return public
        return private + public

    def connection(self, *, revive: bool = True) -> Connection | None:
        state = self.load_state()
        if state is None or state.stopped:
            return None
        running = [n.instance_id for n in state.nodes if n.state in ("pending", "running")]
        if not running:
            return None
        if revive and daemon.running_pid(self._scheduler_spec(state)) is None:
            with self._lock():
                self._ensure_scheduler(state)
        return self._conn(state, worker_names=tuple(running))

    def add(self, reservations: list[str]) -> ClusterStatus:
        with self._lock():
            state = self._require_state()
            ec2 = self._clients(CloudAuth(), state)("ec2")
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
            nodes = [node_from_ec2(i, r) for r, i in found]
            ids = [n.instance_id for n in nodes]
            with aws.aws_errors("tagging the adopted instances"):
                ec2.create_tags(Resources=ids, Tags=aws.tags(state.id, **{"ess:adopted": "true"}))
            known = {n.instance_id for n in state.nodes}
            new = [n for n in nodes if n.instance_id not in known]
            state = state.with_nodes([*state.nodes, *new])
            state = replace(state, target=max(state.target, 0) + len(new))
            self.save(state)
        return self.status()

    def names_after_removal(self, reservations: list[str]) -> dict[str, str | None]:
        """Workers are named after their instance: the leaving ones → None, no renaming."""
        state = self._require_state()
        self._check_reservations(state, reservations)
        return {
            n.instance_id: None if n.reservation in reservations else n.instance_id
            for n in state.nodes
        }

    def _check_reservations(self, state: CloudState, reservations: list[str]) -> None:
        unknown = sorted(set(reservations) - set(state.reservations()))
        if unknown:
            raise ClusterError(f"not reservations of cluster {state.id}: {', '.join(unknown)}")

    def remove(self, reservations: list[str]) -> ClusterStatus:
        with self._lock():
            state = self._require_state()
            self._check_reservations(state, reservations)
            leaving = [n for n in state.nodes if n.reservation in reservations]
            ids = [n.instance_id for n in leaving]
            self._detach_workers(state, ids)
            ec2 = self._clients(CloudAuth(), state)("ec2")
            with aws.aws_errors("untagging the removed instances"):
                ec2.delete_tags(Resources=ids, Tags=[{"Key": TAG_KEY}])
                ec2.create_tags(Resources=ids, Tags=[{"Key": "ess:detached", "Value": state.id}])
            state = state.with_nodes([n for n in state.nodes if n.instance_id not in ids])
            state = replace(state, target=max(0, state.target - len(ids)))
            self.save(state)
        return self.status()

    def _detach_workers(self, state: CloudState, ids: list[str]) -> None:
        if daemon.running_pid(self._scheduler_spec(state)) is None:
            return
        from ess.cluster import node_agent

        client = self._client(state, timeout=5)
        try:
            joined = self._joined(client)
            addrs = [joined[i] for i in ids if i in joined]
            if addrs:
                client.run(node_agent.detach, workers=addrs, on_error="return")
                client.retire_workers(workers=addrs, close_workers=True)
        finally:
            client.close()

    def status(self) -> ClusterStatus:
        state = self._require_state()
        problems: list[str] = []
        try:
            ec2 = self._clients(CloudAuth(), state)("ec2")
            with self._lock():
                state, notes = self._refresh(ec2, state)
                self.save(state)
            problems.extend(notes)
        except (ClusterError, CredentialsError) as exc:
            problems.append(f"showing the last known state: {exc}")
        infos, sched_pid = self._node_infos(state)
        master_build = build_id()
        from ess.cluster.metrics import sample

        m = sample({"scheduler": sched_pid}, work_dir=self.ws.work_dir)["scheduler"]
        rows = [
            NodeStatus(
                id="master",
                state="running" if sched_pid else "stopped",
                public_ip=state.scheduler_host,
                private_ip=state.scheduler_host,
                cpu=m.cpu,
                mem=m.mem,
                disk=m.disk,
                version=master_build,
            )
        ]
        if sched_pid is None and not state.stopped and state.live_nodes():
            problems.append(
                f"the scheduler of cluster {state.id} is not running; 'ess cluster start' "
                "restarts it"
            )
        for n in state.nodes:
            info = infos.get(n.instance_id)
            if n.state == "running" and info is None and sched_pid is not None:
                problems.append(
                    f"{n.instance_id} is running but its worker has not joined the scheduler"
                )
            if info is not None and info.get("build") != master_build:
                problems.append(
                    f"{n.instance_id} runs ess {info.get('build')}, the master {master_build}; "
                    "'ess cluster start' or 'ess cluster create --add' re-syncs it"
                )
            rows.append(
                NodeStatus(
                    id=n.instance_id,
                    state=n.state,
                    public_ip=n.public_ip or "-",
                    private_ip=n.private_ip or "-",
                    cpu=str(info["cpu"]) if info else "-",
                    mem=str(info["mem"]) if info else "-",
                    disk=str(info["disk"]) if info else "-",
                    reservation=n.reservation,
                    version=str(info.get("build")) if info else "-",
                )
            )
        return ClusterStatus(cluster_id=state.id, nodes=tuple(rows), problems=tuple(problems))

    def _node_infos(self, state: CloudState) -> tuple[dict[str, dict[str, Any]], int | None]:
        pid = daemon.running_pid(self._scheduler_spec(state))
        if pid is None or not self.tls.exists():
            return {}, pid
        from ess.cluster import node_agent

        try:
            client = self._client(state, timeout=5)
        except ClusterError:
            return {}, pid
        try:
            joined = self._joined(client)
            if not joined:
                return {}, pid
            by_addr = client.run(
                node_agent.node_info, workers=list(joined.values()), on_error="return"
            )
        finally:
            client.close()
        names = {addr: name for name, addr in joined.items()}
        return {names[a]: v for a, v in by_addr.items() if isinstance(v, dict) and a in names}, pid


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


def _master_private_ip() -> str:
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


def _master_public_cidr(fallback: str) -> str:
    return f"{_imds('public-ipv4') or fallback}/32"


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

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
``<ESS_WORK_DIR>/cloud/`` (TLS material, scheduler pid/log, wheel cache; the layout and the
scheduler daemon are the shared core's, :mod:`ess.cluster.daemons`). The pieces: the key pair
and security group (:mod:`ess.cluster.ec2_network`), the instances
(:mod:`ess.cluster.ec2_instances`), the bootstrap bucket (:mod:`ess.cluster.ec2_boot`) and the
workers as the scheduler sees them (:mod:`ess.cluster.ec2_workers`).
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from ess.cluster import aws, ec2_boot, ec2_instances, ec2_network, ec2_workers
from ess.cluster.bootstrap import BootConfig, build_id, render_user_data
from ess.cluster.daemons import DaemonCluster, host_port, master_row
from ess.cluster.ec2_settings import AMI_PARAMETER, Ec2Settings
from ess.cluster.ec2_state import GONE_STATES, TAG_KEY, CloudState, Node, reconcile, shortfall
from ess.cluster.provider import (
    CloudAuth,
    ClusterProvider,
    ClusterStatus,
    CreateOptions,
    NodeStatus,
    register_provider,
)
from ess.engine import daemon
from ess.engine.connection import Connection
from ess.engine.security import TlsFiles
from ess.errors import ClusterError, CredentialsError
from ess.workspace import Workspace, locked, read_json, write_json_atomic


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
    def core(self) -> DaemonCluster:
        return DaemonCluster.at(self.ws.work_dir / "cloud")

    @property
    def directory(self) -> Path:
        return self.core.directory

    @property
    def tls(self) -> TlsFiles:
        return self.core.tls

    def load_state(self) -> CloudState | None:
        data = read_json(self.state_file)
        if data is None:
            return None
        return CloudState.from_json(data, path=self.state_file)

    def save(self, state: CloudState) -> None:
        write_json_atomic(self.state_file, state.to_json())

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

    def _refresh(self, ec2: Any, state: CloudState) -> tuple[CloudState, list[str]]:
        rec = reconcile(state, ec2_instances.describe(ec2, state.id))
        notes = [f"{i} is gone from EC2 (terminated outside ess); dropped" for i in rec.vanished]
        return rec.state, notes

    def _image(self, factory: aws.ClientFactory) -> str:
        if self.settings.image_id:
            return self.settings.image_id
        with aws.aws_errors(f"looking up the worker image ({AMI_PARAMETER})"):
            value = factory("ssm").get_parameter(Name=AMI_PARAMETER)["Parameter"]["Value"]
        return str(value)

    def ingress_rules(self, state: CloudState) -> list[dict[str, Any]]:
        """SSH from the master only; the engine's ports from the group and the master only."""
        return ec2_network.ingress_rules(state, self.settings)

    def _boot_config(self, factory: aws.ClientFactory, state: CloudState) -> BootConfig:
        return ec2_boot.boot_config(
            factory("s3"),
            state,
            tls=self.tls,
            wheels=self.directory / "wheels",
            url_ttl=self.settings.url_ttl,
            worker_port=self.settings.worker_port,
        )

    # -- the scheduler on the master -----------------------------------------------------------
    def _scheduler_spec(self, state: CloudState) -> daemon.DaemonSpec:
        # no exec gateway: cloud workers are reached through the Dask client
        return self.core.scheduler_spec(state.scheduler_host, state.scheduler_port, gateway=False)

    def _ensure_scheduler(self, state: CloudState) -> None:
        where = host_port(state.scheduler_host, state.scheduler_port)
        self.core.ensure_scheduler(self._scheduler_spec(state), where=where)

    def _stop_scheduler(self, state: CloudState) -> None:
        daemon.stop(self._scheduler_spec(state))

    def _address(self, state: CloudState) -> str:
        return f"tls://{host_port(state.scheduler_host, state.scheduler_port)}"

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

    def _wait_for_join(self, state: CloudState, instance_ids: list[str]) -> list[str]:
        timeout = self.settings.join_timeout
        if timeout <= 0 or not instance_ids:
            return []
        client = self._client(state)
        try:
            return ec2_workers.wait_for_join(
                client,
                instance_ids,
                timeout=timeout,
                address=self._address(state),
                boot=lambda: self._boot_config(self._clients(CloudAuth(), state), state),
            )
        finally:
            client.close()

    # -- interface -----------------------------------------------------------------------------
    def create(self, options: CreateOptions) -> ClusterStatus:
        if options.number is not None and options.number < 1:
            raise ClusterError("--number must be at least 1")
        with self.core.lock():
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
            state = _new_state(self.settings, options.auth)
            self.save(state)
        state, notes = self._refresh(ec2, state)
        target = _target(state, options, self.settings)
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

        state = ec2_network.ensure_key_pair(
            ec2, state, settings=self.settings, aws_dir=self.ws.aws_dir
        )
        self.save(state)
        state = ec2_network.ensure_security_group(ec2, state, settings=self.settings)
        self.save(state)
        if not self.tls.exists():
            self.core.create_tls(cluster_id=state.id, hosts=(state.scheduler_host,))
        self._ensure_scheduler(state)
        boot = self._boot_config(factory, state)
        user_data = render_user_data(boot)
        state = replace(state, build=boot.build)
        self.save(state)

        problems = list(notes)
        stopped = [n.instance_id for n in state.nodes if n.state == "stopped"]
        if stopped:
            ec2_instances.start(ec2, stopped, user_data)
        need = shortfall(state)
        if need:
            holder = [state]

            def record(nodes: list[Node]) -> None:
                # Runs in the launch threads: state updates are serialized by the file lock.
                with locked(self.state_file.with_name("reservation.batches")):
                    holder[0] = holder[0].with_nodes([*holder[0].nodes, *nodes])
                    self.save(holder[0])

            report = ec2_instances.launch(
                ec2, state, need, user_data, record, settings=self.settings
            )
            state = holder[0]
            if report.errors:
                problems.append(
                    f"launched {report.launched} of {need} instances: "
                    + "; ".join(report.errors)
                    + f". What was made is tagged {TAG_KEY}={state.id}: re-run 'ess cluster "
                    "create' to finish, or 'ess cluster terminate --all' to remove it all"
                )
        return state, problems

    def start(self, auth: CloudAuth) -> ClusterStatus:
        with self.core.lock():
            state = self._require_state()
            factory = self._clients(auth, state)
            ec2 = factory("ec2")
            state, _ = self._refresh(ec2, state)
            state = replace(state, stopped=False)
            self._ensure_scheduler(state)
            stopped = [n.instance_id for n in state.nodes if n.state in ("stopped", "stopping")]
            if stopped:
                boot = self._boot_config(factory, state)
                ec2_instances.start(ec2, stopped, render_user_data(boot))
                state = replace(state, build=boot.build)
            state, _ = self._refresh(ec2, state)
            self.save(state)
        problems = self._wait_for_join(
            state, [n.instance_id for n in state.nodes if n.state in ("pending", "running")]
        )
        status = self.status()
        return replace(status, problems=tuple(dict.fromkeys([*problems, *status.problems])))

    def stop(self, auth: CloudAuth) -> None:
        with self.core.lock():
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
        with self.core.lock():
            state = self.load_state()
            if state is None:
                return
            factory = self._clients(auth, state)
            ec2 = factory("ec2")
            tagged = ec2_instances.describe(ec2, state.id)
            ids = sorted(
                {n.instance_id for n in tagged if n.state not in GONE_STATES}
                | {n.instance_id for n in state.nodes}
            )
            if ids:
                with aws.aws_errors(f"terminating {len(ids)} instances"):
                    ec2.terminate_instances(InstanceIds=ids)
            self._stop_scheduler(state)
            if not forget:
                ec2_boot.empty_bucket(factory("s3"), state)
                self.save(replace(state, nodes=(), target=0, stopped=False))
                return
            _forget(factory, state, ids)
            shutil.rmtree(self.directory, ignore_errors=True)
            self.state_file.unlink(missing_ok=True)

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
        with self.core.lock():
            self._stop_scheduler(state)
            shutil.rmtree(self.directory, ignore_errors=True)
            self.state_file.unlink(missing_ok=True)

    def iplist(self, *, kind: str | None = None) -> list[str]:
        running = [n for n in self._require_state().nodes if n.state == "running"]
        private = [n.private_ip for n in running if n.private_ip]
        public = [n.public_ip for n in running if n.public_ip]
        return {"private": private, "public": public}.get(kind or "", private + public)

    def connection(self, *, revive: bool = True) -> Connection | None:
        state = self.load_state()
        if state is None or state.stopped:
            return None
        running = [n.instance_id for n in state.nodes if n.state in ("pending", "running")]
        if not running:
            return None
        if revive and daemon.running_pid(self._scheduler_spec(state)) is None:
            with self.core.lock():
                self._ensure_scheduler(state)
        return self._conn(state, worker_names=tuple(running))

    def add(self, reservations: list[str]) -> ClusterStatus:
        with self.core.lock():
            state = self._require_state()
            ec2 = self._clients(CloudAuth(), state)("ec2")
            nodes = ec2_instances.running_in(ec2, reservations)
            ec2_instances.adopt(ec2, [n.instance_id for n in nodes], state.id)
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
        with self.core.lock():
            state = self._require_state()
            self._check_reservations(state, reservations)
            leaving = [n for n in state.nodes if n.reservation in reservations]
            ids = [n.instance_id for n in leaving]
            self._detach_workers(state, ids)
            ec2 = self._clients(CloudAuth(), state)("ec2")
            ec2_instances.release(ec2, ids, state.id)
            state = state.with_nodes([n for n in state.nodes if n.instance_id not in ids])
            state = replace(state, target=max(0, state.target - len(ids)))
            self.save(state)
        return self.status()

    def _detach_workers(self, state: CloudState, ids: list[str]) -> None:
        if daemon.running_pid(self._scheduler_spec(state)) is None:
            return
        client = self._client(state, timeout=5)
        try:
            ec2_workers.detach(client, ids)
        finally:
            client.close()

    def status(self) -> ClusterStatus:
        state = self._require_state()
        problems: list[str] = []
        try:
            ec2 = self._clients(CloudAuth(), state)("ec2")
            with self.core.lock():
                state, notes = self._refresh(ec2, state)
                self.save(state)
            problems.extend(notes)
        except (ClusterError, CredentialsError) as exc:
            problems.append(f"showing the last known state: {exc}")
        infos, sched_pid = self._node_infos(state)
        master_build = build_id()
        rows = [
            master_row(
                scheduler_pid=sched_pid,
                address=state.scheduler_host,
                work_dir=self.ws.work_dir,
                version=master_build,
            )
        ]
        problems += _worker_problems(state, infos, running=sched_pid is not None)
        rows += [_worker_row(n, infos.get(n.instance_id)) for n in state.nodes]
        return ClusterStatus(cluster_id=state.id, nodes=tuple(rows), problems=tuple(problems))

    def _node_infos(self, state: CloudState) -> tuple[dict[str, dict[str, Any]], int | None]:
        pid = daemon.running_pid(self._scheduler_spec(state))
        if pid is None or not self.tls.exists():
            return {}, pid
        try:
            client = self._client(state, timeout=5)
        except ClusterError:
            return {}, pid
        try:
            return ec2_workers.node_infos(client), pid
        finally:
            client.close()


def _worker_problems(
    state: CloudState, infos: dict[str, dict[str, Any]], *, running: bool
) -> list[str]:
    """What ``ess cluster status`` warns about: a dead scheduler, workers that did not join
    or run another build."""
    problems = []
    master_build = build_id()
    if not running and not state.stopped and state.live_nodes():
        problems.append(
            f"the scheduler of cluster {state.id} is not running; 'ess cluster start' restarts it"
        )
    for n in state.nodes:
        info = infos.get(n.instance_id)
        if n.state == "running" and info is None and running:
            problems.append(
                f"{n.instance_id} is running but its worker has not joined the scheduler"
            )
        if info is not None and info.get("build") != master_build:
            problems.append(
                f"{n.instance_id} runs ess {info.get('build')}, the master {master_build}; "
                "'ess cluster start' or 'ess cluster create --add' re-syncs it"
            )
    return problems


def _worker_row(n: Node, info: dict[str, Any] | None) -> NodeStatus:
    return NodeStatus(
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


def _new_state(settings: Ec2Settings, auth: CloudAuth) -> CloudState:
    cluster_id = f"ess-{secrets.token_hex(4)}"
    return CloudState(
        id=cluster_id,
        region=aws.region(),
        user=settings.user,
        name_tag=settings.name_tag,
        use_private_ip=settings.use_private_ip,
        bucket=f"{cluster_id}-boot-{secrets.token_hex(4)}",
        scheduler_host=settings.scheduler_host or ec2_network.master_private_ip(),
        scheduler_port=settings.scheduler_port,
        credentials_file=str(auth.credentials_file or ""),
    )


def _target(state: CloudState, options: CreateOptions, settings: Ec2Settings) -> int:
    """The cluster's size after this create: ``--add`` grows it, ``--number`` sets it."""
    live = len(state.live_nodes())
    if options.add:
        return max(state.target, live) + (options.number or 1)
    if options.number is not None:
        if state.target and live >= options.number and options.number < state.target:
            raise ClusterError(
                f"cluster {state.id} already has {live} workers; use 'ess cluster create "
                "--add', 'ess cluster remove' or 'ess cluster terminate'"
            )
        return options.number
    return state.target or settings.instance_count


def _forget(factory: aws.ClientFactory, state: CloudState, ids: list[str]) -> None:
    """Everything ``terminate --all`` removes in AWS: the instances' end awaited, the security
    group, the key pair and the bootstrap bucket."""
    ec2, s3 = factory("ec2"), factory("s3")
    if ids:
        ec2_instances.wait_terminated(ec2, ids)
    if state.security_group and state.group_owned:
        ec2_network.delete_group(ec2, state.security_group)
    ec2_network.delete_key_pair(ec2, state)
    if state.bucket:
        ec2_boot.delete_bucket(s3, state)

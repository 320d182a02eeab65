"""`ess cluster ...`: choose the platform and manage its nodes (through the provider registry)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ess.cli.common import add_command, add_json_option, note, out, out_json
from ess.workspace import Workspace

if TYPE_CHECKING:  # keeps the provider modules out of `ess --help`
    from ess.cluster.provider import CloudAuth, ClusterStatus


def _auth(args: argparse.Namespace) -> CloudAuth:
    from ess.cluster.provider import CloudAuth

    creds = getattr(args, "credentials", None)
    return CloudAuth(
        credentials_file=Path(creds).expanduser() if creds else None,
        access_key=getattr(args, "aws_access_key", None),
        secret_key=getattr(args, "aws_secret_access_key", None),
    )


def _add_auth(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--credentials", help="AWS credential CSV (cloud clusters)")
    group.add_argument("--aws_access_key", help="AWS access key id (cloud clusters)")
    parser.add_argument("--aws_secret_access_key", help="AWS secret access key (cloud clusters)")


def _provider() -> Any:
    from ess.cluster.provider import provider_for

    return provider_for(Workspace.from_env())


def format_status(status: ClusterStatus) -> str:
    from tabulate import tabulate

    headers = ["ID", "state", "publicIP", "privateIP", "cpu", "mem", "disk"]
    extra = [("reservation", "reservation"), ("version", "version")]
    extra = [(h, a) for h, a in extra if any(getattr(n, a) for n in status.nodes)]
    rows = [
        [
            n.id,
            n.state,
            n.public_ip,
            n.private_ip,
            n.cpu,
            n.mem,
            n.disk,
            *[getattr(n, a) or "" for _, a in extra],
        ]
        for n in status.nodes
    ]
    table = tabulate(
        rows, headers=headers + [h for h, _ in extra], tablefmt="simple", disable_numparse=True
    )
    return f"Summary for cluster {status.cluster_id}\n\n{table}"


def _print_status(status: ClusterStatus, *, as_json: bool = False) -> int:
    if as_json:  # the problems are in the document, and still on stderr for the user
        out_json(status)
    else:
        out(format_status(status))
    for problem in status.problems:
        note(problem)
    return 1 if status.problems else 0


def _set(args: argparse.Namespace) -> int:
    from ess.cluster.provider import AttachOptions, set_platform

    def path(text: str | None) -> Path | None:
        return Path(text) if text else None

    options = AttachOptions(
        scheduler=args.scheduler,
        tls_ca=path(args.tls_ca),
        tls_cert=path(args.tls_cert),
        tls_key=path(args.tls_key),
    )
    set_platform(Workspace.from_env(), args.platform, options)
    return 0


def _create(args: argparse.Namespace) -> int:
    from ess.cluster.provider import CreateOptions

    options = CreateOptions(
        number=args.number,
        instance_type=args.type,
        add=args.add,
        auth=_auth(args),
        error_return_code=args.error_return_code,
    )
    status = _provider().create(options)
    note(f"cluster {status.cluster_id}: {sum(n.id != 'master' for n in status.nodes)} workers")
    for problem in status.problems:  # e.g. a worker that did not come up
        note(problem)
    return 0


def _start(args: argparse.Namespace) -> int:
    status = _provider().start(_auth(args))
    note(f"cluster {status.cluster_id} running")
    for problem in status.problems:
        note(problem)
    return 0


def _stop(args: argparse.Namespace) -> int:
    _provider().stop(_auth(args))
    return 0


def _confirm(question: str, *, yes: bool, refusal: str) -> bool:
    """True when the user agreed (or gave -y); no one to ask (CI, cron) is a usage error."""
    if yes:
        return True
    if not sys.stdin.isatty():
        from ess.errors import UsageError

        raise UsageError(refusal)
    return input(question).strip().lower() in ("y", "yes")


def _terminate_daemons(args: argparse.Namespace) -> int:
    """--orphans: end this user's ess daemons that nothing can find any more; --every-daemon:
    all of this user's ess daemons on this machine, whatever their work dir (asks first)."""
    from ess.cluster import census

    daemons = census.find_daemons()
    if args.orphans:
        daemons = [d for d in daemons if d.orphan is not None]
    if not daemons:
        note("no orphan ess daemons" if args.orphans else "no ess daemons")
        return 0
    if args.every_daemon and not _confirm(
        f"end all {len(daemons)} ess daemons of this user on this machine? [y/N] ",
        yes=args.y,
        refusal="terminate --every-daemon ends every cluster of yours here: confirm with -y",
    ):
        note("nothing terminated")
        return 1
    ended = set(census.end_daemons(daemons))
    for d in daemons:
        if d.pid in ended:
            why = f" ({d.orphan})" if d.orphan else ""
            note(f"ended {d.role} {d.name} pid {d.pid}{why} {d.directory}")
    return 0


def _terminate(args: argparse.Namespace) -> int:
    if args.orphans and args.every_daemon:
        from ess.errors import UsageError

        raise UsageError("--orphans and --every-daemon exclude each other")
    if args.orphans or args.every_daemon:
        if args.all:
            from ess.errors import UsageError

            raise UsageError("--all applies to the selected cluster, not to --orphans")
        return _terminate_daemons(args)
    provider = _provider()
    if args.all and not args.y and not sys.stdin.isatty():
        # No one can answer the prompt (CI, cron): refuse rather than hang or assume yes.
        from ess.errors import UsageError

        raise UsageError("terminate --all deletes instances, keys and groups: confirm with -y")
    if args.all and not args.y:
        answer = input("terminate the cluster and forget its keys and groups? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            note("nothing terminated")
            return 1
    provider.terminate(forget=args.all, auth=_auth(args))
    return 0


def _status(args: argparse.Namespace) -> int:
    if args.all:
        return _print_daemons(as_json=args.json)
    return _print_status(_provider().status(), as_json=args.json)


def _print_daemons(*, as_json: bool = False) -> int:
    """Every ess daemon of this user on this machine, whichever work dir it belongs to."""
    from tabulate import tabulate

    from ess.cluster import census

    daemons = census.find_daemons()
    if as_json:
        from dataclasses import asdict

        found = [{**asdict(d), "directory_exists": d.directory_exists} for d in daemons]
        out_json({"daemons": found})
        return 0
    if not daemons:
        note("no ess daemons of this user on this machine")
        return 0
    rows = [
        [
            d.pid,
            d.role,
            d.name,
            d.cluster_id,
            census.age(d.started),
            census.mib(d.rss),
            f"orphan: {d.orphan}" if d.orphan else "ok",
            d.directory + ("" if d.directory_exists else " (gone)"),
        ]
        for d in daemons
    ]
    headers = ["PID", "role", "name", "cluster", "age", "RSS", "state", "directory"]
    out(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))
    orphans = sum(d.orphan is not None for d in daemons)
    if orphans:
        note(f"{orphans} orphan daemon(s): end them with 'ess cluster terminate --orphans'")
    return 0


def _reset(args: argparse.Namespace) -> int:
    _provider().reset()
    return 0


def _iplist(args: argparse.Namespace) -> int:
    kind = "private" if args.private else "public" if args.public else None
    addresses = _provider().iplist(kind=kind)
    if args.json:
        out_json({"kind": kind, "addresses": addresses})
        return 0
    for ip in addresses:
        out(ip)
    return 0


def _add(args: argparse.Namespace) -> int:
    status = _provider().add(args.reservation)
    for problem in status.problems:  # e.g. a host that could not be reached
        note(problem)
    return 0


def _remove(args: argparse.Namespace) -> int:
    from ess.udb.drain import remove_workers

    # the UDB's partitions leave the removed workers first (refused if none would remain)
    status = remove_workers(Workspace.from_env(), args.reservation)
    for problem in status.problems:  # e.g. a host that could not be reached
        note(problem)
    return 0


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "cluster",
        help="manage worker nodes",
        example="ess cluster set local\ness cluster create --number 2\ness cluster status",
        description="Manage worker nodes. Local clusters run a TLS Dask scheduler and worker "
        "processes on this machine (pid and log files in $ESS_WORK_DIR/cluster/).",
    )
    sub = parser.add_subparsers(
        dest="cluster_command",
        metavar="{set,create,add,remove,terminate,stop,start,status,reset,iplist}",
    )
    sub.required = True

    p = add_command(
        sub,
        "set",
        help="choose the platform: local, cloud, custom or dask",
        example="ess cluster set local\n"
        "ess cluster set dask --scheduler tls://10.0.0.5:8786 --tls-ca ca.pem "
        "--tls-cert client.pem --tls-key client.key",
        handler=_set,
    )
    p.add_argument(
        "platform", choices=["local", "cloud", "custom", "dask"], help="where the workers run"
    )
    p.add_argument("--scheduler", metavar="tls://HOST:PORT", help="dask: the scheduler's address")
    p.add_argument("--tls-ca", metavar="CA", help="dask: the cluster's CA certificate")
    p.add_argument("--tls-cert", metavar="CERT", help="dask: this machine's client certificate")
    p.add_argument("--tls-key", metavar="KEY", help="dask: its private key (mode 0600)")

    p = add_command(
        sub,
        "create",
        help="start worker nodes (local: worker processes)",
        example="ess cluster create --number 2",
        handler=_create,
    )
    p.add_argument(
        "--number",
        type=int,
        metavar="NumberOfWorkers",
        help="number of workers (local default: one per core)",
    )
    p.add_argument("--type", help="instance type (cloud clusters)")
    p.add_argument("--add", action="store_true", help="add workers to the existing cluster")
    _add_auth(p)
    p.add_argument(
        "--error_return_code",
        action="store_true",
        help="exit non-zero if some workers failed to come up",
    )

    p = add_command(
        sub,
        "add",
        help="attach running instances by reservation id (custom clusters: hosts)",
        example="ess cluster add r-6b1f57d5",
        handler=_add,
    )
    p.add_argument("reservation", nargs="+", help="reservation id(s) (custom: host addresses)")
    p = add_command(
        sub,
        "remove",
        help="detach instances of these reservations (custom clusters: hosts)",
        example="ess cluster remove r-6b1f57d5",
        handler=_remove,
    )
    p.add_argument("reservation", nargs="+", help="reservation id(s) (custom: host addresses)")

    p = add_command(
        sub,
        "terminate",
        help="stop the workers and remove the cluster",
        example="ess cluster terminate -y\ness cluster terminate --orphans",
        handler=_terminate,
    )
    p.add_argument(
        "--all", action="store_true", help="also forget keys and security groups (cloud)"
    )
    p.add_argument(
        "--orphans",
        action="store_true",
        help="instead: end this user's ess daemons on this machine whose work dir or pid "
        "file is gone (see status --all)",
    )
    p.add_argument(
        "--every-daemon",
        action="store_true",
        help="instead: end all of this user's ess daemons on this machine, any work dir (asks; -y)",
    )
    p.add_argument("-y", action="store_true", help="do not ask for confirmation")
    _add_auth(p)

    p = add_command(
        sub,
        "stop",
        help="stop the cluster's daemons/instances (kept for start)",
        example="ess cluster stop",
        handler=_stop,
    )
    _add_auth(p)
    p = add_command(
        sub,
        "start",
        help="start a stopped cluster; restarts dead daemons",
        example="ess cluster start",
        handler=_start,
    )
    _add_auth(p)
    p = add_command(
        sub,
        "status",
        help="summarize master and workers",
        example="ess cluster status\ness cluster status --all\ness cluster status --json",
        handler=_status,
    )
    p.add_argument(
        "--all",
        action="store_true",
        help="list every ess daemon of this user on this machine (any work dir): pid, "
        "role, cluster, age, RSS, orphan or not, directory",
    )
    add_json_option(p, "cluster-status")
    add_command(
        sub,
        "reset",
        help="clear and reset the cluster configuration",
        example="ess cluster reset",
        handler=_reset,
    )
    p = add_command(
        sub,
        "iplist",
        help="print the workers' IP addresses",
        example="ess cluster iplist --private\ness cluster iplist --json",
        handler=_iplist,
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--private", action="store_true", help="private addresses (default)")
    group.add_argument("--public", action="store_true", help="public addresses")
    add_json_option(p, "cluster-iplist")

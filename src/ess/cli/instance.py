"""Legacy ``ess instance ec2 create|terminate all`` (Essentia 2.x), configured by instance.conf.

``instance.conf`` (INI, section ``[EC2]``, spec 2.12) is looked up in the current directory,
then in ``$ESS_WORK_DIR``; ``--number``/``--type`` override its ``instance_count`` and
``instance_type``. Both commands switch the platform to ``cloud`` and run the same provider as
``ess cluster create`` / ``ess cluster terminate --all``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ess.cli.common import add_command, note
from ess.workspace import Workspace

CONF_NAME = "instance.conf"


def _settings(ws: Workspace) -> Any:
    from ess.cluster.ec2_settings import Ec2Settings

    settings = Ec2Settings.from_env()
    for path in (Path.cwd() / CONF_NAME, ws.work_dir / CONF_NAME):
        if path.is_file():
            return settings.with_instance_conf(path)
    return settings


def _provider(ws: Workspace) -> Any:
    from ess.cluster.ec2 import Ec2Provider
    from ess.cluster.provider import set_platform

    set_platform(ws, "cloud")
    return Ec2Provider(ws, settings=_settings(ws))


def _create(args: argparse.Namespace) -> int:
    from ess.cluster.provider import CloudAuth, CreateOptions

    ws = Workspace.from_env()
    provider = _provider(ws)
    settings = provider.settings
    options = CreateOptions(
        number=args.number if args.number is not None else settings.instance_count,
        instance_type=args.type or settings.instance_type,
        auth=CloudAuth(credentials_file=settings.credentials_file),
    )
    status = provider.create(options)
    note(f"cluster {status.cluster_id}: {sum(n.id != 'master' for n in status.nodes)} workers")
    for problem in status.problems:
        note(problem)
    return 0


def _terminate(args: argparse.Namespace) -> int:
    from ess.cluster.provider import CloudAuth
    from ess.errors import UsageError

    if args.what != "all":
        raise UsageError(
            f"ess instance ec2 terminate {args.what}: only 'all' is supported "
            "(use 'ess cluster remove RESERVATION' to detach one reservation)"
        )
    ws = Workspace.from_env()
    provider = _provider(ws)
    provider.terminate(
        forget=True, auth=CloudAuth(credentials_file=provider.settings.credentials_file)
    )
    return 0


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "instance",
        help="legacy (Essentia 2.x) EC2 commands; use 'ess cluster'",
        example="ess instance ec2 create --number=2 --type=t3.medium\n"
        "ess instance ec2 terminate all",
    )
    sub = parser.add_subparsers(dest="instance_command", metavar="{ec2}")
    sub.required = True
    ec2 = add_command(
        sub,
        "ec2",
        help="EC2 workers configured by instance.conf",
        example="ess instance ec2 create --number=2",
    )
    ec2_sub = ec2.add_subparsers(dest="ec2_command", metavar="{create,terminate}")
    ec2_sub.required = True
    p = add_command(
        ec2_sub,
        "create",
        help="create EC2 workers (defaults from instance.conf)",
        example="ess instance ec2 create --number=2 --type=t3.medium",
        handler=_create,
    )
    p.add_argument(
        "--number", type=int, metavar="NumberOfWorkers", help="number of workers to start"
    )
    p.add_argument("--type", help="EC2 instance type (default: from instance.conf)")
    p = add_command(
        ec2_sub,
        "terminate",
        help="terminate the workers and delete their key pair and security group",
        example="ess instance ec2 terminate all",
        handler=_terminate,
    )
    p.add_argument("what", metavar="all", help="the word all: every worker of this cluster")

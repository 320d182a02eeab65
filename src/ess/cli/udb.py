"""UDB commands: `ess server/create/drop/use/udbd` (definitions and the UDB service)."""

from __future__ import annotations

import argparse
from typing import Any

from ess.cli.common import add_command, add_json_option, note, out, out_json
from ess.workspace import Workspace


def _ws() -> Workspace:
    return Workspace.from_env()


def _json_only_for(args: argparse.Namespace, command: str, action: str) -> None:
    if args.json and args.action != action:
        from ess.errors import UsageError

        raise UsageError(f"--json applies to 'ess {command} {action}' only")


def _server(args: argparse.Namespace) -> int:
    _json_only_for(args, "server", "summary")
    from ess.udb import spec, udbd

    ws = _ws()
    if args.action == "summary" and args.json:
        out_json(spec.summary_json(ws, args.name))
    elif args.action == "reset":
        udbd.stop_quietly(ws)  # silently, as Essentia did
        spec.reset(ws)
    elif args.action == "restart":
        udbd.server_restart(ws)
    elif args.action == "commit":
        pass  # definitions travel with every request; nothing to upload
    elif args.action == "summary":
        for line in spec.summary(ws, args.name):
            out(line)
    return 0


def _create(args: argparse.Namespace) -> int:
    from ess.udb import spec

    ws = _ws()
    if args.kind == "database":
        spec.create_database(ws, args.dbname, args.ports or [])
    elif args.kind == "variable":
        spec.create_target(ws, "var", "var", args.specs)
    else:
        spec.create_target(ws, args.kind, args.name, args.specs)
    return 0


def _drop(args: argparse.Namespace) -> int:
    from ess.udb import spec

    ws = _ws()
    name = getattr(args, "name", None) or getattr(args, "dbname", None)
    if not spec.drop(ws, args.kind, name):
        what = args.kind if args.kind == "variable" else f"{args.kind} {name}"
        note(f"ess drop: {what} does not exist")
    return 0


def _use(args: argparse.Namespace) -> int:
    from ess.udb import spec

    spec.use(_ws(), args.dbname)
    return 0


def _udbd(args: argparse.Namespace) -> int:
    _json_only_for(args, "udbd", "status")
    from ess.udb import udbd

    ws = _ws()
    if args.json:
        out_json(udbd.status_info(ws))
        return 0
    changes = {"start": udbd.start, "stop": udbd.stop, "restart": udbd.restart}
    reports = {"status": udbd.status, "ckmem": udbd.ckmem, "cklog": udbd.cklog}
    if args.action in changes:  # damage found at load, data out of reach: said on stderr
        lines = changes[args.action](ws, warn=note)
    else:
        lines = reports[args.action](ws)
    for line in lines:
        out(line)
    return 0


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "server", help="UDB definitions and service housekeeping",
                    example="ess server reset\ness server summary --json",
                    handler=_server)  # fmt: skip
    p.add_argument("action", choices=["reset", "restart", "commit", "summary"],
                   help="reset: stop the service, delete definitions and data; restart: flush "
                   "the data, keep definitions; commit: send definitions to the workers; "
                   "summary: show definitions")  # fmt: skip
    p.add_argument("--name", nargs="?", help="summary: only this database")
    add_json_option(p, "server-summary")

    p = add_command(subparsers, "create", help="define UDB databases, tables, vectors, variables",
                    example="ess create database wood\n"
                    "ess create table allsales s,pkey:userid i,tkey:ptime f:price")  # fmt: skip
    sub = p.add_subparsers(dest="kind", metavar="{database,table,vector,variable}")
    sub.required = True
    d = add_command(sub, "database", help="add a database and make it active",
                    example="ess create database wood --ports=1", handler=_create)  # fmt: skip
    d.add_argument("dbname", help="database name")
    d.add_argument("--ports", nargs="+", help="number of ports, a port, or a range")
    for kind, ex in (
        ("table", "ess create table allsales s,pkey:userid i,tkey:ptime f:price"),
        ("vector", "ess create vector usersales s,pkey:userid f,+add:total"),
    ):
        t = add_command(sub, kind, help=f"add a {kind} to the active database", example=ex,
                        handler=_create)  # fmt: skip
        t.add_argument("name", help=f"{kind} name")
        t.add_argument("specs", nargs=argparse.REMAINDER,
                       help="column specs: type[,attributes]:name ...")  # fmt: skip
    v = add_command(sub, "variable", help="define the Var vector of the active database",
                    example='ess create variable "i:totalusers"', handler=_create)  # fmt: skip
    v.add_argument("specs", nargs=argparse.REMAINDER, help="variable specs: type:name ...")

    p = add_command(subparsers, "drop", help="remove UDB definitions",
                    example="ess drop table allsales")  # fmt: skip
    sub = p.add_subparsers(dest="kind", metavar="{database,table,vector,variable}")
    sub.required = True
    d = add_command(sub, "database", help="remove a database definition",
                    example="ess drop database wood", handler=_drop)  # fmt: skip
    d.add_argument("dbname", help="database name")
    for kind in ("table", "vector"):
        t = add_command(sub, kind, help=f"remove a {kind} from the active database",
                        example=f"ess drop {kind} allsales", handler=_drop)  # fmt: skip
        t.add_argument("name", help=f"{kind} name")
    add_command(sub, "variable", help="remove the Var vector of the active database",
                example="ess drop variable", handler=_drop)  # fmt: skip

    p = add_command(subparsers, "use", help="set the active UDB database",
                    example="ess use wood", handler=_use)  # fmt: skip
    p.add_argument("dbname", help="database name")

    p = add_command(subparsers, "udbd", help="start/stop/check the UDB service on the cluster",
                    example="ess udbd restart\ness udbd status --json", handler=_udbd)  # fmt: skip
    p.add_argument("action", choices=["start", "stop", "restart", "status", "ckmem", "cklog"],
                   help="what to do with the service")  # fmt: skip
    p.add_argument("--ports", nargs="*", help="ignored (one service serves all ports)")
    add_json_option(p, "udbd-status")

"""`ess redshift`: load processed data into Redshift or any PostgreSQL (ess.load does the work)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

from ess.cli.common import add_command, note, out
from ess.errors import CredentialsError, UsageError
from ess.workspace import Workspace


def _ws() -> Workspace:
    return Workspace.from_env()


def _password(given: str | None, host: str, port: int, dbname: str, user: str) -> str:
    """The password: as given, else $PGPASSWORD, ~/.pgpass, or a prompt on a terminal."""
    from ess.load.target import pgpass_password

    if given and given != "-":
        return given
    found = os.environ.get("PGPASSWORD") or pgpass_password(host, port, dbname, user)
    if found:
        return found
    if sys.stdin.isatty():
        return getpass.getpass(f"password for {user}@{host}:{port}/{dbname}: ")
    raise CredentialsError(
        f"no password for {user}@{host}:{port}/{dbname}: set PGPASSWORD, add it to ~/.pgpass, "
        "or run on a terminal to be asked"
    )


def _register(args: argparse.Namespace) -> int:
    from ess.load import target

    if args.url:
        if args.clusterid:
            raise UsageError("register: give CLUSTERID DBNAME USER PASSWORD or --url, not both")
        host, port, dbname, user, in_url = target.parse_url(args.url)
        reg = target.Registration("postgresql", host, port, dbname, user)
        password = _password(in_url, host, port, dbname, user)
    else:
        if not (args.clusterid and args.dbname and args.user):
            raise UsageError("register: give CLUSTERID DBNAME USER [PASSWORD], or --url URL")
        from ess.cluster.aws import region
        from ess.load.redshift import describe_cluster

        info = describe_cluster(args.clusterid)
        reg = target.Registration(
            "redshift",
            info.host,
            info.port,
            args.dbname,
            args.user,
            cluster_id=args.clusterid,
            redshift=True,
            region=region(),
        )
        password = _password(args.password, info.host, info.port, args.dbname, args.user)
    from dataclasses import replace

    reg = replace(reg, staging=args.staging or "", iam_role=args.iam_role or "")
    if args.staging:
        from ess.load.redshift import split_s3

        split_s3(args.staging)
    if not args.no_connect:
        conn = target.connect(reg, password, autocommit=True)
        try:
            reg = replace(reg, redshift=target.server_is_redshift(conn))
        finally:
            conn.close()
    target.save(_ws(), reg, password)
    note(f"registered {reg.describe()}")
    return 0


def _deregister(args: argparse.Namespace) -> int:
    from ess.load import target

    if target.forget(_ws()):
        note("deregistered")
    else:
        note("nothing was registered")
    return 0


def _list(args: argparse.Namespace) -> int:
    from ess.load.redshift import list_clusters
    from ess.load.sqlcsv import render_rows

    rows = [
        (c.cluster_id, c.status, c.host, c.port, c.dbname, c.node_type, c.nodes)
        for c in list_clusters()
    ]
    names = ["cluster", "status", "host", "port", "dbname", "node_type", "nodes"]
    for line in render_rows(names, iter(rows)):
        out(line)
    return 0


def _sql(args: argparse.Namespace) -> int:
    from ess.load.sqlcsv import run_sql

    if not args.statement:
        raise UsageError("sql: give one SQL statement, e.g. ess redshift sql 'select 1'")
    for line in run_sql(_ws(), args.statement):
        out(line)
    return 0


def _gentable(args: argparse.Namespace) -> int:
    from ess.load.schema import gentable

    sql, notes = gentable(_ws(), args.table, args.category, keys=args.key, label=args.label)
    for text in notes:
        note(text)
    note(sql)
    return 0


def _stream(args: argparse.Namespace) -> int:
    from ess.load.stream import FileLoad, LoadRequest, load_stream

    table = args.table
    command = args.shell_command or "cat"
    req = LoadRequest(
        category=args.category,
        lower=args.lower,
        upper=args.upper,
        table=table,
        command=command,
        options=tuple(args.options or ()),
        threads=args.threads,
        label=args.label,
        reload=args.reload,
        master=args.master,
    )

    def on_file(f: FileLoad) -> None:
        if f.rejected:
            note(f"{f.path}: {f.rejected} rows rejected (see ess_load_errors)")

    summary = load_stream(_ws(), req, on_file=on_file)
    skipped = summary.count("skipped")
    note(
        f"loaded {summary.rows} rows from {summary.count('loaded')} files into {table}"
        + (f"; {skipped} files already loaded, skipped" if skipped else "")
        + (f"; {summary.rejected} rows rejected" if summary.rejected else "")
    )
    return 0


def register(subparsers: Any) -> None:
    from ess.cli.run import _cancellable

    p = add_command(
        subparsers,
        "redshift",
        help="load data into Redshift or any PostgreSQL",
        example="ess redshift register --url postgresql://me@127.0.0.1:5432/db\n"
        "ess redshift gentable purchase purchase --key 'userID = distkey'\n"
        "ess redshift stream purchase 2014-09-01 2014-09-03 'aq_pp -f,+1,eok - -d %cols "
        "-o,notitle -' purchase --options TRUNCATECOLUMNS\n"
        "ess redshift sql 'select count(*) from purchase'",
        description="Link a Redshift cluster or a PostgreSQL database, create tables from a "
        "category's column spec, and load each file's command output into a table from the "
        "workers, exactly once per file (docs/redshift.md).",
    )
    sub = p.add_subparsers(dest="redshift_command", metavar="{list,register,deregister,sql,...}")
    sub.required = True
    q = add_command(
        sub,
        "list",
        help="list the Redshift clusters this account/role sees",
        example="ess redshift list",
        handler=_list,
    )
    q = add_command(
        sub,
        "register",
        help="link a Redshift cluster (by id) or a PostgreSQL database (--url)",
        example="ess redshift register redshiftdemo dev essentia --staging s3://b/tmp "
        "--iam-role arn:aws:iam::123456789012:role/load\n"
        "PGPASSWORD=... ess redshift register --url postgresql://me@db.example:5432/logs",
        handler=_register,
        description="Store the database's address and user (the password in its own 0600 "
        "file, never printed). The password: the 4th argument (visible to ps: prefer '-'), "
        "else $PGPASSWORD, ~/.pgpass or a prompt.",
    )
    q.add_argument("clusterid", nargs="?", help="the Redshift cluster identifier")
    q.add_argument("dbname", nargs="?", help="the database name")
    q.add_argument("user", nargs="?", help="the database user")
    q.add_argument("password", nargs="?", help="the password ('-' or none: see above)")
    q.add_argument("--url", help="postgresql://USER@HOST:PORT/DBNAME of any PostgreSQL server")
    q.add_argument("--staging", help="s3://BUCKET/PREFIX where Redshift loads are staged")
    q.add_argument("--iam-role", help="IAM role ARN Redshift assumes to read the staging prefix")
    q.add_argument(
        "--no-connect", action="store_true", help="store without trying to connect first"
    )
    add_command(
        sub,
        "deregister",
        help="forget the linked database (and its password)",
        example="ess redshift deregister",
        handler=_deregister,
    )
    q = add_command(
        sub,
        "sql",
        help="run one SQL statement; print rows as CSV (quoted header and strings)",
        example="ess redshift sql 'select userid, sum(price) from purchase group by 1'",
        handler=_sql,
    )
    q.add_argument("statement", metavar="command", nargs="?", help="the SQL statement")
    q = add_command(
        sub,
        "gentable",
        help="CREATE TABLE from a category's column spec (X columns skipped)",
        example="ess redshift gentable purchase purchase --key 'userID = distkey'",
        handler=_gentable,
    )
    q.add_argument(
        "--key",
        action="append",
        default=[],
        help="'column = distkey|sortkey|encode TYPE' (Redshift only; repeatable)",
    )
    q.add_argument("--label", help="datastore of the category")
    q.add_argument("table", help="the table to create")
    q.add_argument("category", help="the category whose column spec gives the columns")
    q = add_command(
        sub,
        "stream",
        help="load each file's command output into a table, from the workers",
        example="ess redshift stream purchase 2014-09-01 2014-09-03 "
        "'aq_pp -f,+1,eok - -d %cols -o,notitle -' purchase --options TRUNCATECOLUMNS",
        handler=_cancellable(_stream),
        description="Like ess stream, but each file's command output (headerless CSV) is "
        "loaded into TABLE: COPY FROM STDIN on each worker's own connection (PostgreSQL) "
        "or S3 staging + one manifest COPY (Redshift). A file's rows and its ledger row "
        "commit together; files already loaded are skipped.",
    )
    q.add_argument("--label", help="datastore of the category")
    q.add_argument("--threads", type=int, help="parallel loads per node")
    q.add_argument(
        "--options",
        nargs="*",
        help="Redshift COPY options: TRUNCATECOLUMNS, MAXERROR n, IGNOREHEADER n, NULL AS 's'...",
    )
    q.add_argument(
        "--reload",
        action="store_true",
        help="load files again even if the ledger has them (their earlier rows stay)",
    )
    q.add_argument("--master", action="store_true", help="run the loads on this machine only")
    q.add_argument("category", help="the category whose files are loaded")
    q.add_argument("lower", help="first date (inclusive) or *")
    q.add_argument("upper", help="last date (inclusive) or *")
    q.add_argument(
        "shell_command",
        metavar="command",
        nargs="?",
        default="cat",
        help="command fed each file, printing headerless CSV (default: cat)",
    )
    q.add_argument("table", help="the table to load into")

"""`ess stream`, `ess exec`, `ess file`: parse, call ess.run, print results in order."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ess.cli.common import add_command, note, out
from ess.workspace import Workspace


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[int], None] | None]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as bar:
        task = bar.add_task("stream", total=total)
        yield lambda n: bar.advance(task, n)


def _stream(args: argparse.Namespace) -> int:
    from ess.engine.pool import LocalPool
    from ess.cluster.session import open_pool
    from ess.run.stream import (
        StreamRequest,
        debug_line,
        failure,
        make_batches,
        plan,
        resolve,
        run_ordered,
    )
    from ess.udb.remote import with_udb

    ws = Workspace.from_env()
    req = StreamRequest(
        category=args.category,
        lower=args.lower,
        upper=args.upper,
        command=args.shell_command,
        exclude=args.exclude,
        master=args.master,
        debug=args.debug,
        bulk=args.bulk,
        threads=args.threads,
        archive=args.archive,
        label=args.label,
        limit=args.limit,
        quitonerror=args.quitonerror,
        s3out=args.s3out,
    )
    if args.threads is not None and args.threads < 1:
        from ess.errors import UsageError

        raise UsageError("--threads must be at least 1")
    stdout = sys.stdout.buffer
    stderr = sys.stderr.buffer
    failed = []
    resolved = resolve(ws, req)
    if not resolved.files:
        return 0
    with open_pool(ws, master=args.master, threads=args.threads) as pool:
        pipelines, sizes = plan(
            resolved,
            req,
            num_nodes=pool.num_nodes,
            num_threads=pool.threads_per_node,
            shared_filesystem=pool.shared_filesystem,
            local=isinstance(pool, LocalPool),
        )
        pipelines = with_udb(ws, pool, pipelines)
        batches = make_batches(pipelines, sizes, slots=pool.total_slots)
        with _progress(args.progress, len(pipelines)) as on_done:
            for r in run_ordered(pool, batches, quitonerror=args.quitonerror, on_done=on_done):
                if args.debug:
                    paths = [s.path for s in pipelines[r.index].sources]
                    stdout.write(debug_line(paths, r.command).encode() + b"\n")
                stdout.write(r.stdout)
                stdout.flush()
                if r.ok:
                    stderr.write(r.stderr)
                    stderr.flush()
                else:
                    failed.append(r)
    if failed:
        raise failure(failed, total=len(pipelines))
    return 0


def _exec(args: argparse.Namespace) -> int:
    from ess.errors import CommandFailed

    ws = Workspace.from_env()
    output = None
    if args.s3out:
        from ess.datastore.api import resolve_location

        output = resolve_location(ws, args.s3out)
    if args.debug:
        out(args.shell_command)
        sys.stdout.flush()
    failed = []
    for r in _exec_results(ws, args.shell_command, master=args.master, output=output):
        sys.stdout.buffer.write(r.stdout)
        sys.stdout.flush()
        sys.stderr.buffer.write(r.stderr)
        sys.stderr.flush()
        if not r.ok:
            failed.append(r)
    if failed:
        lines = [f"command failed on {len(failed)} node(s)"]
        lines += [f"  {r.label}: {r.error or f'exit status {r.returncode}'}" for r in failed]
        raise CommandFailed("\n".join(lines))
    return 0


def _exec_results(ws: Workspace, command: str, *, master: bool, output: Any) -> Iterator[Any]:
    from ess.cluster.session import open_pool
    from ess.run.exec import exec_pipelines, run_exec
    from ess.udb.remote import with_udb

    with open_pool(ws, master=master) as pool:
        yield from run_exec(pool, with_udb(ws, pool, exec_pipelines(pool, command, output=output)))


def _file_pool() -> Any:
    from ess.cluster.session import open_pool

    return open_pool(Workspace.from_env())


def _file_push(args: argparse.Namespace) -> int:
    from ess.run.files import push

    with _file_pool() as pool:
        for line in push(pool, [Path(f) for f in args.files], dest=args.dest):
            note(f"pushed {line}")
    return 0


def _file_get(args: argparse.Namespace) -> int:
    from ess.run.files import get

    with _file_pool() as pool:
        for line in get(pool, list(args.name)):
            note(f"got {line}")
    return 0


def _file_mkdir(args: argparse.Namespace) -> int:
    from ess.run.files import mkdir

    with _file_pool() as pool:
        mkdir(pool, args.name)
    return 0


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "file",
        help="move files between master and workers",
        example="ess file push data.csv --dest in/\ness file get in/result.csv",
    )
    sub = p.add_subparsers(dest="file_command", metavar="{push,get,mkdir}")
    sub.required = True
    q = add_command(
        sub,
        "push",
        help="copy files from the master to every worker",
        example="ess file push data.csv --dest in/",
        handler=_file_push,
    )
    q.add_argument("--dest", help="directory on the workers (default: working directory)")
    q.add_argument("files", nargs="*", help="local files to copy")
    q = add_command(
        sub,
        "get",
        help="fetch files or folders from the workers",
        example="ess file get out/result.csv",
        handler=_file_get,
    )
    q.add_argument("name", nargs="*", help="files or folders on the workers")
    q = add_command(
        sub,
        "mkdir",
        help="create a directory on every worker",
        example="ess file mkdir in",
        handler=_file_mkdir,
    )
    q.add_argument("name", help="directory to create")

    p = add_command(
        subparsers,
        "stream",
        help="stream category files through a command",
        example="ess stream browse 2014-09-01 2014-09-07 'wc -l'\n"
        "ess stream browse '*' '*' 'bzip2 -c > ./bz2/%file.bz2' --progress",
        handler=_stream,
        description="Pipe each file of CATEGORY dated within [lower, upper] ('*' = open), "
        "decompressed by content, into COMMAND (bash, set -o pipefail). Outputs are printed "
        "whole and in file order. Tokens: %file %FILE %path %cols %delim %num_nodes %node_id "
        "%num_threads %thread_id.",
    )
    p.add_argument("--exclude", help="also skip files matching this glob")
    p.add_argument("--master", action="store_true", help="run on the master only")
    p.add_argument("--debug", action="store_true", help="echo each command line before output")
    p.add_argument(
        "--bulk", action="store_true", help="one command per node fed with all its files"
    )
    p.add_argument("--threads", type=int, help="parallel commands per node")
    p.add_argument("--archive", help="glob of the archive members to extract")
    p.add_argument("--label", help="datastore to take the category from")
    p.add_argument("--progress", action="store_true", help="show a progress bar on stderr")
    p.add_argument("--limit", type=int, help="stream at most LIMIT files")
    p.add_argument(
        "--quitonerror", action="store_true", help="stop the whole stream when a command fails"
    )
    p.add_argument("--s3out", help="write each output to datastore location label:path")
    p.add_argument("category", help="the category whose files are streamed")
    p.add_argument("lower", help="first date (inclusive), YYYY-MM-DD[ HH[:MM[:SS]]] or *")
    p.add_argument("upper", help="last date (inclusive), YYYY-MM-DD[ HH[:MM[:SS]]] or *")
    p.add_argument(
        "shell_command",
        metavar="command",
        nargs="?",
        default="cat",
        help="shell command fed each file on stdin (default: cat)",
    )

    p = add_command(
        subparsers,
        "exec",
        help="run a command on every worker (or the master)",
        example="ess exec 'hostname'\ness exec --master 'aq_udb -cnt wood:usersales'",
        handler=_exec,
    )
    p.add_argument("--master", action="store_true", help="run only on the master")
    p.add_argument("--debug", action="store_true", help="echo the command before running it")
    p.add_argument("--s3out", help="write the output to datastore location label:path")
    p.add_argument("shell_command", metavar="command", help="shell command string")

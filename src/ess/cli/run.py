"""`ess stream`, `ess exec`, `ess file`: parse, call ess.run.api, print results in order."""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from ess.cli.common import add_command, note, out
from ess.workspace import Workspace


def _api() -> ModuleType:
    """ess.run.api, with the UDB's pipeline environment registered (commands on remote
    workers reach the UDB through it; the run layer itself does not know the UDB)."""
    import ess.udb.remote  # noqa: F401 - registers itself with ess.run.env
    from ess.run import api
    from ess.warm import local as _warm  # noqa: F401 - so does the local warm service

    return api


#: Signals that stop a run like ^C does (exit status 128 + the signal's number).
STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwinds like ^C, so the run is cancelled on the way out."""


@contextlib.contextmanager
def _stoppable() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise in the main thread, so the run layer cancels the
    command run everywhere (queued tasks dropped, running pipelines' process groups ended)
    before ``ess`` exits. A second signal while that cleanup runs exits at once; the cluster
    side still cancels the run when it sees the connection close."""
    got: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        if got:
            os._exit(128 + got[0])
        got.append(signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise _Stopped(signum)

    # a signal ignored when ess started (nohup, `cmd &` in a script) stays ignored
    wanted = [sig for sig in STOPPING if signal.getsignal(sig) is not signal.SIG_IGN]
    previous = {sig: signal.signal(sig, on_signal) for sig in wanted}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _cancellable(handler: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    """``handler`` under :func:`_stoppable`: ^C exits 130 (ess's usual interrupt), SIGTERM 143
    and SIGHUP 129, after the run was cancelled."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        with _stoppable():
            try:
                return handler(args)
            except _Stopped as stop:
                sys.stderr.write("ess: terminated\n")
                return 128 + int(stop.args[0])

    return run


class _Bar:
    """A rich progress bar on stderr, started when the stream knows how many files it runs."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._task: Any = None

    def start(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task("stream", total=total)

    def advance(self, done: int) -> None:
        self._bar.advance(self._task, done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _stream(args: argparse.Namespace) -> int:
    api = _api()
    req = api.StreamRequest(
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
    stdout = sys.stdout.buffer
    stderr = sys.stderr.buffer
    bar = _Bar() if args.progress else None
    try:
        for r in api.stream(Workspace.from_env(), req, progress=bar):
            if r.echo is not None:
                stdout.write(r.echo.encode() + b"\n")
            if r.error is None:  # a file that could not be read gets no result line
                stdout.write(r.stdout)
            stdout.flush()
            if r.ok:  # a failed file's stderr goes into the error at the end
                stderr.write(r.stderr)
                stderr.flush()
    finally:
        if bar is not None:
            bar.close()
    return 0


def _exec(args: argparse.Namespace) -> int:
    api = _api()
    req = api.ExecRequest(
        command=args.shell_command, master=args.master, debug=args.debug, s3out=args.s3out
    )
    results = api.execute(Workspace.from_env(), req)
    if args.debug:
        out(args.shell_command)
        sys.stdout.flush()
    for r in results:
        sys.stdout.buffer.write(r.stdout)
        sys.stdout.flush()
        sys.stderr.buffer.write(r.stderr)
        sys.stderr.flush()
    return 0


def _file_push(args: argparse.Namespace) -> int:
    lines = _api().push(Workspace.from_env(), [Path(f) for f in args.files], dest=args.dest)
    for line in lines:
        note(f"pushed {line}")
    return 0


def _file_get(args: argparse.Namespace) -> int:
    for line in _api().get(Workspace.from_env(), list(args.name)):
        note(f"got {line}")
    return 0


def _file_mkdir(args: argparse.Namespace) -> int:
    _api().mkdir(Workspace.from_env(), args.name)
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
        handler=_cancellable(_file_push),
    )
    q.add_argument("--dest", help="directory on the workers (default: working directory)")
    q.add_argument("files", nargs="*", help="local files to copy")
    q = add_command(
        sub,
        "get",
        help="fetch files or folders from the workers",
        example="ess file get out/result.csv",
        handler=_cancellable(_file_get),
    )
    q.add_argument("name", nargs="*", help="files or folders on the workers")
    q = add_command(
        sub,
        "mkdir",
        help="create a directory on every worker",
        example="ess file mkdir in",
        handler=_cancellable(_file_mkdir),
    )
    q.add_argument("name", help="directory to create")

    p = add_command(
        subparsers,
        "stream",
        help="stream category files through a command",
        example="ess stream browse 2014-09-01 2014-09-07 'wc -l'\n"
        "ess stream browse '*' '*' 'bzip2 -c > ./bz2/%file.bz2' --progress",
        handler=_cancellable(_stream),
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
        handler=_cancellable(_exec),
    )
    p.add_argument("--master", action="store_true", help="run only on the master")
    p.add_argument("--debug", action="store_true", help="echo the command before running it")
    p.add_argument("--s3out", help="write the output to datastore location label:path")
    p.add_argument("shell_command", metavar="command", help="shell command string")

"""The run layer as a library: a request in, results out in order; nothing printed.

``stream(ws, StreamRequest)`` yields one :class:`FileResult` per file (per node group with
``bulk``) in file order; ``execute(ws, ExecRequest)`` yields one result per node in node order;
``push``/``get``/``mkdir`` move files. Requests are checked when the function is called (a bad
date, category or ``--s3out`` fails before any cluster work); the work itself starts when the
results are iterated. Files or nodes whose command failed are yielded like the others (with
``ok`` False) and, after the last result, make the iteration raise
:class:`~ess.errors.CommandFailed` naming them. The cluster connection is looked up once per
call and handed to the registered environment providers (:mod:`ess.run.env`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from ess.cluster.provider import provider_for
from ess.engine.connection import Connection
from ess.engine.pool import LocalPool, TaskPool
from ess.engine.session import pool_for
from ess.errors import CommandFailed, UsageError
from ess.run import files as _files
from ess.run.env import RunContext, RunHooks, RunKind, apply_env_providers, prepare_run
from ess.run.exec import ExecRequest, exec_pipelines, run_exec
from ess.run.pipeline import PipelineResult
from ess.run.progress import RunRecorder
from ess.run.stream import (
    Resolved,
    StreamRequest,
    debug_line,
    failure,
    make_batches,
    plan,
    resolve,
    run_ordered_groups,
)
from ess.workspace import Workspace

__all__ = [
    "ExecRequest",
    "FileResult",
    "NodeResult",
    "Progress",
    "StreamRequest",
    "execute",
    "get",
    "mkdir",
    "push",
    "stream",
]

#: One node's outcome of ``execute`` (label = the node's name).
NodeResult = PipelineResult


@dataclass(frozen=True)
class FileResult:
    """One file's (or one ``bulk`` group's) outcome of ``stream``."""

    index: int
    label: str  # the file path (with "(+N files)" for a bulk group)
    paths: tuple[str, ...]
    command: str  # as run, with every token substituted
    returncode: int
    stdout: bytes
    stderr: bytes
    node: str
    error: str | None = None  # reading/decompressing the input failed
    echo: str | None = None  # with ``debug``: Essentia's command echo, printed before stdout

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.error is None


class Progress(Protocol):
    """Told how many files a stream will run, then as they finish (e.g. a progress bar)."""

    def start(self, total: int) -> None: ...

    def advance(self, done: int) -> None: ...


@contextmanager
def _session(
    ws: Workspace, *, master: bool = False, threads: int | None = None
) -> Iterator[tuple[TaskPool, Connection | None]]:
    """The pool tasks run on, and the connection it came from (looked up once). ``master``:
    this machine, ``threads`` at a time (default 1, Essentia's sequential local mode).
    Otherwise the platform's running cluster (dead daemons revived first) or, with none
    running, this machine with one task per core."""
    conn = None if master else provider_for(ws).connection(revive=True)
    with pool_for(conn, master=master, threads=threads) as pool:
        yield pool, conn


def stream(
    ws: Workspace, req: StreamRequest, *, progress: Progress | None = None
) -> Iterator[FileResult]:
    """Run ``req`` over its category's files; yield each file's result in file order."""
    if req.threads is not None and req.threads < 1:
        raise UsageError("--threads must be at least 1")
    resolved = resolve(ws, req)
    return _stream(ws, req, resolved, progress)


def _stream(
    ws: Workspace, req: StreamRequest, resolved: Resolved, progress: Progress | None
) -> Iterator[FileResult]:
    if not resolved.files:
        return
    failed: list[PipelineResult] = []
    with _session(ws, master=req.master, threads=req.threads) as (pool, conn):
        pipelines, sizes = plan(
            resolved,
            req,
            num_nodes=pool.num_nodes,
            num_threads=pool.threads_per_node,
            shared_filesystem=pool.shared_filesystem,
            local=isinstance(pool, LocalPool),
        )
        ctx = RunContext(ws, pool, conn, RunKind.STREAM, command=req.command)
        pipelines, hooks = prepare_run(ctx, pipelines)
        batches = make_batches(pipelines, sizes, slots=pool.total_slots)
        if progress is not None:
            progress.start(len(pipelines))
        size_of = {f.path: f.size for f in resolved.files}
        record = RunRecorder.start(
            ws, kind="stream", command=req.command, detail=f"{req.category} {req.lower} "
            f"{req.upper}", labels=[p.label for p in pipelines],
            sizes=[sum(size_of.get(s.path, 0) for s in p.sources) for p in pipelines],
        )  # fmt: skip

        def on_done(n: int) -> None:
            record.completed(n)
            if progress is not None:
                progress.advance(n)

        gather = max((h.gather for h in hooks), default=1)
        groups = run_ordered_groups(pool, batches, quitonerror=req.quitonerror,
                                    on_done=on_done, gather=gather)  # fmt: skip
        for r in _recorded(_after_each(groups, hooks), record):
            paths = tuple(s.path for s in pipelines[r.index].sources)
            echo = debug_line(paths, r.command) if req.debug else None
            yield FileResult(
                index=r.index,
                label=r.label,
                paths=paths,
                command=r.command,
                returncode=r.returncode,
                stdout=r.stdout,
                stderr=r.stderr,
                node=r.node,
                error=r.error,
                echo=echo,
            )
            if not r.ok:
                failed.append(r)
    if failed:
        raise failure(failed, total=len(pipelines))


def _recorded(results: Iterator[PipelineResult], record: RunRecorder) -> Iterator[PipelineResult]:
    """``results``, each one noted in the run's record (``ess ui`` shows it) as it passes."""
    finished = False
    try:
        for r in results:
            record.file_done(r.index, ok=r.ok, node=r.node, returncode=r.returncode,
                             error=r.error, stderr=r.stderr)  # fmt: skip
            yield r
        finished = True
    finally:
        record.finish(finished)


def _after_each(
    groups: Iterator[list[PipelineResult]], hooks: Sequence[RunHooks]
) -> Iterator[PipelineResult]:
    """The results of ``groups`` one by one, each group's ``after_files`` hooks run before
    they are reported (a hook's complaint fails the file); every ``finish`` hook once at the
    end, told whether the run went through (False also when the caller stops iterating or
    ^C)."""
    finished = False
    try:
        for group in groups:
            for hook in hooks:
                if hook.after_files is not None:
                    whys = hook.after_files([(r.index, r.ok) for r in group])
                    group = [_failed(r, why) for r, why in zip(group, whys, strict=True)]
            yield from group
        finished = True
    finally:
        for hook in hooks:
            if hook.finish is not None:
                hook.finish(finished)


def _failed(r: PipelineResult, why: str | None) -> PipelineResult:
    if why is None:
        return r
    return replace(r, error=why if r.error is None else f"{r.error}; {why}")


def execute(ws: Workspace, req: ExecRequest) -> Iterator[NodeResult]:
    """Run ``req.command`` once per node (once on this machine with ``master`` or without a
    cluster); yield each node's result in node order."""
    output = None
    if req.s3out:
        from ess.datastore.api import resolve_location

        output = resolve_location(ws, req.s3out)
    return _execute(ws, req, output)


def _execute(ws: Workspace, req: ExecRequest, output: Any) -> Iterator[NodeResult]:
    failed = []
    with _session(ws, master=req.master) as (pool, conn):
        pipelines = exec_pipelines(pool, req.command, output=output)
        pipelines = apply_env_providers(RunContext(ws, pool, conn, RunKind.EXEC), pipelines)
        record = RunRecorder.start(
            ws, kind="exec", command=req.command, labels=[p.label for p in pipelines]
        )
        for r in _recorded(run_exec(pool, pipelines), record):
            yield r
            if not r.ok:
                failed.append(r)
    if failed:
        lines = [f"command failed on {len(failed)} node(s)"]
        lines += [f"  {r.label}: {r.error or f'exit status {r.returncode}'}" for r in failed]
        raise CommandFailed("\n".join(lines))


def push(ws: Workspace, files: Sequence[Path], *, dest: str | None = None) -> list[str]:
    """Copy ``files`` to every node (once when the nodes share this filesystem); returns
    ``node:path`` per copy written."""
    with _session(ws) as (pool, _conn):
        return _files.push(pool, list(files), dest=dest)


def get(ws: Workspace, names: Sequence[str], *, into: Path | None = None) -> list[str]:
    """Fetch ``names`` (files or folders) from every node into ``into`` (default: here)."""
    with _session(ws) as (pool, _conn):
        return _files.get(pool, list(names), into=into)


def mkdir(ws: Workspace, name: str) -> list[str]:
    with _session(ws) as (pool, _conn):
        return _files.mkdir(pool, name)

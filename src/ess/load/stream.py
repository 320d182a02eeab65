"""``ess redshift stream`` on the master: ess stream's files, each loaded by its worker.

The file selection, date range, substitutions (``%file``, ``%cols``, ...), default ``cat``
and planning are ``ess stream``'s (:mod:`ess.run.stream`). Each file's pipeline runs the
loader (:mod:`ess.load.copyin`) instead of the command; the loader runs the command (as
substituted) and sends its output straight into the database on the worker's own
connection (PostgreSQL), or to an S3 staging part (Redshift). Nothing of the data passes
through the master. The loader's one-line JSON summary comes back as the pipeline's stdout.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ess.errors import CommandFailed, UsageError
from ess.load import ledger
from ess.load.copyin import ENV_JOB, ENV_PASSWORD
from ess.load.options import CopyOptions, parse_options
from ess.load.target import Registration, connect, fold_name, load, quote_table, server_error
from ess.run.pipeline import Pipeline, WorkerHook
from ess.workspace import Workspace

ENV_PYTHON = "ESS_LOAD_PYTHON"
LOADER = f'"${ENV_PYTHON}" -m ess.load.copyin'

Connector = Callable[[Registration, str], Any]
CHANGED = "changed since it was loaded (--reload loads it again; its earlier rows stay)"


@dataclass(frozen=True)
class LoadRequest:
    category: str
    lower: str
    upper: str
    table: str
    command: str = "cat"
    options: tuple[str, ...] = ()
    threads: int | None = None
    label: str | None = None
    reload: bool = False
    master: bool = False


@dataclass(frozen=True)
class FileLoad:
    """One file's outcome: ``status`` loaded | skipped | changed | staged | failed."""

    index: int
    path: str
    status: str
    rows: int = 0
    rejected: int = 0
    node: str = ""
    error: str = ""


@dataclass
class LoadSummary:
    files: list[FileLoad] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(f.status == status for f in self.files)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files if f.status == "loaded")

    @property
    def rejected(self) -> int:
        return sum(f.rejected for f in self.files if f.status == "loaded")


def python_path(_payload: Any) -> Mapping[str, str]:
    """Worker hook: the loader runs under the worker's own Python (ess is installed there)."""
    return {ENV_PYTHON: sys.executable}


def _default_connector(reg: Registration, password: str) -> Any:
    return connect(reg, password)


def load_stream(
    ws: Workspace,
    req: LoadRequest,
    *,
    connector: Connector | None = None,
    on_file: Callable[[FileLoad], None] | None = None,
) -> LoadSummary:
    """Load the files of ``req``; ``on_file`` is told each file's outcome in file order.
    Raises CommandFailed naming the failed files (the others stay loaded)."""
    from ess.run.stream import StreamRequest, resolve

    connector = connector or _default_connector
    reg, password = load(ws)
    opts = parse_options(req.options)
    if not reg.redshift:
        opts.check_postgresql()
    elif not (reg.staging and reg.iam_role):
        raise UsageError(
            "a Redshift load stages files in S3: ess redshift register ... "
            "--staging s3://BUCKET/PREFIX --iam-role ARN"
        )
    table = quote_table(req.table)
    stream_req = StreamRequest(
        category=req.category,
        lower=req.lower,
        upper=req.upper,
        command=req.command or "cat",
        threads=req.threads,
        label=req.label,
        master=req.master,
    )
    if req.threads is not None and req.threads < 1:
        raise UsageError("--threads must be at least 1")
    resolved = resolve(ws, stream_req)
    conn = connector(reg, password)
    try:
        done = _prepare_database(conn, table, fold_name(req.table), reg)
        summary = LoadSummary()
        if resolved.files:
            _run(
                ws,
                req,
                stream_req,
                resolved,
                reg,
                password,
                opts,
                table,
                done,
                conn,
                summary,
                on_file,
            )
    finally:
        conn.close()
    failed = [f for f in summary.files if f.status in ("failed", "changed")]
    if failed:
        lines = [f"{len(failed)} of {len(summary.files)} files not loaded"]
        lines += [
            f"  {f.path}: {f.error}" + (f" (on {f.node})" if f.node else "") for f in failed[:10]
        ]
        if len(failed) > 10:
            lines.append(f"  ... and {len(failed) - 10} more")
        raise CommandFailed("\n".join(lines))
    return summary


def _prepare_database(
    conn: Any, table: str, name: str, reg: Registration
) -> dict[str, tuple[int, float]]:
    """The ledger and error tables exist, the target table exists; the files ledgered."""
    import psycopg

    from ess.load.schema import table_columns

    try:
        ledger.ensure_tables(conn)
        with conn.transaction():
            table_columns(conn, table)
            return ledger.ledgered(conn, name) if reg.redshift else {}
    except psycopg.Error as exc:
        raise server_error(exc) from None


def _run(
    ws: Workspace,
    req: LoadRequest,
    stream_req: Any,
    resolved: Any,
    reg: Registration,
    password: str,
    opts: CopyOptions,
    table: str,
    done: dict[str, tuple[int, float]],
    conn: Any,
    summary: LoadSummary,
    on_file: Callable[[FileLoad], None] | None,
) -> None:
    from ess.cluster.provider import provider_for
    from ess.engine.pool import LocalPool
    from ess.engine.session import pool_for
    from ess.run.env import RunContext, RunKind, prepare_run
    from ess.run.stream import make_batches, plan, run_ordered
    from ess.warm import local as _warm  # noqa: F401 - a warm aq_pp for the commands

    mtimes = _mtimes(ws, req)
    name = fold_name(req.table)
    run_prefix = f"{reg.staging.rstrip('/')}/{uuid.uuid4().hex}"
    staged: list[tuple[FileLoad, ledger.FileKey, str]] = []
    master_conn = None if req.master else provider_for(ws).connection(revive=True)
    with pool_for(master_conn, master=req.master, threads=req.threads) as pool:
        pipelines, sizes = plan(
            resolved,
            stream_req,
            num_nodes=pool.num_nodes,
            num_threads=pool.threads_per_node,
            shared_filesystem=pool.shared_filesystem,
            local=isinstance(pool, LocalPool),
        )
        ctx = RunContext(ws, pool, master_conn, RunKind.STREAM, command=stream_req.command)
        pipelines, _hooks = prepare_run(ctx, pipelines)
        jobs: list[Pipeline] = []
        parts: dict[int, str] = {}
        for p, ref in zip(pipelines, resolved.files, strict=True):
            key = ledger.FileKey(name, ref.path, ref.size, mtimes.get(ref.path, 0.0))
            if reg.redshift and not req.reload and ref.path in done:
                size, mtime = done[ref.path]
                same = size == key.size and abs(mtime - key.mtime) <= 1e-3
                why = "" if same else CHANGED
                f = FileLoad(p.index, ref.path, "skipped" if same else "changed", error=why)
                summary.files.append(f)
                if on_file:
                    on_file(f)
                continue
            part = f"{run_prefix}/{p.index:06d}.gz" if reg.redshift else ""
            parts[p.index] = part
            job = {
                "target": _target(reg),
                "table": req.table,
                "options": list(req.options),
                "path": key.path,
                "size": key.size,
                "mtime": key.mtime,
                "reload": req.reload,
                "command": p.command,
                "mode": "s3" if reg.redshift else "copy",
                "part": part,
            }
            env: tuple[tuple[str, str], ...] = ((ENV_JOB, json.dumps(job)),)
            if not reg.redshift:
                env += ((ENV_PASSWORD, password),)
            hook = WorkerHook(python_path, None, "cannot start the loader")
            jobs.append(replace(p, command=LOADER, env=p.env + env, hooks=(*p.hooks, hook)))
        if not jobs:
            return
        sizes_kept = [sizes[p.index] for p in jobs]
        batches = make_batches(jobs, sizes_kept, slots=pool.total_slots)
        for r in run_ordered(pool, batches):
            path = resolved.files[r.index].path
            f = _outcome(r, path)
            if f.status == "staged":
                size = resolved.files[r.index].size
                key = ledger.FileKey(name, path, size, mtimes.get(path, 0.0))
                staged.append((f, key, parts[r.index]))
                continue
            summary.files.append(f)
            if on_file:
                on_file(f)
    if staged:
        _commit_redshift(conn, reg, opts, table, run_prefix, staged, summary, on_file)


def _commit_redshift(
    conn: Any,
    reg: Registration,
    opts: CopyOptions,
    table: str,
    run_prefix: str,
    staged: list[tuple[FileLoad, ledger.FileKey, str]],
    summary: LoadSummary,
    on_file: Callable[[FileLoad], None] | None,
) -> None:
    import psycopg

    from ess.load.redshift import commit_staged

    try:
        commit_staged(
            conn,
            table=table,
            staging=run_prefix,
            iam_role=reg.iam_role,
            opts=opts,
            keys=[k for _f, k, _p in staged],
            parts=[p for _f, _k, p in staged],
            rows=[f.rows for f, _k, _p in staged],
        )
        status, error = "loaded", ""
    except psycopg.Error as exc:
        status, error = "failed", str(server_error(exc))
    for f, _k, _p in staged:
        done = replace(f, status=status, error=error)
        summary.files.append(done)
        if on_file:
            on_file(done)


def _outcome(r: Any, path: str) -> FileLoad:
    if r.ok:
        try:
            info = json.loads(r.stdout.decode().strip().splitlines()[-1])
            status = info["status"]
            why = CHANGED if status == "changed" else ""
            return FileLoad(r.index, path, status, info["rows"], info["rejected"], r.node, why)
        except (ValueError, KeyError, IndexError):
            pass
    last = r.stderr.decode(errors="replace").strip().splitlines()[-1:]
    text = r.error or (last[0] if last else f"exit status {r.returncode}")
    return FileLoad(r.index, path, "failed", node=r.node, error=text)


def _mtimes(ws: Workspace, req: LoadRequest) -> dict[str, float]:
    """Modification times from the category's cached listing (the file's identity in the
    ledger is its path, size and mtime)."""
    from ess.datastore.api import open_catalog

    catalog = open_catalog(ws, req.label)
    cat = catalog.get(req.category)
    return {f.path: float(f.mtime) for f in catalog.files(cat.name)}


def _target(reg: Registration) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(reg)

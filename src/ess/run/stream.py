"""``ess stream``: plan a category's files into shell pipelines and run them in file order.

Planning happens on the master: resolve the category and date range, substitute the tokens
(:mod:`ess.run.substitute`), group consecutive small files into batches (one Dask task per batch
amortizes the scheduler's per-task cost) and hand the batches to a :class:`TaskPool`. Results
come back whole per file; :func:`run_ordered` yields them in file order as soon as the next one
is available, keeping at most a window of batches in flight so memory stays bounded.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ess.engine.pool import Completions, TaskPool
from ess.errors import ClusterError, CommandFailed
from ess.run.pipeline import NODE_ID, THREAD_ID, Pipeline, PipelineResult, Source, run_pipelines
from ess.run.ship import ship_batch
from ess.run.substitute import single_quote, substitute
from ess.workspace import Workspace

DEFAULT_COMMAND = "cat"
BATCH_MAX_FILES = 32
BATCH_MAX_BYTES = 4 << 20
#: Environment passed to workers that share this machine, so commands behave as in the caller's
#: shell (PATH finds the same tools). Credentials are deliberately not in the list.
ENV_PASSED = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "TZ",
    "TMPDIR",
    "VIRTUAL_ENV",
    "ESS_WORK_DIR",
    "ESS_CACHE_DIR",
    "ESS_AWS_DIR",
)


@dataclass(frozen=True)
class StreamRequest:
    category: str
    lower: str
    upper: str
    command: str = DEFAULT_COMMAND
    exclude: str | None = None
    master: bool = False
    debug: bool = False
    bulk: bool = False
    threads: int | None = None
    archive: str | None = None
    label: str | None = None
    limit: int | None = None
    quitonerror: bool = False
    s3out: str | None = None


@dataclass(frozen=True)
class FileRef:
    path: str
    size: int


def file_values(path: str, root: str) -> dict[str, str]:
    """%FILE (name), %file (name without its last extension), %path (directory under root)."""
    name = posixpath.basename(path)
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    directory = posixpath.dirname(path)
    root = root.strip("/")
    rel = directory.strip("/")
    if root and (rel == root or rel.startswith(root + "/")):
        rel = rel[len(root) :].strip("/")
    return {"FILE": name, "file": stem, "path": rel or "."}


def shell_env() -> tuple[tuple[str, str], ...]:
    env = {k: v for k, v in os.environ.items() if k in ENV_PASSED or k.startswith("LC_")}
    return tuple(sorted(env.items()))


def debug_line(sources: Sequence[str], command: str) -> str:
    """Essentia's echo: ``set -o pipefail; localget -f  '<path>' | <command>`` (two spaces)."""
    paths = " ".join(single_quote(p) for p in sources)
    return f"set -o pipefail; localget -f  {paths} | {command}"


def build_pipelines(
    *,
    files: Sequence[FileRef],
    store: Any,
    command: str,
    columnspec: str,
    delimiter: str,
    compression: str,
    archive: tuple[str, ...],
    preprocess: str,
    num_nodes: int,
    num_threads: int,
    bulk: bool,
    cwd: str | None,
    env: tuple[tuple[str, str], ...],
    output: tuple[Any, str] | None = None,
) -> list[Pipeline]:
    """One pipeline per file (or, with ``bulk``, one per node over consecutive files)."""
    groups = split_balanced(files, num_nodes) if bulk else [[f] for f in files]
    root = getattr(store, "root", "")
    template = f"{preprocess} | {command}" if preprocess else command
    base = {
        "cols": columnspec,
        "delim": delimiter,
        "num_nodes": str(num_nodes),
        "num_threads": str(num_threads),
        "node_id": NODE_ID,
        "thread_id": THREAD_ID,
    }
    run_id = uuid.uuid4().hex
    pipelines = []
    for index, group in enumerate(groups):
        first = group[0]
        values = {**base, **file_values(first.path, root)}
        label = first.path if len(group) == 1 else f"{first.path} (+{len(group) - 1} files)"
        file_env = (
            ("ESS_FILE", values["FILE"]),
            ("ESS_FILE_STEM", values["file"]),
            ("ESS_FILE_DIR", values["path"]),
            ("ESS_FILE_PATH", first.path),
            ("ESS_STDIN_NAME", label),  # how aq_pp names its stdin in input error messages
            ("ESS_FILE_INDEX", str(index)),  # its place in the run (as run hooks are told)
        )
        out = None
        if output is not None:
            out = (output[0], substitute(output[1], values))
        pipelines.append(
            Pipeline(
                index=index,
                label=label,
                command=substitute(template, values),
                sources=tuple(Source(store, f.path, compression, archive) for f in group),
                env=env + file_env,
                cwd=cwd,
                output=out,
                run_id=run_id,
            )
        )
    return pipelines


def split_balanced(files: Sequence[FileRef], parts: int) -> list[list[FileRef]]:
    """Consecutive runs of ``files`` with roughly equal byte totals (at most ``parts``)."""
    if not files:
        return []
    parts = max(1, min(parts, len(files)))
    total = sum(max(f.size, 1) for f in files)
    groups: list[list[FileRef]] = [[]]
    acc = 0
    for i, f in enumerate(files):
        remaining_files = len(files) - i
        remaining_groups = parts - len(groups)
        target = total * len(groups) / parts
        if (
            groups[-1]
            and remaining_groups > 0
            and (acc >= target or remaining_files <= remaining_groups)
        ):
            groups.append([])
        groups[-1].append(f)
        acc += max(f.size, 1)
    return groups


def make_batches(
    pipelines: Sequence[Pipeline], sizes: Sequence[int], *, slots: int
) -> list[tuple[Pipeline, ...]]:
    """Group consecutive small files into batches; keep >= 4 batches per slot for balance."""
    n = len(pipelines)
    if n == 0:
        return []
    per_batch = max(1, min(BATCH_MAX_FILES, n // max(1, 4 * slots)))
    batches: list[tuple[Pipeline, ...]] = []
    current: list[Pipeline] = []
    nbytes = 0
    for p, size in zip(pipelines, sizes, strict=True):
        if current and (len(current) >= per_batch or nbytes + size > BATCH_MAX_BYTES):
            batches.append(tuple(current))
            current, nbytes = [], 0
        current.append(p)
        nbytes += size
    batches.append(tuple(current))
    return batches


def run_ordered(
    pool: TaskPool,
    batches: Sequence[tuple[Pipeline, ...]],
    *,
    quitonerror: bool = False,
    window: int | None = None,
    on_done: Callable[[int], None] | None = None,
) -> Iterator[PipelineResult]:
    """Run ``batches`` on ``pool``; yield every pipeline's result once, in order.

    With ``quitonerror`` the first failure (whenever it arrives) cancels everything not yet
    finished; results before it are still yielded in order, then the failure, then it stops.
    ``on_done(n)`` is called as soon as n more files have finished (for progress bars).
    """
    for group in run_ordered_groups(pool, batches, quitonerror=quitonerror, window=window,
                                    on_done=on_done):  # fmt: skip
        yield from group


def run_ordered_groups(
    pool: TaskPool,
    batches: Sequence[tuple[Pipeline, ...]],
    *,
    quitonerror: bool = False,
    window: int | None = None,
    on_done: Callable[[int], None] | None = None,
    gather: int = 1,
) -> Iterator[list[PipelineResult]]:
    """`run_ordered`, the results handed over in groups of consecutive files: up to
    ``gather`` batches, ready in order; while fewer are ready it waits, unless the next
    batch is not running (nothing would come sooner). A stream that commits imports commits
    a group at once (one merge and one snapshot write instead of several). The window is
    refilled before a group is handed over, so the workers go on while the caller handles
    it. With ``quitonerror`` a group ends at the first failure, and nothing follows it."""
    window = window or max(4 * pool.total_slots, 8)
    completions = Completions()
    in_flight: dict[int, Any] = {}
    batch_of: dict[int, int] = {}
    ready: dict[int, list[PipelineResult]] = {}
    next_submit = next_yield = 0
    stop_at: int | None = None  # batch holding the failure that stops the stream
    run_id = batches[0][0].run_id if batches and batches[0] else ""
    pool.begin_run(run_id)

    def fill() -> None:
        nonlocal next_submit
        while (
            stop_at is None and next_submit < len(batches) and len(in_flight) + len(ready) < window
        ):
            batch = batches[next_submit]
            if not pool.shared_filesystem:  # workers on other machines get the bytes
                batch = ship_batch(batch)
            future = pool.submit(run_pipelines, batch)
            in_flight[next_submit] = future
            batch_of[id(future)] = next_submit
            completions.watch(future)
            next_submit += 1

    try:
        while next_yield < len(batches):
            fill()
            if not _group_ready(next_yield, ready, in_flight, gather):
                if not in_flight:
                    return
                done = completions.wait()
                done = [f for f in done if id(f) in batch_of]
                for future, outcome in zip(done, pool.outcomes(done), strict=True):
                    b = batch_of.pop(id(future))
                    in_flight.pop(b, None)
                    if outcome.error is not None:
                        if stop_at is not None and b > stop_at:
                            continue  # cancelled after the stream was stopped
                        files = ", ".join(p.label for p in batches[b])
                        raise ClusterError(f"running {files} failed: {outcome.error}")
                    ready[b] = outcome.value
                    if on_done is not None:
                        on_done(len(outcome.value))
                    if quitonerror and stop_at is None and not all(r.ok for r in outcome.value):
                        stop_at = b
                        pool.cancel([f for k, f in in_flight.items() if k > b])
                continue
            group: list[PipelineResult] = []
            for _ in range(max(gather, 1)):  # a bounded group: its handling stays short
                if next_yield not in ready:
                    break
                group.extend(ready.pop(next_yield))
                next_yield += 1
            failed = next((i for i, r in enumerate(group) if not r.ok), None)
            if quitonerror and failed is not None:
                yield group[: failed + 1]
                return
            fill()  # the workers go on while the caller handles the group (a commit)
            yield group
            if stop_at is not None and next_yield > stop_at:
                return
    except BaseException:  # ^C, SIGTERM, an error, or the caller stopped iterating
        if in_flight:
            pool.cancel_run(run_id)  # also the pipelines already running
        raise
    finally:
        pool.cancel(in_flight.values())


def _group_ready(first: int, ready: dict[int, Any], in_flight: dict[int, Any],
                 gather: int) -> bool:  # fmt: skip
    """Whether the batches ready from `first` on are handed over now: `gather` of them, or
    fewer when the next batch is not running (not submitted yet: the window is full of
    finished ones, or there is none)."""
    if first not in ready:
        return False
    count = 1
    while first + count in ready:
        count += 1
    return count >= gather or first + count not in in_flight


def failure(results: Sequence[PipelineResult], *, total: int) -> CommandFailed:
    """The error a stream with failed files exits with: names each file and its stderr."""
    lines = [f"{len(results)} of {total} files failed"]
    for r in results[:10]:
        why = r.error or f"exit status {r.returncode}"
        why = why.removeprefix(f"{r.label}: ")  # the file is named once, at the start
        lines.append(f"  {r.label}: {why} (on {r.node})")
        tail = r.stderr.decode(errors="replace").strip().splitlines()[-5:]
        lines.extend(f"    {line}" for line in tail)
    if len(results) > 10:
        lines.append(f"  ... and {len(results) - 10} more")
    return CommandFailed("\n".join(lines))


@dataclass(frozen=True)
class Resolved:
    """What the datastore says about a stream request (no cluster needed to know it)."""

    info: Any  # ess.datastore.api.CategoryInfo
    store: Any  # ess.datastore.api.StoreSpec
    files: tuple[FileRef, ...]
    archive: tuple[str, ...]
    output: tuple[Any, str] | None


def resolve(ws: Workspace, req: StreamRequest) -> Resolved:
    """Resolve the category, dates and --s3out first: a bad request fails before any cluster
    work."""
    from ess.datastore.api import resolve_location, resolve_stream_files
    from ess.datastore.patterns import split_patterns

    info, store, files = resolve_stream_files(
        ws,
        req.category,
        req.lower,
        req.upper,
        label=req.label,
        exclude=req.exclude,
        limit=req.limit,
    )
    archive_text = req.archive if req.archive is not None else info.archive
    archive = tuple(split_patterns(archive_text, option="--archive")) if archive_text else ()
    output = resolve_location(ws, req.s3out) if req.s3out else None
    refs = tuple(FileRef(f.path, f.size) for f in files)
    return Resolved(info=info, store=store, files=refs, archive=archive, output=output)


def plan(
    resolved: Resolved,
    req: StreamRequest,
    *,
    num_nodes: int,
    num_threads: int,
    shared_filesystem: bool,
    local: bool,
) -> tuple[list[Pipeline], list[int]]:
    """The pipelines of a resolved request (and the byte size of each, for batching)."""
    info = resolved.info
    # Workers that share this machine run in the caller's directory with the caller's PATH;
    # the local thread pool inherits both anyway.
    cwd = os.getcwd() if shared_filesystem and not local else None
    env = shell_env() if shared_filesystem and not local else ()
    pipelines = build_pipelines(
        files=resolved.files,
        store=resolved.store,
        command=req.command or DEFAULT_COMMAND,
        columnspec=info.columnspec,
        delimiter=info.delimiter,
        compression=info.compression,
        archive=resolved.archive,
        preprocess=info.preprocess,
        num_nodes=num_nodes,
        num_threads=num_threads,
        bulk=req.bulk,
        cwd=cwd,
        env=env,
        output=resolved.output,
    )
    # --bulk pipelines are few and long: one per task
    sizes = [BATCH_MAX_BYTES] * len(pipelines) if req.bulk else [f.size for f in resolved.files]
    return pipelines, sizes

"""Reading a share of a category's files into typed frames: the worker side of ``ess query``.

Rows are read exactly as ``aq_pp -f,+1,eok FILE -d COLSPEC`` reads them: the same chunked
reader and C parser (:mod:`ess.aq.runner`), so types and the rows dropped because a field does
not convert are aq_pp's. The WHERE condition, when it is an aq_pp filter expression, is compiled
by aq_pp's own compiler into a ``-filt`` rule and applied batch by batch, and only the columns the
query reads are kept (string columns nobody reads are not even parsed).

A :class:`ScanTask` is what travels to a worker (pickled, by name); :func:`scan_share` returns
either the rows (Arrow IPC) or, for Essentia's COUNT forms, partial aggregates the master adds
up (:mod:`ess.query.combine`), so a COUNT never ships rows.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import polars as pl

from ess.errors import EssError
from ess.run.pipeline import Source as FileSource
from ess.run.pipeline import open_source

F_SETPIPE_SZ = 1031
PIPE_BYTES = 1 << 20
#: the column the master sorts by for a stable ORDER BY: (file, row) order of the input
ORDINAL = "__ess_ord"


@dataclass(frozen=True)
class ScanTask:
    """One share of one table: files, how to read them, what to keep."""

    files: tuple[FileSource, ...]
    columnspec: str
    delimiter: str
    filt: str | None  # an aq_pp -filt expression
    columns: tuple[str, ...]  # the columns kept, as the spec names them
    partial: Partial | None = None  # aggregate on the worker instead of returning rows
    first_ordinal: int = 0  # > 0: add ORDINAL, file index * 2**32 + row


@dataclass(frozen=True)
class Partial:
    """Essentia COUNT partials: rows per group (``group`` may be empty) and, per DISTINCT
    column, its distinct values."""

    group: tuple[str, ...]
    distinct: tuple[str, ...]


@dataclass(frozen=True)
class ScanResult:
    frames: tuple[bytes, ...]  # Arrow IPC streams: the rows, or the partials in order
    dropped: int  # rows dropped because a field did not convert (aq_pp eok)


def aq_argv(path: str, task: ScanTask, columns: tuple[str, ...] | None = None) -> list[str]:
    """The aq_pp command line whose reading and filtering the scan reproduces."""
    fmt = "-f,+1,eok" if task.delimiter in ("", ",") else f"-f,+1,eok,sep={task.delimiter}"
    argv = [fmt, path, "-d", *task.columnspec.split()]
    if task.filt:
        argv += ["-filt", task.filt]
    columns = task.columns if columns is None else columns
    return [*argv, "-o", os.devnull, "-c", *columns] if columns else argv


def first_column(columnspec: str) -> str:
    from ess.aq.colspec import parse_colspec

    for word in columnspec.split():
        spec = parse_colspec(word)
        if not spec.skip:
            return spec.name
    raise EssError(f"the column spec {columnspec!r} names no column")


def compile_plan(path: str, task: ScanTask) -> Any:
    """aq_pp's compiled plan for the task (an unusable spec or filter raises its error). With
    no column kept (``count(*)``), the first one stands in for the output aq_pp needs."""
    from ess.aq.pp import compile
    from ess.aq.rules import parse_argv

    columns = task.columns or (first_column(task.columnspec),)
    return compile(parse_argv(aq_argv(path, task, columns)))


def check(task: ScanTask) -> None:
    """Raise the error aq_pp would give for the spec and the filter, reading nothing."""
    compile_plan(os.devnull, task)


@contextlib.contextmanager
def _input_path(src: FileSource) -> Iterator[str]:
    """A path aq's reader can open: the file itself when it is a plain local file (mapped,
    not copied), else a pipe fed with its decompressed bytes by a thread."""
    if src.data is None and getattr(src.store, "kind", None) == "local" and not src.archive:
        from ess.datastore.codec import sniff

        if src.compression == "none" or (src.compression == "auto" and _plain(src.path, sniff)):
            yield src.path
            return
    read_fd, write_fd = os.pipe()
    # aq's reader takes what one read of the pipe returns as a batch: a 1 MiB pipe (Linux's
    # default limit) instead of 64 KiB makes batches 16 times larger
    with contextlib.suppress(OSError):
        fcntl.fcntl(write_fd, F_SETPIPE_SZ, PIPE_BYTES)
    errors: list[BaseException] = []
    feeder = threading.Thread(target=_feed, args=(src, write_fd, errors), daemon=True)
    feeder.start()
    try:
        yield f"/dev/fd/{read_fd}"
    finally:
        os.close(read_fd)  # a reader that stopped early: the feeder gets EPIPE and ends
        feeder.join()
    if errors:
        exc = errors[0]
        raise exc if isinstance(exc, EssError) else EssError(f"{src.path}: {exc}")


def _plain(path: str, sniff: Any) -> bool:
    with open(path, "rb") as f:
        return bool(sniff(f.read(512)) == "none")


def _feed(src: FileSource, fd: int, errors: list[BaseException]) -> None:
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    try:
        for stream in open_source(src):
            while n := stream.readinto(buf):  # type: ignore[attr-defined]
                chunk = view[:n]
                while chunk:
                    chunk = chunk[os.write(fd, chunk) :]
    except BrokenPipeError:
        pass  # the reader stopped (a LIMIT was reached)
    except BaseException as exc:  # reported by the reader's side, with the file name
        errors.append(exc)
    finally:
        os.close(fd)


def iter_frames(task: ScanTask) -> Iterator[tuple[pl.DataFrame | None, int, int]]:
    """(filtered frame with the kept columns named as in the spec, its height, 0) for every
    batch of every file of the task, in order; after each file (None, 0, rows it dropped)."""
    from ess.aq.plan import RunState
    from ess.aq.runner import Job

    for offset, src in enumerate(task.files):
        with _input_path(src) as path:
            plan = compile_plan(path, task)
            outcols = plan.outputs[0][1] if task.columns else ()
            steps = plan.steps[:-1]  # the last one writes the output: left out
            st = RunState(random_state=plan.prog.seed)
            st.carries.update(plan.vars_init)
            file_no = task.first_ordinal + offset
            for frame, _lines in Job(plan).batches(st, io.StringIO()):
                start = st.records - frame.height
                for step in steps:
                    frame = step(frame, st)
                exprs = [pl.col(c.name).alias(c.label) for c in outcols]
                if task.first_ordinal:
                    # kept rows keep their input order: batch start + place among the kept
                    base = (file_no << 32) + start
                    exprs.append((pl.int_range(pl.len(), dtype=pl.Int64) + base).alias(ORDINAL))
                yield (frame.select(exprs) if exprs else None), frame.height, 0
            yield None, 0, st.errors


def _ipc(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_ipc_stream(buf)
    return buf.getvalue()


def scan_share(task: ScanTask) -> ScanResult:
    """Read the task's files; return its rows, or its partial aggregates (runs on a worker)."""
    from ess.aq import failures

    with failures.quiet_polars():
        if task.partial is not None:
            return _partials(task, task.partial)
        dropped = 0
        frames: list[pl.DataFrame] = []
        for frame, _height, bad in iter_frames(task):
            dropped += bad
            if frame is not None and frame.height:
                frames.append(frame)
        rows = pl.concat(frames) if frames else None
        return ScanResult((_ipc(rows),) if rows is not None else (), dropped)


def _partials(task: ScanTask, p: Partial) -> ScanResult:
    dropped = 0
    counts: list[pl.DataFrame] = []
    distinct: dict[str, list[pl.Series]] = {c: [] for c in p.distinct}
    for frame, height, bad in iter_frames(task):
        dropped += bad
        if p.group and frame is not None:
            counts.append(frame.group_by(list(p.group)).len(name="n"))
        elif frame is not None or height:
            counts.append(pl.DataFrame({"n": [height]}, schema={"n": pl.Int64}))
        if frame is not None:
            for c in p.distinct:
                distinct[c].append(frame.get_column(c).unique())
    total = pl.concat(counts) if counts else pl.DataFrame({"n": []}, schema={"n": pl.Int64})
    if p.group:
        total = total.group_by(list(p.group)).agg(pl.col("n").sum())
    else:
        total = total.select(pl.col("n").sum())
    out = [_ipc(total)]
    for c in p.distinct:
        out.append(_ipc(pl.concat(distinct[c]).unique().to_frame() if distinct[c] else
                        pl.DataFrame()))  # fmt: skip
    return ScanResult(tuple(out), dropped)

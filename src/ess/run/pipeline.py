"""Worker side: run shell pipelines, feeding them file contents; buffer their output.

A task's result holds the whole stdout/stderr of its pipelines, so a task that is re-run (its
worker died) replaces its output instead of adding to it: the client prints each file exactly
once. Bytes move in large chunks: a plain local file becomes the pipeline's stdin directly (no
copy through Python); compressed data is decompressed by content (``open_decompressed`` sniffs
magic bytes; isal for gzip) on a feeder thread that writes 1 MiB chunks into a 1 MiB pipe.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from ess.engine import runs
from ess.errors import EssError

CHUNK = 1 << 20
F_SETPIPE_SZ = 1031
#: Placeholders the client leaves for the values only the worker knows. File names cannot
#: contain NUL, so no substituted value can forge them.
NODE_ID = "\0node_id\0"
THREAD_ID = "\0thread_id\0"
#: Set for the commands of ``ess exec``: this node's 1-based position among the nodes the exec
#: runs on (its first node is "1" whatever the workers are named). Cleared for every other
#: pipeline, so a command started by an exec's command does not inherit it.
ENV_EXEC_NODE = "ESS_EXEC_NODE"
_SNIFF = 512


@dataclass(frozen=True)
class Source:
    """One input file: where it lives and how to decode it."""

    store: Any  # ess.datastore.api.StoreSpec
    path: str
    compression: str = "auto"
    archive: tuple[str, ...] = ()
    #: The file's raw bytes, shipped from the master to a worker that cannot read ``path``
    #: (see ess.run.ship); None: the worker opens ``path`` itself.
    data: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class WorkerHook:
    """Environment only the worker can compute (see :mod:`ess.run.env`): ``fn(payload)`` runs
    on the worker just before the command starts; what it returns joins the command's
    environment. ``fn`` is a module-level function (it travels pickled, by name)."""

    fn: Callable[[Any], Mapping[str, str]]
    payload: Any
    failure: str  # what an OSError of ``fn`` means, e.g. "cannot write the UDB definitions here"


@dataclass(frozen=True)
class Pipeline:
    """One shell pipeline: ``sources`` (concatenated) piped into ``command``."""

    index: int
    label: str  # what error messages call it (the file path, or "worker-1")
    command: str  # fully substituted except NODE_ID / THREAD_ID placeholders
    sources: tuple[Source, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None
    output: tuple[Any, str] | None = None  # (StoreSpec, path): write stdout there (--s3out)
    run_id: str = ""  # pipelines of one command run share thread ids 1..N
    #: Added by the registered environment providers (ess.run.env), e.g. how the command
    #: reaches the UDB from a worker that does not share the master's disk.
    hooks: tuple[WorkerHook, ...] = ()


@dataclass(frozen=True)
class PipelineResult:
    index: int
    label: str
    command: str
    returncode: int
    stdout: bytes
    stderr: bytes
    node: str
    error: str | None = None  # reading/decompressing the input failed

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.error is None


# -- which node / thread am I ----------------------------------------------------------------
_slots_lock = threading.Lock()
_slots_used: dict[str, set[int]] = {}


@contextlib.contextmanager
def _thread_slot(run_id: str) -> Iterator[int]:
    """The lowest thread id free among the running pipelines of the same command run, so
    %thread_id stays within 1..%num_threads whatever else this worker is running."""
    with _slots_lock:
        used = _slots_used.setdefault(run_id, set())
        slot = 1
        while slot in used:
            slot += 1
        used.add(slot)
    try:
        yield slot
    finally:
        with _slots_lock:
            used.discard(slot)
            if not used:
                _slots_used.pop(run_id, None)


def current_node() -> tuple[str, int]:
    """(name, 1-based number) of the Dask worker running this task; ("master", 1) outside."""
    import sys

    if "distributed" in sys.modules:
        from distributed import get_worker

        from ess.engine.pool import node_number

        try:
            name = str(get_worker().name)
        except ValueError:
            return "master", 1
        num = name.rpartition("-")[2]
        return name, int(num) if num.isdigit() else (node_number() or 1)
    return "master", 1


# -- input -----------------------------------------------------------------------------------
def _is_plain_local(src: Source) -> bool:
    if src.data is not None:
        return False
    if getattr(src.store, "kind", None) != "local" or src.archive:
        return False
    if src.compression not in ("auto", "none"):
        return False
    if src.compression == "none":
        return True
    from ess.datastore.codec import sniff

    with open(src.path, "rb") as f:
        head = f.read(_SNIFF)
    # a tar archive without --archive is refused by open_decompressed, so it is not "plain"
    return sniff(head) == "none"


def _plain_local(src: Source, errors: list[str]) -> bool:
    try:
        return _is_plain_local(src)
    except OSError as exc:
        errors.append(f"{src.path}: {exc.strerror or exc}")
        return False


def open_source(src: Source) -> Iterator[IO[bytes]]:
    """Yield decompressed streams for ``src`` (several for archive members)."""
    from ess.datastore.api import open_store
    from ess.datastore.codec import iter_archive_members, open_decompressed

    shipped = io.BytesIO(src.data) if src.data is not None else None
    with shipped or open_store(src.store).open(src.path) as raw:
        if src.archive:
            for _name, member in iter_archive_members(raw, list(src.archive), name=src.path):
                yield member
        else:
            with open_decompressed(raw, compression=src.compression, name=src.path) as stream:
                yield stream


def _feed(fd: int, sources: tuple[Source, ...], errors: list[str]) -> None:
    """Write the decompressed sources into the pipe ``fd`` (1 MiB at a time), then close it."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    try:
        for src in sources:
            for stream in open_source(src):
                while n := stream.readinto(buf):  # type: ignore[attr-defined]
                    chunk = view[:n]
                    while chunk:
                        chunk = chunk[os.write(fd, chunk) :]
    except BrokenPipeError:
        pass  # the command stopped reading (e.g. head): not an error of the input
    except Exception as exc:  # reported in the result, with the file name
        # ess's own errors (corrupt gzip, ...) already say what failed in which file
        errors.append(str(exc) if isinstance(exc, EssError) else f"{type(exc).__name__}: {exc}")
    finally:
        os.close(fd)


def _widen(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, F_SETPIPE_SZ, CHUNK)


# -- run -------------------------------------------------------------------------------------
def run_pipeline(p: Pipeline) -> PipelineResult:
    if runs.is_cancelled(p.run_id):  # the caller is gone (^C): start nothing more of its run
        raise runs.RunCancelled(f"{p.label}: the command was cancelled")
    node, node_num = current_node()
    with _thread_slot(p.run_id) as thread_id:
        command = p.command.replace(NODE_ID, str(node_num)).replace(THREAD_ID, str(thread_id))
        env = dict(os.environ)
        env.pop(ENV_EXEC_NODE, None)
        env.update(p.env)
        env.update(ESS_NODE_ID=str(node_num), ESS_THREAD_ID=str(thread_id))
        for hook in p.hooks:
            try:
                env.update(hook.fn(hook.payload))
            except OSError as exc:
                why = f"{hook.failure}: {exc}"
                return PipelineResult(p.index, p.label, command, 1, b"", b"", node, error=why)
        first = os.environ.get(runs.ENV_COMMAND_PATH)
        if first:  # this worker's own tools before whatever the pipeline's PATH says
            env["PATH"] = f"{first}{os.pathsep}{env.get('PATH', '')}"
        env.pop(runs.ENV_COMMAND_PATH, None)
        script = "set -o pipefail; " + command
        errors: list[str] = []
        feeder = None
        stdin: Any
        if not p.sources:
            stdin = subprocess.DEVNULL
        elif len(p.sources) == 1 and _plain_local(p.sources[0], errors):
            stdin = open(p.sources[0].path, "rb")  # noqa: SIM115 - closed below
        elif errors:
            return PipelineResult(
                p.index, p.label, command, 1, b"", b"", node, error="; ".join(errors)
            )
        else:
            r, w = os.pipe()
            _widen(w)
            stdin = r
            feeder = threading.Thread(target=_feed, args=(w, p.sources, errors), daemon=True)
        try:
            # its own process group: cancelling the run ends the whole pipeline (ess.engine.runs)
            proc = subprocess.Popen(
                ["bash", "-c", script],
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=p.cwd or None,
                env=env,
                process_group=0,
            )
        except OSError as exc:
            if feeder is not None:
                os.close(w)
            return PipelineResult(
                p.index, p.label, command, 127, b"", b"", node, error=f"cannot start bash: {exc}"
            )
        finally:
            if isinstance(stdin, int) and stdin != subprocess.DEVNULL:
                os.close(stdin)
            elif hasattr(stdin, "close"):
                stdin.close()
        runs.track(p.run_id, proc.pid)
        try:
            if feeder is not None:
                feeder.start()
            out, err = proc.communicate()
            if feeder is not None:
                feeder.join()
        finally:
            runs.untrack(p.run_id, proc.pid)
    if p.output is not None and proc.returncode == 0 and not errors:
        from ess.datastore.api import open_store

        store_spec, path = p.output
        path = path.replace(NODE_ID, str(node_num)).replace(THREAD_ID, str(thread_id))
        open_store(store_spec).write_bytes(path, out)
        out = b""
    return PipelineResult(
        p.index, p.label, command, proc.returncode, out, err, node, error="; ".join(errors) or None
    )


def run_pipelines(batch: tuple[Pipeline, ...]) -> list[PipelineResult]:
    """One task = a few small files run one after another (amortizes per-task overhead)."""
    return [run_pipeline(p) for p in batch]

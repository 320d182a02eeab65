"""Staged imports: what ``aq_pp -imp`` sends inside ``ess stream``, applied in file order.

A stream runs its files in parallel, but the database must end as if they were imported one
after the other (rows of a key in file order, ``+first``/``+last`` and float ``+add`` in that
order), and a file re-run because its worker died must not be imported twice. So inside a
stream an import does not apply its batches: each one is STAGED on the worker owning its
partitions (an Arrow file on that worker's disk, beside its snapshots) under
``(run, file, attempt, part, seq)``, and the master COMMITS the files in file order once each
has finished (:mod:`ess.udb.commit`):

* run: the stream's token; file: the file's index in the run; attempt: one execution of the
  file's command (a re-run after a worker died is a new attempt); part: one ``aq_pp`` process
  of that command (several ``aq_pp -imp`` in one command line), numbered in the order they
  first import; seq: the batch within the part.
* Row stamps in a staged batch are offsets within its part; the commit of a file reserves one
  stamp range for the whole file and shifts them, so stamps follow file order, then part, then
  row order, whatever order the files ran in.
* Each part registers a manifest on the scheduler when its process ends (rows, which batches
  went to which worker, whether every batch was staged). The commit picks one attempt per
  file, applies exactly its batches in order and removes every attempt's staging of the file.

Staged files are written before the staging task returns (a temporary name, then a rename),
so a worker that is killed and comes back still has every batch it acknowledged.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from ess.errors import UdbError
from ess.udb.journal import APPLYING, HEADER, STAGING

#: what a file's journal marker becomes once this worker has applied the file
COMMITTED = "committed"

__all__ = ["APPLYING", "STAGING"]  # imported from here by tests

PART_COL = "__p"  # the partition of each row, in files of an earlier version
SIZES = "sizes"  # metadata: [partition, rows] of the file's partitions, in order
#: rows of consecutive staged batches a commit applies in one merge
GROUP_ROWS = 2_000_000
#: staging folders of runs older than this are removed when a worker starts (a stream killed
#: before it could drop its own)
STALE_AFTER = 7 * 86400


def _store() -> Any:
    from ess.udb.snapshot import worker_store

    return worker_store()


def file_dir(root: Path, run: str, file: int) -> Path:
    return root / STAGING / run / f"f{file}"


def batch_path(root: Path, run: str, file: int, attempt: str, part: int, seq: int) -> Path:
    return file_dir(root, run, file) / attempt / f"{part:04d}-{seq:08d}.arrow"


# ---------------------------------------------------------------------- worker tasks


def w_stage(tag: tuple[str, int, str, int, int], meta: dict[str, Any], parts: Any) -> int:
    """Write one cut batch ({partition: table}, or a batch in shared memory) as a staged
    file; `tag` = (run, file, attempt, part, seq). Idempotent: a resend replaces it."""
    from ess.udb.handoff import unpack

    store = _store()
    return write_batch(batch_path(store.root, *tag), unpack(parts, mapped=True), meta)


def w_root(folder: str, token: str) -> str | None:
    """This worker's store root, for an importer on its machine to stage into (ess.udb.direct);
    None unless this worker sees the asker's directory (the same machine's files)."""
    from ess.udb.handoff import sees
    from ess.udb.snapshot import private_dir

    if not sees(folder, token):
        return None
    root = _store().root
    private_dir(root)  # made at the first write otherwise
    return str(root)


def write_batch(path: Path, parts: dict[int, pa.Table], meta: dict[str, Any]) -> int:
    """`parts` as one Arrow file at `path` (written whole, then renamed); returns rows."""
    from ess.udb.snapshot import private_dir

    pids = sorted(parts)  # in ascending partition order: `_split` cuts the file back into
    tables = [parts[pid] for pid in pids]  # slices by the rows of each, in the metadata
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    sizes = [[pid, parts[pid].num_rows] for pid in pids]
    table = table.replace_schema_metadata({"ess": json.dumps({**meta, SIZES: sizes})})
    private_dir(path.parent)
    tmp = path.with_suffix(".tmp")
    with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    os.replace(tmp, path)
    return table.num_rows


def check_files(root: Path, run: str, files: list[tuple[int, str, list[tuple[int, int, int]]]],
                worker: str) -> list[tuple[Path, int]] | None:  # fmt: skip
    """The staged files of consecutive stream files [(file, attempt, [(part, seq, stamp
    base)])] with their bases, in order, or None when this worker has already committed
    them (a retry whose first try was applied but whose answer was lost with the worker).
    The group commits as one: its journal marker and commit record are its first file's
    (a retry sends the same group). Refuses (before anything is applied) when a batch is
    missing, or when an earlier commit stopped half-way. Marks the commit as started."""
    first = file_dir(root, run, files[0][0])
    if (first / COMMITTED).exists():
        return None
    marker = first / APPLYING
    if marker.exists():
        raise UdbError(
            f"worker {worker}: an earlier commit of file #{files[0][0]} of this run stopped "
            "while applying it (the worker died): its rows may be partly applied here"
        )
    paths = []
    for file, attempt, batches in files:
        mine = [(batch_path(root, run, file, attempt, p, s), base) for p, s, base in batches]
        missing = [str(p) for p, _ in mine if not p.exists()]
        if missing:
            raise UdbError(
                f"worker {worker}: {len(missing)} staged batch(es) of file #{file} are "
                f"missing (e.g. {missing[0]}): nothing of that file was applied"
            )
        paths.extend(mine)
    marker.write_text(HEADER + "\n")  # ess.udb.journal: the commit's writes follow
    return paths


def load(path: Path, base: int) -> tuple[dict[int, pa.Table], dict[str, Any]]:
    """A staged batch, its stamps shifted by `base`, split by partition; and its metadata."""
    table, meta = _read(path)
    sizes = meta.pop(SIZES, None)
    return _split(_shift(table, base), sizes), meta


def groups(
    paths: list[tuple[Path, int]], *, max_rows: int = GROUP_ROWS
) -> Iterator[tuple[dict[int, pa.Table], dict[str, Any], bool]]:
    """The staged batches as (parts, metadata, premerged), consecutive batches for the same
    target joined (up to `max_rows`): one merge and one snapshot segment per partition
    instead of one per batch. Rows keep their order, so the merges give the same result; a
    join of pre-merged batches has a key more than once, so it is not "premerged" any more."""
    pending: list[tuple[dict[int, pa.Table], dict[str, Any]]] = []
    size = 0
    for path, base in paths:
        parts, meta = load(path, base)
        rows = sum(t.num_rows for t in parts.values())
        if pending and (pending[0][1] != meta or size + rows > max_rows):
            yield _joined(pending)
            pending, size = [], 0
        pending.append((parts, meta))
        size += rows
    if pending:
        yield _joined(pending)


def _joined(
    batches: list[tuple[dict[int, pa.Table], dict[str, Any]]],
) -> tuple[dict[int, pa.Table], dict[str, Any], bool]:
    meta = batches[0][1]
    if len(batches) == 1:
        return batches[0][0], meta, bool(meta["premerged"])
    pids = sorted({pid for parts, _ in batches for pid in parts})
    joined = {pid: pa.concat_tables(_alike([parts[pid] for parts, _ in batches if pid in parts]))
              for pid in pids}  # fmt: skip
    return joined, meta, False


def _alike(tables: list[pa.Table]) -> list[pa.Table]:
    """`tables` with one schema: a file cut on string views (the common case) and one cut
    on large_string (a key with nulls, no C helper on its node) differ only in those types,
    and become large_string together."""
    if all(t.schema == tables[0].schema for t in tables):
        return tables
    out = []
    for table in tables:
        fields = [f.with_type(pa.large_string()) if f.type == pa.string_view() else f
                  for f in table.schema]  # fmt: skip
        out.append(table.cast(pa.schema(fields)))
    return out


def committed(root: Path, run: str, files: list[int]) -> None:
    """The commit point of consecutive files on this worker: the journal marker of the first
    becomes the record that they are applied here (one atomic rename: a worker that dies on
    either side of it is rolled back, or answers a retry "done"), then their staged batches
    go (the other files get a record too, for whoever looks). The records stay until the
    stream drops its run's staging."""
    fdirs = [file_dir(root, run, file) for file in files]
    os.replace(fdirs[0] / APPLYING, fdirs[0] / COMMITTED)
    for fdir in fdirs:
        if fdir != fdirs[0]:
            (fdir / COMMITTED).touch()
        for attempt in fdir.iterdir():
            if attempt.is_dir():
                shutil.rmtree(attempt, ignore_errors=True)


def w_drop(run: str, file: int | None = None) -> None:
    """Remove the staging of one file of `run`, or of the whole run."""
    store = _store()
    path = store.root / STAGING / run if file is None else file_dir(store.root, run, file)
    shutil.rmtree(path, ignore_errors=True)


def sweep(root: Path, *, now: float | None = None) -> None:
    """Remove staging folders of runs not touched for STALE_AFTER (worker start)."""
    base = root / STAGING
    if not base.is_dir():
        return
    limit = (time.time() if now is None else now) - STALE_AFTER
    for run in base.iterdir():
        try:
            if run.stat().st_mtime < limit:
                shutil.rmtree(run, ignore_errors=True)
        except OSError:
            continue


def _read(path: Path) -> tuple[pa.Table, dict[str, Any]]:
    with pa.memory_map(str(path), "r") as src:  # no copy: the merge copies what it keeps
        table = ipc.open_file(src).read_all()
    meta = json.loads((table.schema.metadata or {})[b"ess"])
    return _own_views(table.replace_schema_metadata(None)), meta


def _own_views(table: pa.Table) -> pa.Table:
    """`table` with its string view columns that hold long strings (over 12 bytes) copied out
    of the file's mapping: Polars shares such a column's data buffers through the gathers
    and concatenations of a merge, and a shared buffer keeps the whole imported column, so
    a key the vector keeps would keep the removed staged file's pages and disk space. A
    column of inline strings only has no data to share: Polars' gathers copy its views and
    drop the empty buffers (tests/unit/udb/test_staging.py checks both)."""
    for i, field in enumerate(table.schema):
        if field.type != pa.string_view():
            continue
        chunks = table.column(i).chunks
        if any(_holds_long_strings(chunk) for chunk in chunks):
            table = table.set_column(i, field, pa.chunked_array([_copied(c) for c in chunks],
                                                                field.type))  # fmt: skip
    return table


def _holds_long_strings(arr: pa.Array) -> bool:
    return any(b is not None and b.size for b in arr.buffers()[2:])


def _copied(arr: pa.Array) -> pa.Array:
    bufs = [None if b is None else pa.py_buffer(b.to_pybytes()) for b in arr.buffers()]
    return pa.Array.from_buffers(arr.type, len(arr), bufs, arr.null_count, arr.offset)


def _shift(table: pa.Table, base: int) -> pa.Table:
    from ess.udb.merge import R

    i = table.schema.get_field_index(R)
    return table.set_column(i, R, pc.add(table.column(R), pa.scalar(base, pa.int64())))


def _split(table: pa.Table, sizes: list[list[int]] | None) -> dict[int, pa.Table]:
    """The staged table cut back into its partitions: zero-copy slices, by the rows of each
    partition (`sizes`: [pid, rows] in file order), or in a file of an earlier version by its
    column of partition numbers (runs of equal numbers; a partition is gathered if it is not
    one run)."""
    if sizes is not None:
        out, start = {}, 0
        for pid, rows in sizes:
            out[int(pid)] = table.slice(start, rows)
            start += rows
        return out
    pids = table.column(PART_COL).to_numpy()
    table = table.drop_columns([PART_COL])
    starts = np.flatnonzero(np.diff(pids, prepend=pids[:1] - 1)) if len(pids) else pids
    ends = [*starts[1:], len(pids)]
    runs = [(int(pids[a]), int(a), int(b)) for a, b in zip(starts, ends, strict=True)]
    if len({pid for pid, _, _ in runs}) < len(runs):  # not grouped: gather each partition
        return {int(p): table.take(np.flatnonzero(pids == p)) for p in np.unique(pids)}
    return {pid: table.slice(a, b - a) for pid, a, b in runs}


# ---------------------------------------------------------------------- scheduler registry


def _runs(dask_scheduler: Any) -> dict[str, Any]:
    if not hasattr(dask_scheduler, "_ess_udb_runs"):
        dask_scheduler._ess_udb_runs = {}
    runs: dict[str, Any] = dask_scheduler._ess_udb_runs
    return runs


def s_part(dask_scheduler: Any, run: str, file: int, attempt: str) -> int:
    """Run on the scheduler: the next part number of an attempt (its processes in the order
    they first import)."""
    reg = _runs(dask_scheduler).setdefault(run, {"done": set(), "parts": {}})
    key = (file, attempt)
    reg["parts"][key] = reg["parts"].get(key, -1) + 1
    return int(reg["parts"][key])


def s_note(
    dask_scheduler: Any, run: str, file: int, attempt: str, manifest: dict[str, Any]
) -> None:
    """Run on the scheduler: one part's manifest (rows, worker name -> seqs, complete,
    runner: the address of the worker whose command it was)."""
    reg = _runs(dask_scheduler).setdefault(run, {"done": set(), "parts": {}})
    if file in reg["done"]:
        return  # an attempt still running after its file was committed (its worker died)
    parts = reg.setdefault("files", {}).setdefault(file, {}).setdefault(attempt, {})
    parts[manifest["part"]] = manifest


def s_take(dask_scheduler: Any, run: str, file: int) -> tuple[str, list[dict[str, Any]]] | None:
    """Run on the scheduler: the attempt to commit for `file` and its parts in order (None:
    nothing was imported), and mark the file done. Preferred: an attempt whose every part
    staged all its batches and whose worker is still there (an attempt of a worker that died
    is the one that was re-run), the one with most parts (a re-run that has not reached its
    later processes yet has fewer), then the earliest."""
    reg = _runs(dask_scheduler).setdefault(run, {"done": set(), "parts": {}})
    reg["done"].add(file)
    attempts = reg.get("files", {}).pop(file, {})
    if not attempts:
        return None
    alive = set(dask_scheduler.workers)

    def rank(item: tuple[str, dict[int, dict[str, Any]]]) -> tuple[int, int, int]:
        _, parts = item
        complete = all(p["complete"] for p in parts.values())
        here = all(p["runner"] in alive for p in parts.values())
        return (-int(complete), -int(here), -len(parts))

    attempt, parts = min(attempts.items(), key=rank)
    return attempt, [parts[k] for k in sorted(parts)]


def s_take_stamped(dask_scheduler: Any, run: str, file: int
                   ) -> tuple[str, list[dict[str, Any]], int | None] | None:  # fmt: skip
    """`s_take`, and for an attempt that staged everything the row stamps of all its rows
    (ess.udb.stamps) in the same call: one scheduler round trip per committed file instead of
    two. None: nothing was imported; a None base: the attempt is incomplete."""
    from ess.udb.stamps import reserve_stamps

    chosen = s_take(dask_scheduler, run, file)
    if chosen is None:
        return None
    attempt, parts = chosen
    if not all(p["complete"] for p in parts):
        return attempt, parts, None
    total = sum(int(p["rows"]) for p in parts)
    return attempt, parts, reserve_stamps(dask_scheduler, max(total, 1))


def s_take_files(dask_scheduler: Any, run: str, files: list[int]) -> list[Any]:
    """Run on the scheduler: `s_take_stamped` of each of `files`, in one call."""
    return [s_take_stamped(dask_scheduler, run, file) for file in files]


def s_forget(dask_scheduler: Any, run: str) -> None:
    _runs(dask_scheduler).pop(run, None)

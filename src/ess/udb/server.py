"""The worker side of the UDB: a Dask worker plugin holding partitions, and the tasks that run
inside workers (import, export, count, clear, order, inventory, move).

The store each worker holds, and its snapshots on disk, are in :mod:`ess.udb.snapshot`.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from ess.udb import fold, journal, merge
from ess.udb.merge import K, R
from ess.udb.snapshot import (
    COMPACT_AFTER,
    DEFAULT_MARGIN_KB,
    PLUGIN_NAME,
    DbState,
    Part,
    Store,
    damaged_files,
    describe,
    rebuild_keys,
    store_dir_name,
    worker_store,
)
from ess.udb.spec import DbSpec, Target, parse_spec

# imported from here by other modules and tests
__all__ = ["COMPACT_AFTER", "DEFAULT_MARGIN_KB", "PLUGIN_NAME", "Store"]
_store = worker_store

logger = logging.getLogger("ess.udb")


@lru_cache(maxsize=64)
def spec_of(text: str, name: str) -> DbSpec:
    return parse_spec(text, name=name, source=f"{name}.spec")


try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # pragma: no cover - distributed is a dependency
    WorkerPlugin = object  # type: ignore[misc,assignment]


class UdbPlugin(WorkerPlugin):
    """Installed on every worker (also ones that join or come back later) by `ess udbd start`."""

    name = PLUGIN_NAME

    def __init__(self, root: str, *, mem_margin_kb: int = DEFAULT_MARGIN_KB) -> None:
        self.root = root
        self.mem_margin_kb = mem_margin_kb
        self.store: Store | None = None

    def setup(self, worker: Any) -> None:
        wname = str(worker.name)
        # expanduser: on hosts that do not share the master's disk the root is "~/..." and
        # means the worker's own home (see udbd.snapshot_root).
        root = Path(self.root).expanduser()
        self.store = Store(root / store_dir_name(wname))
        self.store.name = wname
        self.store.margin = self.mem_margin_kb * 1024
        try:
            self.store.load()
        except Exception as exc:  # every task then names this instead of "not running"
            self.store.error = f"{type(exc).__name__}: {exc}"
            raise
        from ess.udb.staging import sweep

        sweep(self.store.root)  # staging left by streams that were killed long ago
        for damage in self.store.damaged:  # the worker's log keeps a trace too
            logger.error("UDB snapshot damaged, moved aside: %s", damage.line())
        preload()


#: What a worker's first stream import would otherwise load during the stream (py-spy on the
#: first stream after `ess udbd start`: about 0.15 s of CPU per worker): the import gateway
#: and its UDB client, the feeder's datastore, the commit's fold, NumPy's masked arrays
#: (loaded by the first NumPy conversion of an Arrow array).
PRELOAD = ("ess.udb.client", "ess.udb.gateway", "ess.udb.fold", "ess.udb.remote",
           "ess.datastore.api", "ess.datastore.codec", "numpy.ma")  # fmt: skip


def preload() -> None:
    """Load, when the worker starts, what the first export and the first stream import would
    otherwise load: Polars imports pyarrow.compute (~0.2 CPU s) the first time it converts an
    Arrow array, which the renderer (ess.aq.writer) does; the C helper is loaded once per
    process; the modules of `PRELOAD`."""
    import importlib

    import pyarrow.compute  # noqa: F401

    from ess.aq.native import native_library

    native_library()
    for name in PRELOAD:
        importlib.import_module(name)


def _part(store: Store, db: str, state: DbState, spec: DbSpec, pid: int) -> Part:
    part = state.parts.get(pid)
    if part is None:
        part = Part(keys=merge.empty_frame(spec.pkey, (), rows=False))
        state.parts[pid] = part
    elif part.keys_lost:
        _repair_keys(store, db, spec, pid, part)
    elif part.keys.width == 0:  # made for the Var row only (no definition at hand then)
        part.keys = merge.empty_frame(spec.pkey, (), rows=False)
    return part


def _repair_keys(store: Store, db: str, spec: DbSpec, pid: int, part: Part) -> None:
    """A key-set segment was damaged at load: rebuild the key set from the rows that remain
    (needs the pkey, known only once a task brings the definition) and persist it."""
    pkey = [c.name for c in spec.pkey]
    part.keys = rebuild_keys(part, pkey) if part.keys.width or part.tables or part.vectors \
        else merge.empty_frame(spec.pkey, (), rows=False)  # fmt: skip
    store.write(db, pid, part, "k_", part.keys, base=True)
    part.keys_lost = False


def _frame(part: Part, spec: DbSpec, target: Target) -> pl.DataFrame:
    store = part.tables if target.kind == "table" else part.vectors
    frame = store.get(target.key)
    if frame is None:
        frame = merge.empty_frame(spec.pkey, target.columns, rows=target.kind == "table")
    return frame


# ---------------------------------------------------------------------- tasks run in workers


def w_import(
    spec_text: str, db: str, target_name: str, parts: Any, *, premerged: bool = False
) -> int:
    """`parts`: {partition: table}, or a batch in shared memory (ess.udb.handoff)."""
    from ess.udb.handoff import unpack

    return import_into(_store(), spec_text, db, target_name, unpack(parts), premerged=premerged)


def import_into(
    store: Store,
    spec_text: str,
    db: str,
    target_name: str,
    parts: dict[int, pa.Table],
    *,
    premerged: bool = False,
) -> int:
    """Apply one batch (already split by partition) to this worker's partitions.
    `premerged`: the client pre-merged the batch to one row per key (merge.combine), which
    only `combinable` vectors use."""
    spec = spec_of(spec_text, db)
    pk = [c.name for c in spec.pkey]
    state = store.db(db)
    rows = 0
    store.check_memory(sum(int(t.nbytes) for t in parts.values()))
    with state.lock:
        if not premerged and _fold_all(store, db, state, spec, target_name, parts):
            return sum(t.num_rows for t in parts.values())
        for pid, table in sorted(parts.items()):
            batch = pl.from_arrow(table)
            assert isinstance(batch, pl.DataFrame)
            rows += batch.height
            if target_name == "var":
                target = spec.var
                assert target is not None
                cur = state.var if state.var is not None else batch.head(0).drop(R)
                state.var = merge.merge_rows(
                    cur.with_columns(pl.lit(0).alias("__v")) if "__v" not in cur.columns else cur,
                    batch.drop(R).with_columns(pl.lit(0).alias("__v")),
                    ["__v"],
                    target.columns,
                )
                part = _part(store, db, state, spec, pid)
                store.write(db, pid, part, "var", state.var, base=True)
                continue
            part = _part(store, db, state, spec, pid)
            target = None if target_name == "." else spec.require(target_name)
            one_per_key = (
                premerged
                and target is not None
                and target.kind == "vector"
                and merge.combinable(target)
            )
            if target is not None and target.kind == "vector":
                current = _frame(part, spec, target)
                if part.keys.height == current.height:  # every key has its vector row
                    if one_per_key:
                        _merge_vector(store, db, pid, part, target, current, batch, pk)
                        continue
                    if fold.can_fold(batch, target.columns):
                        _fold_vector(store, db, pid, part, target, current, batch, pk)
                        continue
            keys, batch, nnew = merge.assign_keys(part.keys, batch, pk)
            part.keys = keys
            if nnew:
                store.append(db, pid, part, "k_", keys.tail(nnew), keys)
            if target is None:
                continue
            current = _frame(part, spec, target)
            batch = batch.select(current.columns) if target.kind == "table" else batch
            if target.kind == "table" and not target.merge_keys:
                new = pl.concat([current, batch], how="vertical", rechunk=False)
                part.tables[target.key] = new
                store.append(db, pid, part, f"t_{target.key}", batch, new)
                continue
            group = pk + [c.name for c in target.merge_keys]
            cols = [c for c in target.columns if "+key" not in c.attrs]
            if target.kind == "vector":
                batch = batch.select(current.columns)
            if one_per_key:
                merged = merge.merge_unique(current, batch, group, cols)[0]
            else:
                merged = merge.merge_rows(current, batch, group, cols)
            if target.kind == "table":  # merged rows keep their place: stored order = row stamp
                merged = merged.sort(R, maintain_order=True)
            prefix = "t_" if target.kind == "table" else "v_"
            (part.tables if target.kind == "table" else part.vectors)[target.key] = merged
            store.write(db, pid, part, prefix + target.key, merged, base=True)
    return rows


#: one file's staged batches on one worker: (file, attempt, [(part, seq, stamp base)])
FileShare = tuple[int, str, list[tuple[int, int, int]]]


def w_commit_files(run: str, files: list[FileShare]) -> int:
    """Apply the staged batches of consecutive files of a stream (each its chosen attempt),
    in order and as one merge, then remove their staging here (ess.udb.staging)."""
    return commit_files(_store(), run, files)


def commit_staged(store: Store, run: str, file: int, attempt: str,
                  batches: list[tuple[int, int, int]]) -> int:  # fmt: skip
    """`commit_files` of one file."""
    return commit_files(store, run, [(file, attempt, batches)])


def commit_files(store: Store, run: str, files: list[FileShare]) -> int:
    """`w_commit_files` on `store`, journaled (ess.udb.journal): a worker that dies inside
    rolls it back when it starts again, and the stream's next try applies the files once.
    The group's journal and commit record are its first file's (ess.udb.staging.check_files)."""
    from ess.udb import staging

    rows = 0
    paths = staging.check_files(store.root, run, files, store.name)
    if paths is None:  # applied by an earlier try of this commit
        return 0
    marker = staging.file_dir(store.root, run, files[0][0]) / journal.APPLYING
    with journal.journaled(marker, store.root) as superseded:
        for parts, meta, premerged in staging.groups(paths):
            rows += import_into(store, meta["spec"], meta["db"], meta["target"], parts,
                                premerged=premerged)  # fmt: skip
    # the commit point: never rolled back after it
    staging.committed(store.root, run, [file for file, _, _ in files])
    for old in superseded:
        old.unlink(missing_ok=True)
    return rows


def _fold_all(store: Store, db: str, state: DbState, spec: DbSpec, target_name: str,
              parts: dict[int, pa.Table]) -> bool:  # fmt: skip
    """A batch into a vector whose partitions here each hold every one of their keys: the
    partitions folded together (ess.udb.fold.fold_partitions). False: not such a batch, the
    caller merges partition by partition."""
    if target_name in (".", "var") or len(parts) < 2:
        return False
    target = spec.require(target_name)
    if target.kind != "vector":
        return False
    pids = sorted(parts)
    currents = {}
    for pid in pids:
        part = _part(store, db, state, spec, pid)
        currents[pid] = _frame(part, spec, target)
        if part.keys.height != currents[pid].height:
            return False
    batch = pl.from_arrow(pa.concat_tables([parts[p] for p in pids]))
    assert isinstance(batch, pl.DataFrame)
    if not fold.can_fold(batch, target.columns):
        return False
    pk = [c.name for c in spec.pkey]
    sizes = {p: parts[p].num_rows for p in pids}
    for pid, (merged, new) in fold.fold_partitions(currents, batch, sizes, pk,
                                                   target.columns).items():  # fmt: skip
        _keep_vector(store, db, pid, state.parts[pid], target, merged, new)
    return True


def _fold_vector(store: Store, db: str, pid: int, part: Part, target: Target,
                 current: pl.DataFrame, batch: pl.DataFrame, pk: list[str]) -> None:  # fmt: skip
    """A batch (rows in import order) into a vector that holds every key of the partition:
    one join and an in-order fold (ess.udb.fold) instead of the group-by of `merge_rows`."""
    merged, new = fold.fold_vector(current, batch, pk, target.columns)
    _keep_vector(store, db, pid, part, target, merged, new.drop("__at"))


def _keep_vector(store: Store, db: str, pid: int, part: Part, target: Target,
                 merged: pl.DataFrame, new: pl.DataFrame) -> None:  # fmt: skip
    """The merged vector of a partition and its new keys, in memory and in its snapshot."""
    if new.height:
        part.keys = pl.concat([part.keys, new.select(part.keys.columns)], how="vertical",
                              rechunk=False)  # fmt: skip
        store.append(db, pid, part, "k_", new, part.keys)
    part.vectors[target.key] = merged
    store.write(db, pid, part, "v_" + target.key, merged, base=True)


def _merge_vector(store: Store, db: str, pid: int, part: Part, target: Target,
                  current: pl.DataFrame, batch: pl.DataFrame, pk: list[str]) -> None:  # fmt: skip
    """A pre-merged batch into a vector that holds every key of the partition: one join finds
    stored rows and new keys at once (a new key's stamp is its row's stamp)."""
    batch = batch.with_columns(pl.col(R).alias(K)).select(current.columns)
    merged, new = merge.merge_unique(current, batch, pk, target.columns)
    _keep_vector(store, db, pid, part, target, merged, new)


@dataclass
class Query:
    """What a worker runs over its partitions of one target (see ess.udb.query)."""

    db: str
    spec_text: str
    target: str  # table/vector name, "." for the key set, "var"
    pids: list[int]
    rules: Any = None  # a picklable ess.udb.query.RulePlan, or None
    columns: list[str] | None = None  # columns to return (None: all)
    top: int | None = None  # per-worker top-N after sorting by `order`
    order: tuple[list[str], bool] | None = None  # (sort columns, descending)
    seg: str | None = None  # seg=N1[-N2]/N key sampling
    #: render CSV lines here: (column, label, type) of each output field, the output
    #: attributes, and the columns the client still needs beside the line (sort keys)
    render: list[tuple[str, str, str]] | None = None
    out_attrs: Any = None
    keep: list[str] = field(default_factory=list)


def w_query(q: Query) -> pa.Table:
    """Rows of the target in this worker's partitions, with their stamps, after the rules."""
    store = _store()
    spec = spec_of(q.spec_text, q.db)
    state = store.db(q.db)
    frames = []
    with state.lock:
        for pid in q.pids:
            frame = partition_rows(store, spec, state, q, pid)
            if frame is not None:
                frames.append(frame.with_columns(pl.lit(pid, dtype=pl.Int32).alias("__p")))
    if not frames:
        return pa.table({})
    out = pl.concat(frames, how="vertical_relaxed")
    if q.seg is not None:
        from ess.udb.hashing import segment_mask

        out = out.filter(segment_mask(out, [c.name for c in spec.pkey], q.seg))
    # Export order: keys by first insertion, a key's rows as stored (insertion order, or the
    # order -ord left). Keys are disjoint between partitions, so a stable sort on the key
    # stamp alone is enough (and ~3x cheaper than sorting on two columns).
    out = merge.key_order(out)
    if q.order is not None:
        out = top_candidates(out, q.order[0], q.order[1], q.top)
    if q.columns is not None:
        out = out.select(q.columns)
    if q.render is not None:
        out = out.select(K, R, *q.keep, render_line(q.render, q.out_attrs).alias(LINE))
    return out.to_arrow()


def partition_rows(
    store: Store, spec: DbSpec, state: DbState, q: Query, pid: int
) -> pl.DataFrame | None:
    """One partition's rows of the query's target (with stamps), after the rules; None when
    the partition holds nothing here. The caller holds `state.lock`."""
    part = state.parts.get(pid)
    if part is None:
        return None
    if part.keys_lost:
        _repair_keys(store, q.db, spec, pid, part)
    if q.target == ".":
        if part.keys.width == 0:
            return None
        frame = part.keys.with_columns(pl.col(K).alias(R))
    else:
        target = spec.require(q.target)
        frame = _frame(part, spec, target)
        if target.kind == "vector":
            frame = frame.with_columns(pl.col(K).alias(R))
    if q.rules is not None:
        frame = q.rules.run_partition(
            frame, part, spec, writer=_writer(store, q, pid, part),
            drop_keys=lambda keys: drop_keys(store, q.db, pid, part, keys),
        )  # fmt: skip
    return frame


LINE = "__line"


def top_candidates(
    frame: pl.DataFrame, cols: list[str], dec: bool, top: int | None
) -> pl.DataFrame:
    """This worker's candidates for the global top N of a frame in export order. They stay in
    ascending order, so tied rows keep export order for the client's final stable sort."""
    from ess.udb.merge import sort_result

    out = sort_result(frame, cols, False)
    if top is None:
        return out
    return out.tail(top) if dec else out.head(top)


def render_line(cols: list[tuple[str, str, str]], attrs: Any) -> pl.Expr:
    """One Essentia CSV line per row (ess.aq.writer's field formatting)."""
    from ess.aq.writer import OutCol, field_expr

    fields = [field_expr(OutCol(n, lab, t if t in ("S", "F", "IP") else "I"), attrs)
              for n, lab, t in cols]  # fmt: skip
    return pl.concat_str(fields, separator=attrs.sep).fill_null("")


def _writer(store: Store, q: Query, pid: int, part: Part) -> Callable[[str, pl.DataFrame], None]:
    def write(target_key: str, frame: pl.DataFrame) -> None:
        spec = spec_of(q.spec_text, q.db)
        target = spec.require(target_key)
        kind = "t_" if target.kind == "table" else "v_"
        (part.tables if target.kind == "table" else part.vectors)[target.key] = frame
        store.write(q.db, pid, part, kind + target.key, frame, base=True)

    return write


def drop_keys(store: Store, db: str, pid: int, part: Part, keys: pl.Series) -> None:
    """Remove keys (by key stamp) with all their rows from one partition (`-del_key`)."""
    gone = pl.col(K).is_in(keys.implode())
    part.keys = part.keys.filter(~gone)
    store.write(db, pid, part, "k_", part.keys, base=True)
    for prefix, frames in (("t_", part.tables), ("v_", part.vectors)):
        for name, frame in frames.items():
            frames[name] = frame.filter(~gone)
            store.write(db, pid, part, prefix + name, frames[name], base=True)


def w_drop_keys(db: str, keys: dict[int, pa.Table]) -> None:
    store = _store()
    state = store.db(db)
    with state.lock:
        for pid, table in keys.items():
            part = state.parts.get(pid)
            if part is not None:
                frame = pl.from_arrow(table)
                assert isinstance(frame, pl.DataFrame)
                drop_keys(store, db, pid, part, frame.get_column(K))


def w_update(q: Query, frames: dict[int, pa.Table]) -> None:
    """Replace whole partitions of a target (write-back of rules run on the client)."""
    store = _store()
    spec = spec_of(q.spec_text, q.db)
    target = spec.require(q.target)
    state = store.db(q.db)
    with state.lock:
        for pid, table in frames.items():
            part = _part(store, q.db, state, spec, pid)
            frame = pl.from_arrow(table)
            assert isinstance(frame, pl.DataFrame)
            _writer(store, q, pid, part)(target.key, frame)


def w_var(db: str) -> pa.Table | None:
    state = _store().db(db)
    return None if state.var is None else state.var.drop("__v").to_arrow()


def w_set_var(db: str, table: pa.Table) -> None:
    store = _store()
    state = store.db(db)
    with state.lock:
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        state.var = frame.with_columns(pl.lit(0).alias("__v"))
        part = state.parts.setdefault(0, Part(keys=pl.DataFrame()))
        store.write(db, 0, part, "var", state.var, base=True)


def w_clear(spec_text: str, db: str, target: str | None) -> None:
    """`-clr Db:Tab` (rows / vector values / var) or `-clr Db` (everything)."""
    store = _store()
    spec = spec_of(spec_text, db)
    state = store.db(db)
    with state.lock:
        if target is None or target == ".":
            state.parts.clear()
            state.var = None
            store.drop_dir(db)
            return
        if target == "var":
            state.var = None
            for pid in list(state.parts):
                store.drop_segments(db, pid, "var")
            return
        tgt = spec.require(target)
        for pid, part in state.parts.items():
            (part.tables if tgt.kind == "table" else part.vectors).pop(tgt.key, None)
            store.drop_segments(db, pid, ("t_" if tgt.kind == "table" else "v_") + tgt.key)


def w_order(spec_text: str, db: str, target: str, cols: list[str], desc: bool, ncas: bool) -> None:
    """`-ord Db:Tab [Col...]`: stable sort of each key's rows, in place (new row stamps)."""
    store = _store()
    spec = spec_of(spec_text, db)
    tgt = spec.require(target)
    state = store.db(db)
    with state.lock:
        for pid, part in state.parts.items():
            frame = part.tables.get(tgt.key)
            if frame is None or frame.height == 0:
                continue
            exprs = [pl.col(c).str.to_lowercase() if ncas and frame.schema[c] == pl.String
                     else pl.col(c) for c in cols]  # fmt: skip
            ordered = frame.sort(
                [pl.col(K), *exprs], descending=[False] + [desc] * len(exprs), maintain_order=True
            )
            # new row stamps in the sorted order, within the key's old stamp range
            ordered = ordered.with_columns(
                pl.col(R).sort().over(K).alias(R)  # the same set of stamps, reassigned in order
            )
            part.tables[tgt.key] = ordered
            store.write(db, pid, part, "t_" + tgt.key, ordered, base=True)


def w_health() -> dict[str, Any]:
    """Whether this worker's UDB store loaded (never raises: `ess udbd status`/`stop` ask it
    before anything else), and the damaged snapshots it moved aside, described."""
    from distributed import get_worker

    plugin = get_worker().plugins.get(PLUGIN_NAME)
    store = getattr(plugin, "store", None)
    if store is None:
        return {"ready": False, "error": "", "damaged": []}
    known = {d.path: d for d in store.damaged}
    for path in damaged_files(store.root):
        found = describe(path)
        if found is not None and found.path not in known:
            known[found.path] = found
    return {"ready": store.ready, "error": store.error,
            "damaged": [known[p].line() for p in sorted(known)]}  # fmt: skip


def w_wipe() -> None:
    """`ess udbd restart/stop`: drop every database held here, and its snapshots."""
    store = _store()
    with store.lock:
        store.dbs.clear()
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(store.root)


def w_memory() -> dict[str, int]:
    import resource

    store = _store()
    rows = sum(
        sum(f.height for f in (*p.tables.values(), *p.vectors.values())) + p.keys.height
        for s in store.dbs.values()
        for p in s.parts.values()
    )
    size = sum(
        sum(int(f.estimated_size()) for f in (*p.tables.values(), *p.vectors.values()))
        + int(p.keys.estimated_size())
        for s in store.dbs.values()
        for p in s.parts.values()
    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"rows": rows, "bytes": size, "max_rss": rss}

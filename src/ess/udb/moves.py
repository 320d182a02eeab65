"""Worker tasks that move partitions between workers (redistribution when workers join or leave,
driven by ess.udb.client): what a worker holds, hand a partition over, take one in, forget one.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from ess.udb.snapshot import Part, place, worker_store

_store = worker_store

#: in a partition handed over by w_take: its key set was damaged and is to be rebuilt
KEYS_LOST = "k_lost"


def w_inventory(db: str | None = None) -> dict[str, dict[int, int]]:
    """{db: {partition: rows held}} for this worker (all databases when `db` is None)."""
    store = _store()
    out: dict[str, dict[int, int]] = {}
    with store.lock:
        names = list(store.dbs) if db is None else [db.lower()]
    for name in names:
        state = store.dbs.get(name)
        if state is None:
            continue
        out[name] = {pid: p.keys.height for pid, p in state.parts.items()}
    return out


def w_take(db: str, pid: int) -> dict[str, pa.Table]:
    """Hand a partition over for redistribution (it stays here until `w_forget`)."""
    state = _store().db(db)
    with state.lock:
        part = state.parts.get(pid)
        if part is None:
            return {}
        out = {"k_": part.keys.to_arrow()}
        out.update({f"t_{k}": v.to_arrow() for k, v in part.tables.items()})
        out.update({f"v_{k}": v.to_arrow() for k, v in part.vectors.items()})
        if pid == 0 and state.var is not None:
            out["var"] = state.var.to_arrow()
        if part.keys_lost:  # the receiver rebuilds the key set once it has the definition
            out[KEYS_LOST] = pa.table({})
        return out


def w_put(db: str, pid: int, data: dict[str, pa.Table]) -> None:
    store = _store()
    state = store.db(db)
    with state.lock:
        part = Part(keys=pl.DataFrame(), keys_lost=KEYS_LOST in data)
        store.drop_dir(db, pid)
        for name, table in data.items():
            if name == KEYS_LOST:
                continue
            frame = pl.from_arrow(table)
            assert isinstance(frame, pl.DataFrame)
            place(state, part, name, frame)
            store.write(db, pid, part, name, frame, base=True)
        state.parts[pid] = part


def w_forget(db: str, pid: int) -> None:
    store = _store()
    state = store.db(db)
    with state.lock:
        state.parts.pop(pid, None)
        store.drop_dir(db, pid)

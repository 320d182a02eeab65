"""`aq_pp -imp`: the import step that aq_pp's rule chain calls for each batch of rows.

aq_pp compiles `-imp[,AtrLst] Db[:Tab]` (and the legacy `-udb [-spec F|-db Db] -imp` form) into
a step made here: importing this module registers it as aq's "udb" import sink (ess.aq.sinks),
which aq_pp's entry point does when a command has `-imp`. The step sends the batch's rows (the
columns visible at that point of the chain, under their current names) to the UDB and returns
the batch unchanged, so several `-imp` targets and outputs can follow each other. One cluster
connection per process; inside ess stream on a cluster, the worker's import gateway
(ess.udb.gateway, ESS_UDB_GATEWAY) instead: one connection shared by the worker's commands.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable
from typing import Any

import polars as pl

from ess.aq import sinks
from ess.errors import NotSupportedError, UdbError
from ess.workspace import Workspace

_SESSIONS: dict[str, Any] = {}


def shared_session(ws: Workspace, *, imports: bool = False) -> Any:
    """One UdbSession per process and work directory (aq_pp steps, in-process callers).
    `imports`: the caller only imports (aq_pp -imp), so the worker's import gateway serves it
    when there is one that answers; queries (aq_udb) always get a session of their own."""
    key = str(ws.work_dir.resolve())
    if not _SESSIONS:
        atexit.unregister(close_sessions)  # once, however the first session came
        atexit.register(close_sessions)
    if imports and key not in _SESSIONS:
        from ess.udb.gateway import connect

        through = f"{key}\0gateway"
        if through not in _SESSIONS:
            gateway = connect(ws)  # the gateway runs the staging (below) and its close
            if gateway is None:
                return shared_session(ws)
            _SESSIONS[through] = gateway
        return _SESSIONS[through]
    if key not in _SESSIONS:
        from ess.udb.client import UdbSession
        from ess.udb.commit import Stager

        session = UdbSession(ws)
        # batches are staged on the workers and committed at the end: by this process's
        # close, or inside ess stream by the stream, in file order (ess.udb.commit)
        session.stager = Stager.from_env()
        _SESSIONS[key] = session
    return _SESSIONS[key]


def close_sessions() -> None:
    """Close the sessions, each after committing its import (or, inside ess stream, telling
    the scheduler what it staged for the stream to commit). A failure there is this command's
    error: its rows are not in the database."""
    error: Exception | None = None
    while _SESSIONS:
        session = _SESSIONS.popitem()[1]
        try:
            if session.stager is not None:
                session.stager.close(session)
        except Exception as exc:
            error = error or exc
        finally:
            session.close()
    if error is not None:
        if isinstance(error, UdbError):
            raise error
        raise UdbError(f"the import could not be committed: {error}") from error


def imp_step(
    target: str,
    attrs: list[str],
    columns: dict[str, str],
    *,
    ddef: bool,
    mask: str | None = None,
) -> Callable[[pl.DataFrame, Any], pl.DataFrame]:
    """A step `(batch, state) -> batch` importing rows into `target`.

    `columns` maps each visible (lower-case) row name to the frame column that holds it;
    `mask` names a boolean column selecting the rows (inside `-if` branches).
    """
    from ess.udb.client import parse_target
    from ess.udb.spec import load

    spec_file = None
    db_prefix = None
    for attr in attrs:
        low = attr.lower()
        if low.startswith("spec="):
            spec_file = attr[5:]
        elif low.startswith("db="):
            db_prefix = attr[3:]
        elif low == "ddef":
            ddef = True
        elif low in ("nodelay",):
            pass
        elif low == "nobnk" or low.startswith(("seg=", "nonew", "noold")):
            raise NotSupportedError(f"aq_pp -imp,{attr}")
        else:
            raise UdbError(f"-imp: unknown attribute {attr!r}")
    if db_prefix and ":" not in target:
        target = f"{db_prefix}:{target}"
    ws = Workspace.from_env()
    db, tab = parse_target(target)
    spec = load(ws, db, spec_file)  # fail before reading input: undefined db/table
    if tab not in (".", "var"):
        spec.require(tab)
    elif tab == "var" and spec.var is None:
        raise UdbError(f"database {spec.name} has no variable (ess create variable ...)")
    selection = [pl.col(src).alias(name) for name, src in columns.items()]

    def step(df: pl.DataFrame, state: Any) -> pl.DataFrame:
        rows = df if mask is None else df.filter(pl.col(mask).fill_null(False))
        if rows.height:
            session = shared_session(ws, imports=True)
            session.import_frames(spec, tab, [rows.select(selection)], ddef=ddef)
        return df

    return step


sinks.register_sink(sinks.UDB, imp_step, close=close_sessions)

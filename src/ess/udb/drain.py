"""Draining the UDB before workers are removed on purpose (``ess cluster remove``).

A removed worker takes its memory and its snapshot directory with it, so its partitions move
first. The provider says what the removal will do to the worker names
(:meth:`ClusterProvider.names_after_removal`: leaving workers map to None; a custom cluster
renumbers the remaining ones), and the drain

1. moves every partition to the worker that will own it after the removal (rendezvous
   placement over the *future* names, mapped back to the workers running now) — the same
   take → put → forget steps as ``ess udbd start``'s redistribution, each a snapshot write;
2. wipes the (now empty) leaving workers' snapshot directories;
3. renames the snapshot directory of each worker that will restart under another name, so it
   reloads its partitions as the new name (in ascending order of the new names: renumbering
   only moves names down, so on hosts sharing one home the target is always free by then).

If no worker would remain while the UDB holds data, the removal is refused, naming the
databases. A drain interrupted half-way loses nothing: partitions not yet moved stay where
they are, and ``ess udbd start`` puts every partition back on its owner.
"""

from __future__ import annotations

from ess.cluster.provider import ClusterStatus, provider_for
from ess.errors import ClusterError, UdbError
from ess.udb import moves, server, snapshot
from ess.udb.client import UdbSession, placement
from ess.workspace import Workspace

CONNECT_TIMEOUT = 10.0


def remove_workers(ws: Workspace, reservations: list[str]) -> ClusterStatus:
    """``ess cluster remove``: drain the UDB off the leaving workers, then remove them."""
    provider = provider_for(ws)
    drain(ws, provider.names_after_removal(reservations))
    return provider.remove(reservations)


def _order(name: str) -> tuple[int, str]:
    number = name.rpartition("-")[2]
    return (int(number), name) if number.isdigit() else (0, name)


def drain(ws: Workspace, renames: dict[str, str | None]) -> int:
    """Move the UDB off workers before ``renames`` happens (current name → name after, None:
    the worker leaves). Returns the number of partitions moved."""
    from ess.udb.udbd import _is_registered, _log

    if all(cur == new for cur, new in renames.items()):
        return 0
    try:
        running = provider_for(ws).connection(revive=False)
    except ClusterError:  # e.g. "no worker is running": nothing held in memory either
        running = None
    if running is None:
        return 0  # no cluster running: nothing in memory to move (docs/udb.md, "Not done yet")
    # revive=False: a removal must not bootstrap hosts or restart daemons on the way
    try:
        session = UdbSession(ws, revive=False, timeout=CONNECT_TIMEOUT)
    except UdbError as exc:  # the workers may hold data nobody can see now: do not guess
        raise UdbError(
            f"cannot check the UDB before removing workers ({exc}); nothing was removed: start "
            "the cluster ('ess cluster start') and retry"
        ) from exc
    with session as s:
        if not s.client.run_on_scheduler(_is_registered):
            _refuse_if_stranded(ws, s, renames)
            return 0
        future = sorted((new for new in renames.values() if new), key=_order)
        if not future:
            _refuse_if_data(s, renames)
            return 0
        now = {new: cur for cur, new in renames.items() if new}
        moved = s.rebalance({pid: now[name] for pid, name in placement(future).items()})
        addrs = s.addresses()
        leaving = [cur for cur, new in renames.items() if new is None and cur in addrs]
        s.gather([s._run(addrs[name], server.w_wipe) for name in leaving])
        renamed = sorted(((new, cur) for new, cur in now.items() if new != cur and cur in addrs),
                         key=lambda pair: _order(pair[0]))  # fmt: skip
        for new, cur in renamed:
            s.gather([s._run(addrs[cur], snapshot.w_rename_store, new)])
        _log(ws, f"drained {', '.join(sorted(leaving)) or 'no worker'} before removal: "
                 f"{moved} partition(s) moved")  # fmt: skip
    return moved


def _refuse_if_stranded(ws: Workspace, s: UdbSession, renames: dict[str, str | None]) -> None:
    """The UDB is not running (not started since the scheduler last started), yet a worker
    that leaves or changes name may keep snapshots of it: they cannot be moved now."""
    from ess.udb.udbd import snapshot_root

    root = snapshot_root(ws, s.conn.cluster_id, shared_filesystem=s.conn.shared_filesystem)
    moving = {cur for cur, new in renames.items() if new != cur}
    held = {name: dbs for name, dbs in s.each_worker(snapshot.w_snapshot_dbs, root).items()
            if name in moving and dbs}  # fmt: skip
    if held:
        dbs = sorted({db for names in held.values() for db in names})
        raise UdbError(
            f"{', '.join(sorted(held, key=_order))} keep UDB data of database(s) "
            f"{', '.join(dbs)} on disk, but the UDB is not running, so it cannot be moved "
            "before the removal; nothing was removed: run 'ess udbd start' (it reloads the "
            "data), then remove again"
        )


def _refuse_if_data(s: UdbSession, renames: dict[str, str | None]) -> None:
    dbs = sorted({db for held in s.each_worker(moves.w_inventory).values()
                  for db, parts in held.items() if any(parts.values())})  # fmt: skip
    if dbs:
        raise UdbError(
            f"cannot remove {', '.join(sorted(renames, key=_order))}: no worker would remain to "
            f"hold the UDB data of database(s) {', '.join(dbs)}; nothing was removed. Export it "
            "first (aq_udb -exp) or drop it ('ess udbd stop'), or add a worker first"
        )

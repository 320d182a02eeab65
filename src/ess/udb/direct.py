"""Direct staging: an ``aq_pp -imp`` inside ``ess stream`` writes its staged batches itself,
straight into the staging directories of the workers that own their partitions, when every
worker of the cluster is on this machine (the local default, ``ess cluster create`` on one
host).

Through the import gateway alone (ess.udb.gateway) a batch crossed four processes' memory:
aq_pp serialised it to the gateway, the gateway cut it by partition and wrote each owner's share
to shared memory, a staging task on the owner read it and wrote the staged file. Each copy of
a 400,000-row batch costs more in fresh pages (page faults) than in the copy itself, and the
import job spent more CPU in the kernel than in its own code. Now aq_pp cuts the batch (key hash,
partition, the pre-merge of a combinable vector: the same `_Cutter` the gateway runs) and
writes each owner's share as that owner's staged file, under the same name and in the same
format a staging task would have written (``staging.write_batch``: a temporary name, then a
rename). The gateway stays the one that talks to the cluster:

* ``route`` (per batch): checks the placement (cached for a second, as for every gateway
  import), reserves the batch's row stamps and sequence number in the importer's stager, and
  answers the owner of every partition and the owners' staging roots;
* ``staged`` (per batch): the batch is written; the stager records which owners hold it, as a
  staging task's answer did. A batch routed but never reported (aq_pp failed while writing it)
  marks the part incomplete at ``close``: the stream never commits a file with a batch missing.

The gateway learns an owner's root once per worker process (``staging.w_root``), and only
trusts it when the owner proves it shares this machine's files (it reads a token the gateway
wrote, ess.udb.handoff.sees) and the directory is writable by this user. When any worker is
elsewhere, or ``ESS_UDB_DIRECT=0``, the batch goes through the gateway as before. The commit
(ess.udb.commit) does not change: it reads the staged files where they always were.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ess.udb import staging

if TYPE_CHECKING:
    import polars as pl

ENV_DIRECT = "ESS_UDB_DIRECT"


def enabled() -> bool:
    return os.environ.get(ENV_DIRECT, "1") != "0"


def stage(session: Any, spec: Any, target: str, frame: pl.DataFrame, *, ddef: bool) -> bool:
    """Stage one batch of aq_pp's rows directly; False (nothing sent, nothing reserved) when
    the gateway says the owners are not all on this machine."""
    from ess.udb.client import cutter, prepared

    batch = next(prepared(spec, target, [frame], ddef=ddef))  # the gateway's errors, here
    if batch.height == 0:
        return True
    header = {"op": "route", "db": spec.name, "spec": spec.text(), "target": target,
              "rows": batch.height}  # fmt: skip
    answer = session.ask(header)
    if not answer.get("direct"):
        return False
    cut, premerged = cutter(spec, str(answer["target"]))
    # a failure from here on leaves the batch "routed, not staged": the part is incomplete
    parts = cut(batch, int(answer["base"]))
    owners = {int(pid): name for pid, name in answer["owners"].items()}
    shares: dict[str, dict[int, Any]] = {}
    for pid, table in parts.items():
        shares.setdefault(owners[pid], {})[pid] = table
    meta = {"spec": spec.text(), "db": spec.name, "target": answer["target"],
            "premerged": premerged}  # fmt: skip
    tag = tuple(answer["tag"])
    for name, share in shares.items():
        staging.write_batch(staging.batch_path(Path(answer["roots"][name]), *tag), share, meta)
    session.ask({"op": "staged", "seq": int(answer["seq"]), "workers": sorted(shares)})
    return True


# ---------------------------------------------------------------------------- gateway's side
class Router:
    """The gateway's side of direct staging for one aq_pp connection (one importer)."""

    def __init__(self, roots: Any) -> None:
        self.roots = roots  # callable: view -> {worker name: staging root} or None
        self.pending: set[int] = set()  # routed, not yet reported staged

    def route(self, view: Any, spec: Any, header: dict[str, Any]) -> dict[str, Any]:
        from ess.udb.client import reviving

        target = str(header["target"])
        name = target if target in (".", "var") else spec.require(target).name
        reviving(view, view.check_placement)  # what a staged import checks per batch
        # a worker asked for its root (once) may die meanwhile: it is waited for, as above
        roots = reviving(view, lambda: self.roots(view))
        if roots is None:
            return {"ok": True, "direct": False}
        # the owners need not be running now: a staged file waits on disk for its commit
        stager = view.stager
        base = stager.reserve(view.client, int(header["rows"]))
        seq, stager.seq = stager.seq, stager.seq + 1
        self.pending.add(seq)
        return {"ok": True, "direct": True, "base": base, "seq": seq,
                "tag": list(stager.tag(seq)), "target": name, "roots": roots,
                "owners": {str(pid): owner for pid, owner in view.place.items()}}  # fmt: skip

    def staged(self, view: Any, header: dict[str, Any]) -> None:
        seq = int(header["seq"])
        self.pending.discard(seq)
        for worker in header.get("workers", []):
            view.stager.sent.setdefault(str(worker), []).append(seq)

    def before_close(self, view: Any) -> None:
        if self.pending:  # a batch was routed and never written whole
            view.stager.failed = True


def owner_roots(view: Any, cache: dict[str, str | None], handoff: Any) -> dict[str, str] | None:
    """{worker name: staging root} of every worker, when all share this machine's files and
    this user may write there; None otherwise. `cache`: by worker name, asked once (a
    worker's store root follows from its name, so a restarted worker keeps it); `handoff`:
    the gateway's shared-memory directory, whose token a worker on this machine can read."""
    unknown = [name for name in view.workers if name not in cache]
    if unknown:
        folder_token = handoff.open()
        if folder_token is None:
            return None
        addrs = view.addresses()
        for name in unknown:
            if name not in addrs:
                return None  # not running now: asked again at the next batch
            root = view.gather([view._run(addrs[name], staging.w_root, *folder_token)])[0]
            cache[name] = root if root and _writable(Path(root)) else None
    roots = {name: cache[name] for name in view.workers}
    if any(root is None for root in roots.values()):
        return None
    return {name: str(root) for name, root in roots.items()}


def _writable(root: Path) -> bool:
    try:
        return root.is_dir() and root.stat().st_uid == os.getuid() and os.access(root, os.W_OK)
    except OSError:
        return False

"""Staged imports, client side: the importer's :class:`Stager` and the stream's committer.

How staging works, and why, is in :mod:`ess.udb.staging` and docs/udb.md ("Imports inside
ess stream"). This module holds:

* :func:`stream_hooks`, the run-layer provider (:mod:`ess.run.env`, registered by
  :mod:`ess.udb.remote`): for an ``ess stream`` whose command imports, it gives every command
  the run token (``ESS_UDB_STAGE``), a per-execution attempt id and its worker's address
  (computed on the worker, so a re-run gets a new one), and the master's hooks: commit each
  file in file order, drop the run's staging at the end;
* :class:`Stager`: what an ``aq_pp`` inside such a command stages under, and its manifest;
* :class:`Committer`: the master's side.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ess.errors import EssError
from ess.run.env import PipelineEnv, RunContext, RunHooks, RunKind
from ess.run.pipeline import WorkerHook
from ess.udb.commitlink import (
    DROP,
    FORGET,
    RESERVE,
    CommitLink,
    Plan,
    SessionLink,
    open_link,
)
from ess.udb.conn import REVIVE_WAIT
from ess.workspace import Workspace

ENV_STAGE = "ESS_UDB_STAGE"
ENV_ATTEMPT = "ESS_UDB_ATTEMPT"
ENV_RUNNER = "ESS_UDB_RUNNER"
ENV_FILE = "ESS_FILE_INDEX"
#: words of a command line that may import (a stream whose command has none is not staged)
IMPORT_WORDS = ("-imp", "-udb")
#: finished files a stream's commit waits for, when more are running, to apply them as one
#: (per worker one merge and one snapshot write instead of one per file: docs/udb.md)
COMMIT_GATHER = 8


@dataclass
class Stager:
    """One aq_pp process's staging: (run, file, attempt, part) and what it has staged."""

    run: str
    file: int
    attempt: str
    runner: str
    part: int | None = None  # asked of the scheduler (or `numbering`) at the first batch
    rows: int = 0  # stamps handed out (offsets within the part)
    seq: int = 0
    sent: dict[str, list[int]] = field(default_factory=dict)  # worker name -> seqs staged
    failed: bool = False  # a batch could not be staged: the manifest says incomplete
    direct: bool = False  # not in a stream: this process commits its own import at its end
    #: the worker's own part numbers, when every part of this attempt asks the same worker
    #: process (its import gateway: ess.udb.gateway.PartNumbers); None: the scheduler's
    numbering: Callable[[], int] | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Stager:
        """Inside a stream that commits: its run, this file, this attempt. Otherwise a direct
        import's own (run, attempt), committed by :meth:`close`."""
        env = os.environ if environ is None else environ
        run, attempt, index = env.get(ENV_STAGE), env.get(ENV_ATTEMPT), env.get(ENV_FILE)
        if not run or not attempt or not index or not index.isdigit():
            own = uuid.uuid4().hex
            return cls(run=own, file=0, attempt=own, runner="", part=0, direct=True)
        return cls(run=run, file=int(index), attempt=attempt, runner=env.get(ENV_RUNNER, ""))

    def close(self, session: Any) -> None:
        """At the end of the process: register the manifest for the stream's commit, or
        commit a direct import (all of it, or nothing if a batch could not be staged)."""
        if not self.direct:
            self.register(session.client)
            return
        if not self.sent and not self.failed:
            return
        link = SessionLink(session, owned=False)
        committer = Committer(ws=session.ws, run=self.run, link=link)
        try:
            if not self.failed:
                committer._apply([(0, self.attempt, [self.manifest()], None)])
        finally:
            committer._drop(None)

    def reserve(self, client: Any, count: int) -> int:
        """`count` row stamps (offsets within this part); the first call asks for the part."""
        from ess.udb.staging import s_part

        if self.part is None and self.numbering is not None:
            self.part = self.numbering()
        elif self.part is None:
            self.part = int(client.run_on_scheduler(s_part, run=self.run, file=self.file,
                                                    attempt=self.attempt))  # fmt: skip
        base = self.rows
        self.rows += count
        return base

    def tag(self, seq: int) -> tuple[str, int, str, int, int]:
        assert self.part is not None
        return (self.run, self.file, self.attempt, self.part, seq)

    def manifest(self) -> dict[str, Any]:
        return {"part": self.part, "rows": self.rows, "workers": self.sent,
                "complete": not self.failed, "runner": self.runner}  # fmt: skip

    def register(self, client: Any) -> None:
        """Tell the scheduler what this process staged (when it ends)."""
        from ess.udb.staging import s_note

        if self.part is not None:
            client.run_on_scheduler(s_note, run=self.run, file=self.file,
                                    attempt=self.attempt, manifest=self.manifest())  # fmt: skip


def attempt_env(run: str) -> Mapping[str, str]:
    """Worker hook: a new attempt id for each execution of a command, and its worker."""
    from distributed import get_worker

    try:
        runner = str(get_worker().address)
    except ValueError:  # a local pool thread (no Dask worker): nothing to tell apart
        runner = ""
    return {ENV_STAGE: run, ENV_ATTEMPT: uuid.uuid4().hex, ENV_RUNNER: runner}


def stream_hooks(ctx: RunContext) -> PipelineEnv | None:
    """Registered with the run layer: staged imports for a stream whose command imports."""
    if ctx.kind is not RunKind.STREAM or ctx.connection is None:
        return None
    if not any(word in ctx.command for word in IMPORT_WORDS):
        return None
    run = uuid.uuid4().hex
    committer = Committer(ws=ctx.ws, run=run, pool=ctx.pool)
    hook = WorkerHook(fn=attempt_env, payload=run, failure="cannot start the UDB import")
    return PipelineEnv(hook=hook, run=RunHooks(after_files=committer.commit,
                                                finish=committer.finish,
                                                gather=COMMIT_GATHER))  # fmt: skip


#: a file's chosen attempt: (file, attempt, its parts' manifests, its row stamps' base)
Taken = tuple[int, str, list[dict[str, Any]], int | None]


def _shares(parts: list[dict[str, Any]], base: int) -> dict[str, list[tuple[int, int, int]]]:
    """Each worker's staged batches of one file [(part, seq, stamp base)]: the file's rows are
    stamped from `base` on, part after part."""
    shares: dict[str, list[tuple[int, int, int]]] = {}
    offset = base
    for p in parts:
        for name, seqs in p["workers"].items():
            shares.setdefault(name, []).extend((p["part"], q, offset) for q in sorted(seqs))
        offset += int(p["rows"])
    return shares


def _not_applied(exc: Exception) -> str:
    why = str(exc) if isinstance(exc, EssError) else f"{type(exc).__name__}: {exc}"
    return f"UDB import not applied: {why}"


@dataclass
class Committer:
    """The master's side: commit each file's staged batches in file order."""

    ws: Workspace
    run: str
    link: CommitLink | None = None  # opened at the first file that imported
    pool: Any = None  # the stream's task pool: a gateway pool is the link (ess.udb.commitlink)

    def _link(self) -> CommitLink:
        if self.link is None:
            self.link = open_link(self.ws, self.pool)
        return self.link

    def commit(self, files: list[tuple[int, bool]]) -> list[str | None]:
        """Apply the staged imports of consecutive finished files [(file, ok)] as one group;
        per file None or why it failed."""
        why: dict[int, str | None] = {file: None for file, _ in files}
        group: list[Taken] = []
        try:
            taken = self._link().take(self.run, [file for file, _ in files])
        except Exception as exc:
            for file in why:
                self._drop(file)
            return [_not_applied(exc)] * len(files)
        for (file, _), chosen in zip(files, taken, strict=True):
            if chosen is None:
                continue
            attempt, parts, base = chosen
            if base is None:
                self._drop(file)
                why[file] = "UDB import not applied: a batch of it could not be staged"
            else:
                group.append((file, attempt, parts, base))
        if group:
            try:
                self._apply(group)
            except Exception as exc:  # the files fail with one line, the stream goes on
                for file, *_ in group:
                    self._drop(file)
                    why[file] = _not_applied(exc)
        return [why[file] for file, _ in files]

    def _apply(self, group: list[Taken]) -> None:
        """Commit the staged parts of the files in `group` [(file, attempt, parts, stamp
        base)], as one on each worker; a None base: the stamps are reserved here."""
        link = self._link()
        plan: Plan = {}
        for file, attempt, parts, base in group:
            if base is None:
                total = sum(int(p["rows"]) for p in parts)
                base = int(link.on_scheduler(RESERVE, count=max(total, 1)))
            for name, batches in _shares(parts, base).items():
                plan.setdefault(name, []).append((file, attempt, batches))
        deadline = time.monotonic() + REVIVE_WAIT
        while plan:  # a worker that died before it applied its share: again once it is back
            link.ensure(sorted(plan), deadline)
            gone = link.apply(plan, self.run)
            plan = {name: plan[name] for name in gone}

    def _drop(self, file: int | None) -> None:
        with contextlib.suppress(Exception):  # best effort: stale staging is swept later
            if self.link is not None:
                self.link.each_worker(DROP, self.run, file)

    def finish(self, ok: bool) -> None:
        """End of the stream: remove whatever staging is left (a stopped run, a re-run that
        went on after its file was committed) and the scheduler's record of the run."""
        if self.link is None:
            return
        try:
            self._drop(None)
            with contextlib.suppress(Exception):
                self.link.on_scheduler(FORGET, run=self.run)
        finally:
            self.link.close()
            self.link = None

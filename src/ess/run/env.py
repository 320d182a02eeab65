"""Pipeline environment providers: what other packages add to the commands stream/exec run.

The run layer knows nothing about what a command may need beyond files and a shell; a package
that does (the UDB: spec files, the scheduler's address, the tools' PATH on a remote worker)
registers a provider here and the run layer calls every registered provider once per command
run, on the master, after planning. A provider returns static variables for every pipeline
and/or a :class:`~ess.run.pipeline.WorkerHook` (a payload and a module-level function run on the
worker before the command starts) and/or :class:`RunHooks` the run layer calls on the master
as the run goes (after each file, in file order; once at the end). Registration keeps the
dependency one way: ``ess.udb`` imports ``ess.run``, never the reverse (``ess.udb.remote``
registers itself when imported).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from ess.engine.pool import TaskPool
from ess.run.pipeline import Pipeline, WorkerHook
from ess.workspace import Workspace


class RunKind(Enum):
    STREAM = "stream"
    EXEC = "exec"


@dataclass(frozen=True)
class RunContext:
    """What a provider may look at. ``connection`` is the running cluster's
    (``ess.cluster.provider.Connection``), looked up once per command; None without a cluster
    or with ``--master``."""

    ws: Workspace
    pool: TaskPool
    connection: Any
    kind: RunKind
    command: str = ""  # the command template as typed (a provider may skip runs not for it)


@dataclass(frozen=True)
class RunHooks:
    """Called on the master by ``ess stream``. ``after_files([(index, ok), ...])``: these
    consecutive files have finished (``ok``: its command succeeded), called in file order
    before their results are reported; it returns, per file, None or why the file must count
    as failed. The run waits, when it can, until ``gather`` batches of files are ready
    before it calls (a stream's UDB commit applies them together). ``finish(ok)``: once, at
    the end (``ok`` False when the run stopped early, failed or was interrupted)."""

    after_files: Callable[[list[tuple[int, bool]]], list[str | None]] | None = None
    finish: Callable[[bool], None] | None = None
    gather: int = 1


@dataclass(frozen=True)
class PipelineEnv:
    env: tuple[tuple[str, str], ...] = ()
    hook: WorkerHook | None = None
    run: RunHooks | None = None


Provider = Callable[[RunContext], PipelineEnv | None]
_PROVIDERS: dict[str, Provider] = {}


def register_env_provider(name: str, provider: Provider) -> None:
    """Register (or replace) the provider called ``name``."""
    _PROVIDERS[name] = provider


def env_providers() -> tuple[str, ...]:
    return tuple(_PROVIDERS)


def apply_env_providers(ctx: RunContext, pipelines: Sequence[Pipeline]) -> list[Pipeline]:
    """``pipelines`` with every registered provider's additions (providers in registration
    order; a provider answering None adds nothing)."""
    return prepare_run(ctx, pipelines)[0]


def prepare_run(
    ctx: RunContext, pipelines: Sequence[Pipeline]
) -> tuple[list[Pipeline], list[RunHooks]]:
    """``apply_env_providers`` plus the run hooks the providers asked for."""
    additions = [a for a in (p(ctx) for p in _PROVIDERS.values()) if a is not None]
    env = tuple(kv for a in additions for kv in a.env)
    hooks = tuple(a.hook for a in additions if a.hook is not None)
    runs = [a.run for a in additions if a.run is not None]
    if not env and not hooks:
        return list(pipelines), runs
    return [replace(p, env=p.env + env, hooks=p.hooks + hooks) for p in pipelines], runs

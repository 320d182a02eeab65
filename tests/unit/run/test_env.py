"""Pipeline environment providers, exec's nodes and ESS_EXEC_NODE, the aq_udb exec rule."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ess.engine.pool import LocalPool, Outcome, TaskPool
from ess.run import env as run_env
from ess.run.env import PipelineEnv, RunContext, RunKind, apply_env_providers
from ess.run.exec import build_exec_pipelines, exec_nodes
from ess.run.pipeline import Pipeline, WorkerHook, run_pipeline
from ess.udb.remote import exec_follower
from ess.workspace import Workspace
from tests.unit.test_import_cycles import imports_of, module_files


def hook_env(payload: str) -> dict[str, str]:
    return {"HOOKED": payload}


def hook_fails(payload: str) -> dict[str, str]:
    raise PermissionError(13, "Permission denied", payload)


@pytest.fixture
def providers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(run_env, "_PROVIDERS", {})
    yield


def _ctx(tmp_path: Path, kind: RunKind = RunKind.STREAM) -> RunContext:
    return RunContext(
        Workspace(tmp_path / "w", tmp_path / "c", tmp_path / "a"), LocalPool(threads=1), None, kind
    )


def test_providers_add_env_and_worker_hooks(tmp_path: Path, providers: None) -> None:
    seen: list[RunKind] = []

    def static(ctx: RunContext) -> PipelineEnv:
        seen.append(ctx.kind)
        return PipelineEnv(env=(("STATIC", "s"),))

    run_env.register_env_provider("static", static)
    run_env.register_env_provider("none", lambda ctx: None)
    hook = WorkerHook(fn=hook_env, payload="from-the-worker", failure="cannot hook")
    run_env.register_env_provider("hook", lambda ctx: PipelineEnv(hook=hook))
    assert run_env.env_providers() == ("static", "none", "hook")
    base = [Pipeline(index=i, label="x", command='echo "$STATIC $HOOKED"') for i in range(2)]
    out = apply_env_providers(_ctx(tmp_path, RunKind.EXEC), base)
    assert seen == [RunKind.EXEC]
    assert [p.env for p in out] == [(("STATIC", "s"),)] * 2
    assert [p.hooks for p in out] == [(hook,)] * 2
    r = run_pipeline(out[0])
    assert r.ok and r.stdout == b"s from-the-worker\n"


def test_no_provider_leaves_pipelines_alone(tmp_path: Path, providers: None) -> None:
    base = [Pipeline(index=0, label="x", command="true")]
    assert apply_env_providers(_ctx(tmp_path), base) == base


def test_a_failing_hook_fails_the_pipeline_with_its_reason() -> None:
    hook = WorkerHook(fn=hook_fails, payload="/x/y", failure="cannot write the things here")
    r = run_pipeline(Pipeline(index=0, label="n", command="echo ran", hooks=(hook,)))
    assert not r.ok and r.stdout == b""
    assert r.error == "cannot write the things here: [Errno 13] Permission denied: '/x/y'"


def test_exec_pipelines_carry_their_node_place_and_others_clear_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipes = build_exec_pipelines(
        'echo "$ESS_EXEC_NODE"', node_names=("a", "b", "c"), threads_per_node=1, in_caller_dir=False
    )
    assert [run_pipeline(p).stdout for p in pipes] == [b"1\n", b"2\n", b"3\n"]
    # a stream started by an exec's command does not inherit the exec's place
    monkeypatch.setenv("ESS_EXEC_NODE", "2")
    r = run_pipeline(Pipeline(index=0, label="f", command='echo "[$ESS_EXEC_NODE]"'))
    assert r.stdout == b"[]\n"


class _Nodes(TaskPool):
    """Only the attributes exec_nodes reads (no tasks run)."""

    def __init__(self, names: tuple[str, ...], shared: bool) -> None:
        self.node_names, self.shared_filesystem, self.threads_per_node = names, shared, 1

    def submit(self, fn: Callable[..., Any], *args: Any, node: str | None = None) -> Any:
        raise NotImplementedError

    def outcomes(self, futures: list[Any]) -> list[Outcome]:
        raise NotImplementedError

    def wait(self, futures: list[Any]) -> None:
        raise NotImplementedError

    def cancel(self, futures: Iterable[Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def test_exec_runs_once_per_machine() -> None:
    workers = ("worker-1", "worker-2", "worker-3")
    assert exec_nodes(_Nodes(workers, shared=True)) == ("worker-1",)  # a local cluster
    assert exec_nodes(_Nodes(workers, shared=False)) == workers  # hosts of their own
    assert exec_nodes(LocalPool(threads=2)) == ("master",)


def test_aq_udb_runs_on_the_first_exec_node_only() -> None:
    assert not exec_follower({})
    assert not exec_follower({"ESS_EXEC_NODE": ""})
    assert not exec_follower({"ESS_EXEC_NODE": "1", "ESS_NODE_ID": "3"})
    assert exec_follower({"ESS_EXEC_NODE": "2", "ESS_NODE_ID": "1"})


def test_the_run_layer_never_imports_the_udb() -> None:
    modules = module_files()
    wrong = {
        name: sorted(m for m in imports_of(name, path, modules) if m.startswith("ess.udb"))
        for name, path in modules.items()
        if name.startswith("ess.run")
    }
    assert {k: v for k, v in wrong.items() if v} == {}

"""What a command on a remote worker gets to reach the UDB (ess.udb.remote), without a cluster:
the shipped definitions, the directory they land in, and the client identity."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from ess.cluster.provider import Connection
from ess.engine.pool import LocalPool
from ess.engine.security import create_tls
from ess.errors import ClusterError
from ess.run.env import RunContext, RunKind, apply_env_providers, prepare_run
from ess.run.pipeline import Pipeline
from ess.udb import remote, spec
from ess.workspace import Workspace


@pytest.fixture(autouse=True)
def only_the_udb_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests look at what the UDB adds; another package's provider (the warm service
    registers one when ess.warm.local is imported, as other tests do) is not theirs to see."""
    from ess.run import env

    udb = {name: fn for name, fn in env._PROVIDERS.items() if name.startswith("udb")}
    monkeypatch.setattr(env, "_PROVIDERS", udb)


def workspace(tmp_path: Path) -> Workspace:
    return Workspace(work_dir=tmp_path / "conf", cache_dir=tmp_path / "cache", aws_dir=tmp_path)


def test_bundle_carries_every_spec_and_lands_readable(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    spec.create_database(ws, "shop", [])
    spec.create_target(ws, "table", "sales", ["s,pkey:user", "i:amount"])
    spec.create_database(ws, "other", [])  # becomes the active database
    b = remote.bundle(ws, cluster_id="c1", worker_names=("worker-1", "worker-2"))
    assert [name for name, _ in b.specs] == ["other", "shop"]
    assert b.active == "other"

    where = remote._materialize(b, tmp_path / "specs")
    assert where.name == b.digest()
    assert remote._materialize(b, tmp_path / "specs") == where  # written once
    worker_ws = Workspace(work_dir=where, cache_dir=tmp_path, aws_dir=tmp_path)
    loaded = spec.load(worker_ws, "shop")
    assert loaded.require("sales").name == "sales"
    assert spec.active(worker_ws) == "other"
    with pytest.raises(Exception, match="no table or vector 'nosuch'"):
        loaded.require("nosuch")
    assert not list((tmp_path / "specs").glob(".tmp-*"))

    spec.create_target(ws, "vector", "totals", ["s,pkey:user", "i,+add:amount"])
    changed = remote.bundle(ws, cluster_id="c1", worker_names=("worker-1", "worker-2"))
    assert changed.digest() != b.digest()  # a new definition never reuses a stale directory


def test_connection_from_env_presents_the_workers_own_certificate(tmp_path: Path) -> None:
    assert remote.connection_from_env({}) is None
    tls = create_tls(tmp_path / "tls", cluster_id="c1")
    for role in ("client", "scheduler"):  # a worker host has only ca.crt and its own pair
        tls.key(role).unlink()
        tls.cert(role).unlink()
    tls.ca_key.unlink()
    env = {
        remote.ENV_ADDRESS: "tls://10.0.0.1:8786",
        remote.ENV_TLS_DIR: str(tls.directory),
        remote.ENV_WORKERS: "worker-1,worker-2",
        remote.ENV_CLUSTER: "c1",
    }
    conn = remote.connection_from_env(env)
    assert isinstance(conn, Connection)
    assert conn.address == "tls://10.0.0.1:8786" and conn.cluster_id == "c1"
    assert conn.worker_names == ("worker-1", "worker-2") and not conn.shared_filesystem
    security = conn.tls.dask_security("client")
    assert security.tls_client_cert == str(tls.cert("worker"))
    assert security.tls_client_key == str(tls.key("worker"))
    assert security.tls_ca_file == str(tls.ca_cert)
    assert stat.S_IMODE(tls.key("worker").stat().st_mode) == 0o600
    tls.key("worker").unlink()
    with pytest.raises(ClusterError, match="certificates are missing"):
        conn.tls.dask_security("client")


def test_pipelines_on_a_shared_filesystem_get_no_bundle(tmp_path: Path) -> None:
    pipelines = [Pipeline(index=0, label="x", command="true")]
    with LocalPool(threads=1) as pool:
        ctx = RunContext(workspace(tmp_path), pool, None, RunKind.STREAM, command="aq_pp -imp a")
        assert apply_env_providers(ctx, pipelines) == pipelines


def test_a_stream_that_imports_is_staged_and_committed_by_the_master(tmp_path: Path) -> None:
    pipelines = [Pipeline(index=0, label="x", command="true")]
    conn = object()  # any running cluster
    with LocalPool(threads=1) as pool:
        ws = workspace(tmp_path)
        out, hooks = prepare_run(RunContext(ws, pool, conn, RunKind.STREAM, "aq_pp -imp d:t"),
                                 pipelines)  # fmt: skip
        assert len(hooks) == 1 and hooks[0].after_files and hooks[0].finish
        assert hooks[0].gather > 1  # consecutive files are committed together
        env = out[0].hooks[-1].fn(out[0].hooks[-1].payload)  # on a local thread: no worker
        assert env["ESS_UDB_STAGE"] == out[0].hooks[-1].payload and env["ESS_UDB_ATTEMPT"]
        assert env["ESS_UDB_ATTEMPT"] != out[0].hooks[-1].fn(out[0].hooks[-1].payload)[
            "ESS_UDB_ATTEMPT"]  # a new attempt each time the command runs  # fmt: skip
        for ctx in (RunContext(ws, pool, conn, RunKind.STREAM, "aq_pp -f x -o y"),
                    RunContext(ws, pool, conn, RunKind.EXEC, "aq_pp -imp d:t")):  # fmt: skip
            assert prepare_run(ctx, pipelines) == (pipelines, [])


def test_tools_dir_holds_only_this_builds_tools(tmp_path: Path) -> None:
    tools = remote._tools_dir(tmp_path)
    assert tools == remote._tools_dir(tmp_path)  # idempotent
    venv_bin = Path(sys.executable).parent
    assert sorted(p.name for p in tools.iterdir()) == ["aq_pp", "aq_udb", "ess"]
    for name in ("aq_pp", "aq_udb", "ess"):
        assert (tools / name).resolve() == (venv_bin / name).resolve()

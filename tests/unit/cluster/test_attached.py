"""The dask platform's settings: what `ess cluster set dask` accepts, refuses and stores."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ess.cluster.attached import AttachedProvider, check_options
from ess.cluster.provider import (
    AttachOptions,
    CloudAuth,
    CreateOptions,
    current_platform,
    set_platform,
)
from ess.engine.security import TlsFiles, create_tls
from ess.errors import ConfigError, NotSupportedError
from ess.workspace import Workspace


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("ESS_WORK_DIR", str(tmp_path / ".conf"))
    monkeypatch.setenv("ESS_CACHE_DIR", str(tmp_path / ".ess"))
    return Workspace.from_env()


@pytest.fixture
def files(tmp_path: Path) -> TlsFiles:
    return create_tls(tmp_path / "tls", cluster_id="t")


def options(files: TlsFiles, scheduler: str = "tls://10.0.0.5:8786") -> AttachOptions:
    return AttachOptions(
        scheduler=scheduler,
        tls_ca=files.ca_cert,
        tls_cert=files.cert("client"),
        tls_key=files.key("client"),
    )


def test_set_dask_stores_paths_not_keys(ws: Workspace, files: TlsFiles) -> None:
    set_platform(ws, "dask", options(files))
    assert current_platform(ws) == "dask"
    stored = json.loads((ws.work_dir / "dask" / "cluster.json").read_text())
    assert stored == {
        "scheduler": "tls://10.0.0.5:8786",
        "tls_ca": str(files.ca_cert),
        "tls_cert": str(files.cert("client")),
        "tls_key": str(files.key("client")),
    }
    provider = AttachedProvider(ws)
    state = provider.load_state()
    assert state is not None and state.cluster_id == "dask-10.0.0.5-8786"
    # the client presents the user's files, whatever they are called
    assert state.tls.dask_security("client").tls_client_key == str(files.key("client"))
    set_platform(ws, "dask")  # again without options: the attachment is kept
    assert provider.load_state() == state


def test_key_readable_by_others_is_refused(ws: Workspace, files: TlsFiles) -> None:
    os.chmod(files.key("client"), 0o640)
    with pytest.raises(ConfigError, match=r"readable by others \(mode 0640\); 'chmod 600"):
        set_platform(ws, "dask", options(files))
    assert current_platform(ws) == "local"  # unchanged


@pytest.mark.parametrize(
    "scheduler", ["tcp://10.0.0.5:8786", "10.0.0.5:8786", "tls://10.0.0.5", "tls://:8786"]
)
def test_scheduler_must_be_tls_host_port(files: TlsFiles, scheduler: str) -> None:
    with pytest.raises(ConfigError, match="expected tls://HOST:PORT"):
        check_options(options(files, scheduler))


def test_missing_options_and_files_are_named(files: TlsFiles, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing --tls-cert CERT --tls-key KEY"):
        check_options(AttachOptions(scheduler="tls://h:1", tls_ca=files.ca_cert))
    gone = AttachOptions(
        scheduler="tls://h:1",
        tls_ca=tmp_path / "nope.pem",
        tls_cert=files.cert("client"),
        tls_key=files.key("client"),
    )
    with pytest.raises(ConfigError, match=r"--tls-ca .*nope\.pem: no such file"):
        check_options(gone)


def test_other_platforms_refuse_attach_options(ws: Workspace) -> None:
    with pytest.raises(ConfigError, match="not local"):
        set_platform(ws, "local", AttachOptions(scheduler="tls://h:1"))


def test_machine_commands_are_refused(ws: Workspace) -> None:
    provider = AttachedProvider(ws)
    calls = [
        lambda: provider.create(CreateOptions()),
        lambda: provider.terminate(forget=True, auth=CloudAuth()),
        lambda: provider.add(["x"]),
        lambda: provider.remove(["x"]),
        lambda: provider.stop(CloudAuth()),
    ]
    for call in calls:
        with pytest.raises(NotSupportedError, match="attaches to a cluster you run") as info:
            call()
        assert info.value.exit_code == 10


def test_no_attachment_is_a_clear_error(ws: Workspace) -> None:
    with pytest.raises(ConfigError, match="no dask cluster attached here"):
        AttachedProvider(ws).connection()

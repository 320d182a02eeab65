"""Platform choice, provider registry, status table format, local state handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from ess.cli.cluster import format_status
from ess.cluster.local import LocalProvider
from ess.cluster.provider import (
    CloudAuth,
    ClusterStatus,
    CreateOptions,
    NodeStatus,
    current_platform,
    platforms,
    provider_for,
    set_platform,
)
from ess.errors import ClusterError, ConfigError, NotSupportedError
from ess.workspace import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(
        work_dir=tmp_path / ".conf", cache_dir=tmp_path / ".ess", aws_dir=tmp_path / ".aws"
    )


def test_platform_defaults_to_local_and_persists(ws: Workspace) -> None:
    assert current_platform(ws) == "local"
    assert isinstance(provider_for(ws), LocalProvider)
    set_platform(ws, "custom")
    assert (ws.work_dir / ".platform").read_text() == "custom\n"
    assert provider_for(ws).platform == "custom"
    with pytest.raises(ConfigError):
        set_platform(ws, "mars")
    assert {"local", "cloud", "custom"} <= set(platforms())


@pytest.mark.parametrize("platform", ["cloud", "custom"])
def test_later_platforms_say_not_supported(ws: Workspace, platform: str) -> None:
    provider = provider_for(ws, platform)
    with pytest.raises(NotSupportedError):
        provider.create(CreateOptions(number=1))
    with pytest.raises(NotSupportedError):
        provider.connection()


def test_local_without_cluster(ws: Workspace) -> None:
    provider = LocalProvider(ws)
    assert provider.connection() is None
    with pytest.raises(ClusterError, match="no local cluster"):
        provider.status()
    provider.terminate(forget=False, auth=CloudAuth())  # nothing to do, no error


def test_corrupt_state_is_a_clear_error(ws: Workspace) -> None:
    provider = LocalProvider(ws)
    provider.directory.mkdir(parents=True)
    provider.state_file.write_text('{"id": "x"}')
    with pytest.raises(ClusterError, match="corrupt"):
        provider.load_state()


def test_cloud_auth_repr_hides_the_secret() -> None:
    assert "s3cr3t" not in repr(CloudAuth(access_key="AK", secret_key="s3cr3t"))


def test_status_table_is_tabulate_simple() -> None:
    status = ClusterStatus(
        "my_id",
        (
            NodeStatus("master", "running", "127.0.0.1", "127.0.0.1", "[0.0]", "20.1", "10.7"),
            NodeStatus("worker-1", "running", "10.1.0.10", "10.1.0.10", "[0.0]", "27.8", "10.1"),
        ),
    )
    assert format_status(status) == (
        "Summary for cluster my_id\n\n"
        "ID        state    publicIP    privateIP    cpu    mem    disk\n"
        "--------  -------  ----------  -----------  -----  -----  ------\n"
        "master    running  127.0.0.1   127.0.0.1    [0.0]  20.1   10.7\n"
        "worker-1  running  10.1.0.10   10.1.0.10    [0.0]  27.8   10.1"
    )
    with_res = ClusterStatus(
        "c",
        (
            NodeStatus(
                "worker-1", "running", "a", "b", "[1]", "1", "1", reservation="r-1", version="0.1.0"
            ),
        ),
    )
    assert format_status(with_res).splitlines()[2].split()[-2:] == ["reservation", "version"]

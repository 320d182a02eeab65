"""Platform choice, provider registry, status table format, local state handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from ess.cli.cluster import format_status
from ess.cluster.local import LocalProvider
from ess.cluster.provider import (
    CloudAuth,
    ClusterProvider,
    ClusterStatus,
    Connection,
    CreateOptions,
    NodeStatus,
    current_platform,
    platforms,
    provider_for,
    register_provider,
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
    set_platform(ws, "toy-platform")
    assert (ws.work_dir / ".platform").read_text() == "toy-platform\n"
    assert current_platform(ws) == "toy-platform"
    with pytest.raises(ConfigError):
        set_platform(ws, "mars")
    assert {"local", "toy-platform"} <= set(platforms())
    set_platform(ws, "local")
    assert isinstance(provider_for(ws), LocalProvider)


@register_provider
class ToyProvider(ClusterProvider):
    """A provider registered by the test: plugs in without touching the command line."""

    platform = "toy-platform"

    def _no(self) -> NotSupportedError:
        return NotSupportedError(f"{self.platform} clusters")

    def create(self, options: CreateOptions) -> ClusterStatus:
        raise self._no()

    def start(self, auth: CloudAuth) -> ClusterStatus:
        raise self._no()

    def stop(self, auth: CloudAuth) -> None:
        raise self._no()

    def terminate(self, *, forget: bool, auth: CloudAuth) -> None:
        raise self._no()

    def status(self) -> ClusterStatus:
        raise self._no()

    def reset(self) -> None:
        raise self._no()

    def iplist(self, *, kind: str | None = None) -> list[str]:
        raise self._no()

    def connection(self, *, revive: bool = True) -> Connection | None:
        raise self._no()


def test_registered_providers_plug_in(ws: Workspace) -> None:
    set_platform(ws, "toy-platform")
    provider = provider_for(ws)
    assert isinstance(provider, ToyProvider)
    with pytest.raises(NotSupportedError, match="toy-platform"):
        provider.create(CreateOptions(number=1))
    with pytest.raises(NotSupportedError):
        provider.connection()


def test_local_without_cluster(ws: Workspace) -> None:
    provider = LocalProvider(ws)
    assert provider.connection() is None
    status = provider.status()
    assert status.cluster_id == "local"
    assert [(n.id, n.state) for n in status.nodes] == [("master", "running")]
    assert provider.iplist() == []
    with pytest.raises(ClusterError, match="no local cluster"):
        provider.stop(CloudAuth())
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

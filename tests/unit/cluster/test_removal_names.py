"""What ``ess cluster remove`` will do to worker names (the UDB drains by it, ess.udb.drain)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ess.cluster.custom import CustomProvider
from ess.cluster.local import LocalProvider
from ess.errors import ConfigError
from ess.workspace import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    work = tmp_path / ".conf"
    work.mkdir()
    return Workspace(work_dir=work, cache_dir=tmp_path / ".ess", aws_dir=tmp_path / ".aws")


def test_custom_removal_renumbers_the_remaining_workers(ws: Workspace) -> None:
    hosts = ["10.0.0.1", "10.0.0.2", "10.0.0.3:2222", "10.0.0.4"]
    (ws.work_dir / "reservation.json").write_text(json.dumps({"id": "c", "ip_list": hosts}))
    provider = CustomProvider(ws)
    assert provider.names_after_removal(["10.0.0.2"]) == {
        "worker-1": "worker-1",
        "worker-2": None,
        "worker-3": "worker-2",
        "worker-4": "worker-3",
    }
    assert provider.names_after_removal(["10.0.0.1", "10.0.0.3:2222"]) == {
        "worker-1": None,
        "worker-2": "worker-1",
        "worker-3": None,
        "worker-4": "worker-2",
    }
    assert set(provider.names_after_removal(hosts).values()) == {None}
    with pytest.raises(ConfigError, match=r"10\.0\.0\.9: not a host of custom cluster c"):
        provider.names_after_removal(["10.0.0.9"])


def test_platforms_without_remove_have_nothing_to_drain(ws: Workspace) -> None:
    assert LocalProvider(ws).names_after_removal(["x"]) == {}

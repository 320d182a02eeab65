"""`ess udbd stop` stops the local cluster `ess udbd start` brought up, and only that one: not a
cluster the user has stopped and started again by hand since."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import EssEnv, make_env

pytestmark = pytest.mark.slow


@pytest.fixture
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EssEnv]:
    env = make_env(tmp_path_factory.mktemp("implicit"))
    env.ess("select", "local", check=True)
    env.ess("create", "database", "d", check=True)
    env.ess("create", "table", "t", "s,pkey:k", check=True)
    try:
        yield env
    finally:
        env.ess("cluster", "terminate", "-y", timeout=120)


def _running(env: EssEnv) -> bool:
    return "worker-1  running" in env.ess("cluster", "status", check=True).stdout


def test_udbd_stop_stops_only_the_cluster_it_started(box: EssEnv) -> None:
    box.ess("udbd", "start", check=True, timeout=240)
    assert _running(box)
    box.ess("udbd", "stop", check=True, timeout=120)
    assert not _running(box), "udbd stop left the cluster it created running"

    box.ess("udbd", "start", check=True, timeout=240)  # a cluster again (created by udbd)
    box.ess("cluster", "stop", check=True, timeout=120)
    box.ess("cluster", "start", check=True, timeout=240)  # now the user's own start
    box.ess("udbd", "stop", check=True, timeout=120)
    assert _running(box), "udbd stop stopped a cluster the user had started by hand"

"""`--json` of the commands that need a running cluster (`ess cluster status`, `ess cluster
iplist`, `ess udbd status`), on one real local cluster of one worker with the UDB started,
validated against docs/json-schemas and compared with the text the same commands print."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

import pytest

from tests.conftest import EssEnv, make_env
from tests.integration.test_local_cluster import daemon_pids
from tests.unit.test_json_output import validated

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EssEnv]:
    env = make_env(tmp_path_factory.mktemp("json-cluster"))
    seen: dict[str, int] = {}
    try:
        env.ess("cluster", "set", "local", check=True)
        env.ess("cluster", "create", "--number", "1", check=True, timeout=120)
        seen.update(daemon_pids(env))
        env.ess("create", "database", "wood", check=True)
        env.ess("create", "vector", "v", "s,pkey:user", "i,+add:n", check=True)
        env.ess("udbd", "start", check=True, timeout=120)
        yield env
    finally:
        seen.update(daemon_pids(env))
        env.ess("cluster", "terminate", "-y", timeout=60)
        for pid in seen.values():  # whatever terminate left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_cluster_status_json_has_the_rows_of_the_table(cluster: EssEnv) -> None:
    doc = validated("cluster-status", cluster.ess("cluster", "status", "--json", check=True).stdout)
    assert doc["cluster_id"].startswith("local-") and doc["problems"] == []
    assert [(n["id"], n["state"], n["private_ip"]) for n in doc["nodes"]] == [
        ("master", "running", "127.0.0.1"),
        ("worker-1", "running", "127.0.0.1"),
    ]
    text = cluster.ess("cluster", "status", check=True).stdout.splitlines()
    assert text[0] == f"Summary for cluster {doc['cluster_id']}"
    assert [line.split()[:4] for line in text[4:]] == [
        [n["id"], n["state"], n["public_ip"], n["private_ip"]] for n in doc["nodes"]
    ]

    every = cluster.ess("cluster", "status", "--all", "--json", check=True).stdout
    ours = [d for d in validated("cluster-status", every)["daemons"]
            if d["cluster_id"] == doc["cluster_id"]]  # fmt: skip
    assert {(d["role"], d["name"]) for d in ours} >= {("scheduler", "scheduler"),
                                                     ("worker", "worker-1")}  # fmt: skip
    assert all(d["orphan"] is None and d["directory_exists"] and d["rss"] > 0 for d in ours)
    assert {d["pid"] for d in ours} >= set(daemon_pids(cluster).values())


def test_cluster_iplist_json_lists_the_text_addresses(cluster: EssEnv) -> None:
    doc = validated("cluster-iplist", cluster.ess("cluster", "iplist", "--json", check=True).stdout)
    assert doc == {"kind": None, "addresses": ["127.0.0.1"]}
    assert cluster.ess("cluster", "iplist", check=True).stdout.splitlines() == doc["addresses"]
    private = cluster.ess("cluster", "iplist", "--private", "--json", check=True).stdout
    assert validated("cluster-iplist", private)["kind"] == "private"


def test_udbd_status_json_of_a_running_udb(cluster: EssEnv) -> None:
    doc = validated("udbd-status", cluster.ess("udbd", "status", "--json", check=True).stdout)
    assert doc["running"] is True and doc["cluster_running"] is True
    assert doc["load_errors"] == [] and doc["damaged"] == []
    assert doc["pid"] == daemon_pids(cluster)["scheduler"]
    text = cluster.ess("udbd", "status", check=True).stdout.splitlines()
    assert text == [f"{doc['host']}: udbd-{p} ({doc['pid']}) is running." for p in doc["ports"]]

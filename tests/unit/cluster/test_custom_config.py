"""reservation.json of custom clusters: Essentia's format, the extensions, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ess.cluster.custom_config import load, update_hosts
from ess.cluster.ssh import Host
from ess.errors import ConfigError
from ess.workspace import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    work = tmp_path / ".conf"
    work.mkdir()
    return Workspace(work_dir=work, cache_dir=tmp_path / ".ess", aws_dir=tmp_path / ".aws")


def write(ws: Workspace, data: object) -> None:
    (ws.work_dir / "reservation.json").write_text(json.dumps(data))


def pem(ws: Workspace, name: str = "dev.pem", mode: int = 0o400) -> Path:
    path = ws.work_dir / name
    path.write_text("key")
    path.chmod(mode)
    return path


def test_essentia_format(ws: Workspace) -> None:
    key = pem(ws)
    write(ws, {"id": "my_id", "pem": "dev", "ip_list": ["10.1.0.10", "10.1.0.11", "10.1.0.12"]})
    res = load(ws)
    assert res.id == "my_id" and res.user == "ec2-user" and res.pem == key.resolve()
    assert [h.label for h in res.hosts] == ["10.1.0.10", "10.1.0.11", "10.1.0.12"]
    assert res.host_key_policy == "tofu" and res.node_dir == ".ess-node"


def test_extensions(ws: Workspace, tmp_path: Path) -> None:
    key = tmp_path / "keys" / "k"
    key.parent.mkdir()
    key.write_text("key")
    key.chmod(0o600)
    write(
        ws,
        {
            "id": "c",
            "user": "ubuntu",
            "pem": str(key),
            "ip_list": ["10.0.0.1:2222", "[fe80::1]:22"],
            "python": "/usr/bin/python3.12",
            "pip_args": "--no-index --find-links /srv/wheels",
            "system_site_packages": True,
            "venv_args": "--without-pip",
            "host_key_policy": "strict",
            "master": "10.0.0.254",
            "connect_timeout": 3,
        },
    )
    res = load(ws)
    assert res.user == "ubuntu" and res.pem == key.resolve()
    assert res.hosts == (Host("10.0.0.1", 2222), Host("fe80::1", 22))
    assert res.python == "/usr/bin/python3.12" and res.system_site_packages
    assert res.host_key_policy == "strict" and res.master == "10.0.0.254"
    assert res.connect_timeout == 3.0


def test_no_pem_means_agent_and_default_keys(ws: Workspace) -> None:
    write(ws, {"id": "c", "ip_list": ["h1"]})
    assert load(ws).pem is None


def test_pem_name_with_suffix_and_missing(ws: Workspace) -> None:
    key = pem(ws, "dev.pem")
    write(ws, {"id": "c", "pem": "dev.pem", "ip_list": []})
    assert load(ws).pem == key.resolve()
    write(ws, {"id": "c", "pem": "nope", "ip_list": []})
    with pytest.raises(ConfigError, match=r"'pem': no key file .*nope\.pem"):
        load(ws)


def test_pem_readable_by_others_is_refused(ws: Workspace) -> None:
    pem(ws, mode=0o644)
    write(ws, {"id": "c", "pem": "dev", "ip_list": []})
    with pytest.raises(ConfigError, match="chmod 400"):
        load(ws)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"ip_list": []}, "'id'"),
        ({"id": "c"}, "'ip_list'"),
        ({"id": "c", "ip_list": "10.0.0.1"}, "'ip_list'"),
        ({"id": "c", "ip_list": ["a b"]}, "bad host"),
        ({"id": "c", "ip_list": ["h", "h:22"]}, "listed twice"),
        ({"id": "c", "ip_list": [], "user": "x; rm -rf ~"}, "bad user"),
        ({"id": "c", "ip_list": [], "host_key_policy": "yes"}, "choose from tofu, strict"),
        ({"id": "c", "ip_list": [], "connect_timeout": 0}, "'connect_timeout'"),
        ({"id": "c", "ip_list": [], "system_site_packages": "yes"}, "true or false"),
        ({"id": "c", "ip_list": [], "colour": "red"}, "unknown key"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_reservations_name_the_key(ws: Workspace, data: object, message: str) -> None:
    write(ws, data)
    with pytest.raises(ConfigError, match=r"reservation\.json") as info:
        load(ws)
    assert message in str(info.value)


def test_missing_file_explains_the_format(ws: Workspace) -> None:
    with pytest.raises(ConfigError, match=r"missing.*ip_list"):
        load(ws)


def test_update_hosts_keeps_everything_else(ws: Workspace) -> None:
    pem(ws)
    write(ws, {"id": "c", "pem": "dev", "ip_list": ["h1"], "user": "u"})
    assert update_hosts(ws, lambda hosts: [*hosts, "h2:2222"]) == ["h1", "h2:2222"]
    data = json.loads((ws.work_dir / "reservation.json").read_text())
    assert data == {"id": "c", "pem": "dev", "ip_list": ["h1", "h2:2222"], "user": "u"}
    before = (ws.work_dir / "reservation.json").read_text()
    with pytest.raises(ConfigError):
        update_hosts(ws, lambda hosts: [*hosts, "bad host"])
    assert (ws.work_dir / "reservation.json").read_text() == before

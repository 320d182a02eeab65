"""``.conf/reservation.json`` of a custom cluster: the user's hosts and how to reach them.

Essentia's format (``id``, ``pem``, ``ip_list``) is read unchanged. Extensions, all optional:

=======================  ======================================================================
``user``                 SSH user (default ``ec2-user``, Essentia's only user)
``pem``                  key name in ``.conf`` (``dev`` → ``.conf/dev.pem``) or a path
                         (with a ``/``); without it the SSH agent and ``~/.ssh/id_*`` are used
``ip_list`` entries      ``address``, ``address:port`` or ``[v6address]:port``
``python``               interpreter on the hosts for the ess virtualenv (default: the first
                         of python3.13/3.12/3.11 on the PATH)
``pip_args``             extra ``pip install`` arguments (e.g. ``--no-index --find-links DIR``)
``system_site_packages`` make the virtualenv with ``--system-site-packages`` (dependencies
                         already installed on the hosts)
``venv_args``            more ``python -m venv`` arguments (e.g. ``--without-pip`` when the
                         hosts' site packages provide pip)
``host_key_policy``      ``tofu`` (default: record a new host's key, refuse a changed one) or
                         ``strict`` (the key must already be in ``.conf/known_hosts``)
``master``               the master's address as the hosts reach it (default: the address the
                         master's SSH connections leave from)
``node_dir``             where ess lives on a host (default ``.ess-node``, under the home)
``connect_timeout``      seconds per SSH connection attempt (default 10)
=======================  ======================================================================
"""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ess.cluster.ssh import CONNECT_TIMEOUT, POLICIES, Host
from ess.errors import ConfigError
from ess.workspace import Workspace, locked, read_json, write_bytes_atomic

DEFAULT_USER = "ec2-user"
DEFAULT_NODE_DIR = ".ess-node"
KNOWN_KEYS = {
    "id",
    "pem",
    "user",
    "ip_list",
    "python",
    "pip_args",
    "system_site_packages",
    "venv_args",
    "host_key_policy",
    "master",
    "node_dir",
    "connect_timeout",
}


@dataclass(frozen=True)
class Reservation:
    id: str
    hosts: tuple[Host, ...]
    user: str = DEFAULT_USER
    pem: Path | None = None
    python: str | None = None
    pip_args: str = ""
    system_site_packages: bool = False
    venv_args: str = ""
    host_key_policy: str = "tofu"
    master: str | None = None
    node_dir: str = DEFAULT_NODE_DIR
    connect_timeout: float = CONNECT_TIMEOUT


def reservation_file(ws: Workspace) -> Path:
    return ws.work_dir / "reservation.json"


def known_hosts_file(ws: Workspace) -> Path:
    return ws.work_dir / "known_hosts"


def load(ws: Workspace) -> Reservation:
    path = reservation_file(ws)
    data = read_json(path)
    if data is None:
        raise ConfigError(
            f"{path}: missing. A custom cluster is described by this file, e.g. "
            '{"id": "my_id", "pem": "dev", "user": "ec2-user", "ip_list": ["10.1.0.10"]} '
            "(see docs/custom.md)"
        )
    return parse(data, path=path, ws=ws)


def _fail(path: Path, key: str, why: str) -> ConfigError:
    return ConfigError(f"{path}: {key!r}: {why}")


def parse(data: Any, *, path: Path, ws: Workspace) -> Reservation:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}")
    cluster_id = data.get("id")
    if not isinstance(cluster_id, str) or not cluster_id.strip():
        raise _fail(path, "id", "a non-empty string is required")
    raw_hosts = data.get("ip_list")
    if not isinstance(raw_hosts, list) or not all(isinstance(h, str) for h in raw_hosts):
        raise _fail(path, "ip_list", "a list of host strings is required")
    hosts: list[Host] = []
    for entry in raw_hosts:
        try:
            host = Host.parse(entry)
        except ValueError as exc:
            raise _fail(path, "ip_list", str(exc)) from exc
        if host in hosts:
            raise _fail(path, "ip_list", f"{host.label} is listed twice")
        hosts.append(host)
    user = _string(data, "user", path) or DEFAULT_USER
    if not _safe_word(user):
        raise _fail(path, "user", f"bad user name {user!r}")
    policy = _string(data, "host_key_policy", path) or "tofu"
    if policy not in POLICIES:
        raise _fail(path, "host_key_policy", f"choose from {', '.join(POLICIES)}")
    timeout = data.get("connect_timeout", CONNECT_TIMEOUT)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        raise _fail(path, "connect_timeout", "a positive number of seconds is required")
    system_site = data.get("system_site_packages", False)
    if not isinstance(system_site, bool):
        raise _fail(path, "system_site_packages", "true or false")
    pem_name = _string(data, "pem", path)
    return Reservation(
        id=cluster_id.strip(),
        hosts=tuple(hosts),
        user=user,
        pem=resolve_pem(pem_name, ws=ws, path=path) if pem_name else None,
        python=_string(data, "python", path),
        pip_args=_string(data, "pip_args", path) or "",
        system_site_packages=system_site,
        venv_args=_string(data, "venv_args", path) or "",
        host_key_policy=policy,
        master=_string(data, "master", path),
        node_dir=_string(data, "node_dir", path) or DEFAULT_NODE_DIR,
        connect_timeout=float(timeout),
    )


def _string(data: dict[str, Any], key: str, path: Path) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(path, key, "a string is required")
    return value.strip() or None


def _safe_word(text: str) -> bool:
    return bool(text) and all(c.isalnum() or c in "._-" for c in text) and text[0] != "-"


def resolve_pem(name: str, *, ws: Workspace, path: Path) -> Path:
    """``dev`` → ``.conf/dev.pem`` (Essentia), ``dev.pem`` → ``.conf/dev.pem``, a path as is."""
    if "/" in name or name.startswith("~"):
        candidates = [Path(name).expanduser()]
    else:
        base = ws.work_dir
        candidates = [base / f"{name}.pem", base / name]
    for pem in candidates:
        if pem.is_file():
            mode = stat.S_IMODE(pem.stat().st_mode)
            if mode & 0o077:
                raise _fail(
                    path,
                    "pem",
                    f"{pem} is accessible by others (mode {mode:04o}); "
                    f"'chmod 400 {pem}' (ssh refuses such keys too)",
                )
            return pem.resolve()
    raise _fail(path, "pem", f"no key file {' or '.join(str(c) for c in candidates)}")


def update_hosts(ws: Workspace, change: Any) -> list[str]:
    """Rewrite ``ip_list`` with ``change(list) -> list``; every other key is kept as written."""
    path = reservation_file(ws)
    with locked(path):
        data = read_json(path)
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: missing or not a JSON object")
        current = list(data.get("ip_list") or [])
        data["ip_list"] = change(current)
        parse(data, path=path, ws=ws)  # refuse to write something we could not read back
        write_bytes_atomic(path, (json.dumps(data, indent=3) + "\n").encode())
        return list(data["ip_list"])

from __future__ import annotations

import json
import multiprocessing
import stat
from pathlib import Path

import pytest

from ess.errors import ConfigError
from ess.workspace import Workspace, read_json, update_json, write_secret


def _bump(path: str, times: int) -> None:
    for _ in range(times):
        update_json(Path(path), lambda d: {"n": (d or {"n": 0})["n"] + 1}, default=None)


def test_concurrent_updates_never_lose_or_corrupt(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_bump, args=(str(target), 40)) for _ in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    assert json.loads(target.read_text()) == {"n": 240}
    assert not list(tmp_path.glob("*.tmp"))


def test_failed_change_leaves_file_untouched(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    update_json(target, lambda d: {"kept": True})
    before = target.read_bytes()

    def explode(_: object) -> object:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        update_json(target, explode)
    assert target.read_bytes() == before


def test_corrupt_state_file_is_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("{not json")
    with pytest.raises(ConfigError, match=r"state\.json: corrupt state file"):
        read_json(target)


def test_secrets_are_owner_only(tmp_path: Path) -> None:
    target = tmp_path / "k.pem"
    write_secret(target, b"secret")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_environment_overrides() -> None:
    ws = Workspace.from_env({"ESS_WORK_DIR": "/w", "ESS_CACHE_DIR": "/c", "ESS_AWS_DIR": "/a"})
    assert (str(ws.work_dir), str(ws.cache_dir), str(ws.aws_dir)) == ("/w", "/c", "/a")
    default = Workspace.from_env({})
    assert default.work_dir == Path(".conf") and default.cache_dir.name == ".ess"

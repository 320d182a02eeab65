"""Where ess keeps its state, and how it writes it safely.

Three directories, each overridable by an environment variable read on every invocation:

* ``ESS_WORK_DIR`` (default ``./.conf``): per-directory state (platform, cluster, UDB specs).
* ``ESS_CACHE_DIR`` (default ``~/.ess``): datastores, categories and their file lists.
* ``ESS_AWS_DIR`` (default ``~/.aws``): pem files of key pairs made by ``ess cluster create``.

Every state write goes through :func:`write_json_atomic` / :func:`update_json`: the new content
is written to a temporary file in the same directory, fsynced and renamed over the old one, all
under an exclusive ``fcntl`` lock, so two ``ess`` processes never corrupt or lose an update.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ess.errors import ConfigError

SECRET_MODE = 0o600


@dataclass(frozen=True)
class Workspace:
    work_dir: Path
    cache_dir: Path
    aws_dir: Path

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Workspace:
        env = os.environ if environ is None else environ
        return cls(
            work_dir=Path(env.get("ESS_WORK_DIR") or "./.conf").expanduser(),
            cache_dir=Path(env.get("ESS_CACHE_DIR") or "~/.ess").expanduser(),
            aws_dir=Path(env.get("ESS_AWS_DIR") or "~/.aws").expanduser(),
        )


def _lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock that guards ``path`` (a sibling ``.NAME.lock`` file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(_lock_path(path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def write_bytes_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` in one rename; readers see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: Path, default: Any = None) -> Any:
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        return default
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: corrupt state file ({exc})") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read state file ({exc.strerror})") from exc


def write_json_atomic(path: Path, data: Any, *, mode: int = 0o644, compact: bool = False) -> None:
    """``compact`` skips indentation: large lists then go through json's C encoder (10x faster)."""
    text = (
        json.dumps(data, separators=(",", ":"))
        if compact
        else json.dumps(data, indent=1, sort_keys=True)
    )
    payload = text.encode() + b"\n"
    with locked(path):
        write_bytes_atomic(path, payload, mode=mode)


def update_json(
    path: Path, change: Callable[[Any], Any], *, default: Any = None, mode: int = 0o644
) -> Any:
    """Read-modify-write ``path`` under its lock; ``change`` returns the new content.

    If ``change`` raises, the file is left exactly as it was.
    """
    with locked(path):
        new = change(read_json(path, default))
        payload = json.dumps(new, indent=1, sort_keys=True).encode() + b"\n"
        write_bytes_atomic(path, payload, mode=mode)
        return new


def write_secret(path: Path, data: bytes) -> None:
    """Write key material or credentials readable by the owner only (0600)."""
    with locked(path):
        write_bytes_atomic(path, data, mode=SECRET_MODE)

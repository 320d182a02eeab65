"""``ess file push/get/mkdir``: move files between the master and the workers.

Paths on a worker are relative to its working directory: the caller's directory for workers
that share this machine (local clusters), the worker's own directory elsewhere. When the
workers share the master's filesystem one operation is enough (Essentia: "in local mode these
are effectively local copies/no-ops"). ``get`` writes each file under its own name in the
master's current directory; when several nodes return the same name each copy is prefixed with
its node id (``worker-2.result.csv``).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ess.engine.pool import LocalPool, TaskPool
from ess.errors import ClusterError, EssError


@dataclass(frozen=True)
class Payload:
    name: str  # relative path under the destination
    data: bytes
    mode: int
    origin: str = ""  # absolute path where the node read it (get)


def _targets(pool: TaskPool) -> tuple[str, ...]:
    return pool.node_names[:1] if pool.shared_filesystem else pool.node_names


def _cwd(pool: TaskPool) -> str | None:
    return os.getcwd() if pool.shared_filesystem and not isinstance(pool, LocalPool) else None


def _base(cwd: str | None) -> Path:
    return Path(cwd) if cwd else Path.cwd()


def write_payloads(dest: str, payloads: list[Payload], cwd: str | None) -> list[str]:
    """(worker) Write ``payloads`` under ``dest``; skip a file that is its own source."""
    target_dir = _base(cwd) / dest
    target_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for p in payloads:
        target = target_dir / p.name
        tmp = target.with_name(f".{target.name}.ess-tmp")
        tmp.write_bytes(p.data)
        os.chmod(tmp, p.mode & 0o777)
        os.replace(tmp, target)
        written.append(str(target))
    return written


def make_dir(name: str, cwd: str | None) -> str:
    path = _base(cwd) / name
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def read_paths(names: list[str], cwd: str | None) -> list[Payload]:
    """(worker) The named files, and every file under the named directories."""
    base = _base(cwd)
    result = []
    for name in names:
        path = base / name
        if path.is_dir():
            top = path.resolve().name
            for root, _dirs, files in os.walk(path):
                for f in sorted(files):
                    full = Path(root) / f
                    rel = Path(top) / full.relative_to(path)
                    result.append(
                        Payload(
                            str(rel), full.read_bytes(), full.stat().st_mode, str(full.resolve())
                        )
                    )
        elif path.is_file():
            result.append(
                Payload(path.name, path.read_bytes(), path.stat().st_mode, str(path.resolve()))
            )
        else:
            raise FileNotFoundError(f"{name}: no such file or directory")
    return result


def _gather(pool: TaskPool, futures: list[object], nodes: tuple[str, ...]) -> list[object]:
    pool.wait(futures)
    values = []
    for node, outcome in zip(nodes, pool.outcomes(futures), strict=True):
        if outcome.error is not None:
            if isinstance(outcome.error, EssError):
                raise outcome.error
            raise ClusterError(f"{node}: {outcome.error}")
        values.append(outcome.value)
    return values


def push(pool: TaskPool, files: list[Path], *, dest: str | None) -> list[str]:
    payloads = []
    for f in files:
        try:
            payloads.append(Payload(f.name, f.read_bytes(), f.stat().st_mode))
        except OSError as exc:
            raise ClusterError(f"{f}: cannot read ({exc.strerror})") from exc
    nodes = _targets(pool)
    cwd = _cwd(pool)
    dest = dest or "."
    if pool.shared_filesystem:
        # Pushing a file onto itself (no --dest on a shared filesystem) is a no-op.
        base = _base(cwd) / dest
        payloads = [
            p
            for p, f in zip(payloads, files, strict=True)
            if not ((base / p.name).exists() and (base / p.name).samefile(f))
        ]
        if not payloads:
            return []
    futures = [pool.submit(write_payloads, dest, payloads, cwd, node=n) for n in nodes]
    written: list[str] = []
    for node, names in zip(nodes, _gather(pool, futures, nodes), strict=True):
        written.extend(f"{node}:{name}" for name in names)  # type: ignore[attr-defined]
    return written


def mkdir(pool: TaskPool, name: str) -> list[str]:
    nodes = _targets(pool)
    cwd = _cwd(pool)
    futures = [pool.submit(make_dir, name, cwd, node=n) for n in nodes]
    return [f"{n}:{path}" for n, path in zip(nodes, _gather(pool, futures, nodes), strict=True)]


def get(pool: TaskPool, names: list[str], *, into: Path | None = None) -> list[str]:
    """Fetch ``names`` from every node into ``into`` (default: the current directory)."""
    into = into or Path.cwd()
    nodes = _targets(pool)
    cwd = _cwd(pool)
    futures = [pool.submit(read_paths, names, cwd, node=n) for n in nodes]
    per_node: list[list[Payload]] = _gather(pool, futures, nodes)  # type: ignore[assignment]
    counts = Counter(p.name for payloads in per_node for p in payloads)
    written = []
    for node, payloads in zip(nodes, per_node, strict=True):
        for p in payloads:
            name = p.name if counts[p.name] == 1 else _prefixed(node, p.name)
            target = into / name
            if pool.shared_filesystem and target.exists() and target.samefile(p.origin):
                continue  # already on the master
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(p.data)
            os.chmod(target, p.mode & 0o777)
            written.append(str(target))
    return written


def _prefixed(node: str, name: str) -> str:
    head, sep, tail = name.rpartition("/")
    return f"{head}{sep}{node}.{tail}"

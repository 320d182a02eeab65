"""ess file: push to every node, get with worker-id prefixes on name collisions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ess.engine.pool import LocalPool
from ess.run import files


class TwoNodes(LocalPool):
    """Two "nodes" with separate working directories (stands in for remote workers)."""

    shared_filesystem = False

    def __init__(self, root: Path) -> None:
        super().__init__(threads=2)
        self.node_names = ("worker-1", "worker-2")
        self.dirs = {n: root / n for n in self.node_names}
        for d in self.dirs.values():
            d.mkdir()

    def submit(self, fn: Callable[..., Any], *args: Any, node: str | None = None) -> Any:
        assert node is not None
        return super().submit(fn, *args[:-1], str(self.dirs[node]))  # cwd is the last arg


def test_push_mkdir_get_across_nodes(tmp_path: Path) -> None:
    src = tmp_path / "a.csv"
    src.write_text("1\n")
    master = tmp_path / "master"
    master.mkdir()
    with TwoNodes(tmp_path) as pool:
        written = files.push(pool, [src], dest="in")
        assert sorted(w.split(":", 1)[0] for w in written) == ["worker-1", "worker-2"]
        for d in pool.dirs.values():
            assert (d / "in" / "a.csv").read_text() == "1\n"
        files.mkdir(pool, "made")
        assert all((d / "made").is_dir() for d in pool.dirs.values())
        (pool.dirs["worker-1"] / "only1.txt").write_text("one\n")
        (pool.dirs["worker-2"] / "in" / "a.csv").write_text("2\n")
        got = files.get(pool, ["in/a.csv"], into=master)
        assert sorted(Path(g).name for g in got) == ["worker-1.a.csv", "worker-2.a.csv"]
        assert (master / "worker-2.a.csv").read_text() == "2\n"
        (pool.dirs["worker-2"] / "only1.txt").unlink(missing_ok=True)


def test_get_unique_names_keep_their_name_and_folders_recurse(tmp_path: Path) -> None:
    master = tmp_path / "master"
    master.mkdir()
    with TwoNodes(tmp_path) as pool:
        (pool.dirs["worker-1"] / "out").mkdir()
        (pool.dirs["worker-1"] / "out" / "x.txt").write_text("x\n")
        (pool.dirs["worker-2"] / "out").mkdir()
        (pool.dirs["worker-2"] / "out" / "y.txt").write_text("y\n")
        got = files.get(pool, ["out"], into=master)
    assert sorted(Path(g).relative_to(master).as_posix() for g in got) == ["out/x.txt", "out/y.txt"]


def test_prefix_keeps_directories() -> None:
    assert files._prefixed("worker-2", "out/x.txt") == "out/worker-2.x.txt"
    assert files._prefixed("worker-2", "x.txt") == "worker-2.x.txt"

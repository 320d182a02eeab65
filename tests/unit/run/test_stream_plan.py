"""Planning a stream: names, debug lines, grouping, ordering."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ess.datastore.api import StoreSpec
from ess.engine.pool import LocalPool
from ess.run.pipeline import NODE_ID, THREAD_ID, Pipeline, Source
from ess.run.stream import (
    FileRef,
    build_pipelines,
    debug_line,
    file_values,
    make_batches,
    run_ordered,
    run_ordered_groups,
    split_balanced,
)


def test_file_values() -> None:
    assert file_values("/d/wood/browse_20140901.gz", "/") == {
        "FILE": "browse_20140901.gz",
        "file": "browse_20140901",
        "path": "d/wood",
    }
    assert file_values("bucket/pre/x/log-1.csv.gz", "bucket/pre")["file"] == "log-1.csv"
    assert file_values("bucket/pre/x/log-1.csv.gz", "bucket/pre")["path"] == "x"
    assert file_values("bucket/pre/.hidden", "bucket/pre") == {
        "FILE": ".hidden",
        "file": ".hidden",
        "path": ".",
    }


def test_debug_line_is_essentias_byte_for_byte() -> None:
    assert debug_line(["/home/u/browse_20140901.gz"], "wc -l") == (
        "set -o pipefail; localget -f  '/home/u/browse_20140901.gz' | wc -l"
    )


def test_split_balanced_keeps_order_and_balances_bytes() -> None:
    files = [FileRef(f"f{i}", s) for i, s in enumerate([10, 10, 10, 10, 40])]
    groups = split_balanced(files, 2)
    assert [f.path for g in groups for f in g] == [f.path for f in files]
    assert len(groups) == 2
    assert split_balanced(files[:1], 4) == [[files[0]]]
    assert len(split_balanced(files, 9)) == 5


def _pipes(n: int) -> list[Pipeline]:
    return [Pipeline(index=i, label=f"f{i}", command="true") for i in range(n)]


def test_make_batches_groups_small_files_consecutively() -> None:
    batches = make_batches(_pipes(2000), [100] * 2000, slots=2)
    assert [p.index for b in batches for p in b] == list(range(2000))
    assert max(len(b) for b in batches) <= 32
    assert len(batches) >= 8
    # big files are never grouped
    big = make_batches(_pipes(4), [5 << 20] * 4, slots=2)
    assert [len(b) for b in big] == [1, 1, 1, 1]


def test_build_pipelines_substitutes_and_leaves_worker_placeholders() -> None:
    store = StoreSpec("local", "/")
    pipes = build_pipelines(
        files=[FileRef("/d/a.gz", 5), FileRef("/d/b.gz", 5)],
        store=store,
        command="x %cols %file %node_id %thread_id %num_nodes",
        columnspec="S:a I:b",
        delimiter=",",
        compression="auto",
        archive=(),
        preprocess="",
        num_nodes=3,
        num_threads=1,
        bulk=False,
        cwd=None,
        env=(),
    )
    assert [p.command for p in pipes] == [
        f"x S:a I:b a {NODE_ID} {THREAD_ID} 3",
        f"x S:a I:b b {NODE_ID} {THREAD_ID} 3",
    ]
    assert dict(pipes[0].env)["ESS_FILE"] == "a.gz"
    bulk = build_pipelines(
        files=[FileRef(f"/d/{i}", 1) for i in range(5)],
        store=store,
        command="wc -l",
        columnspec="",
        delimiter=",",
        compression="auto",
        archive=(),
        preprocess="pp",
        num_nodes=2,
        num_threads=1,
        bulk=True,
        cwd=None,
        env=(),
    )
    assert len(bulk) == 2
    assert bulk[0].command == "pp | wc -l"
    assert sum(len(p.sources) for p in bulk) == 5
    assert all(isinstance(s, Source) for p in bulk for s in p.sources)


def _sleepy(tmp_path: Path, n: int, fail: int | None = None) -> list[tuple[Pipeline, ...]]:
    pipes = []
    for i in range(n):
        # later files finish first, to prove the output order is the file order
        cmd = f"sleep {0.002 * (n - i):.3f}; echo {i}"
        if i == fail:
            cmd += "; echo bad >&2; exit 3"
        pipes.append(Pipeline(index=i, label=f"f{i}", command=cmd, cwd=str(tmp_path)))
    return [(p,) for p in pipes]


def test_run_ordered_yields_in_file_order(tmp_path: Path) -> None:
    with LocalPool(threads=4) as pool:
        results = list(run_ordered(pool, _sleepy(tmp_path, 40)))
    assert [r.index for r in results] == list(range(40))
    assert [r.stdout for r in results] == [f"{i}\n".encode() for i in range(40)]


def test_run_ordered_quitonerror_stops_early(tmp_path: Path) -> None:
    batches = _sleepy(tmp_path, 60, fail=3)
    start = time.monotonic()
    with LocalPool(threads=2) as pool:
        results = list(run_ordered(pool, batches, quitonerror=True, window=4))
    assert [r.index for r in results] == [0, 1, 2, 3]
    assert results[-1].returncode == 3 and results[-1].stderr == b"bad\n"
    assert time.monotonic() - start < 5


def test_run_ordered_continues_after_failure_without_quitonerror(tmp_path: Path) -> None:
    with LocalPool(threads=2) as pool:
        results = list(run_ordered(pool, _sleepy(tmp_path, 10, fail=3)))
    assert [r.ok for r in results] == [i != 3 for i in range(10)]


@pytest.mark.parametrize("gather", [2, 3])
def test_groups_wait_for_gather_files_while_more_are_running(tmp_path: Path, gather: int) -> None:
    with LocalPool(threads=1) as pool:  # one at a time: a group never arrives whole by luck
        groups = list(run_ordered_groups(pool, _sleepy(tmp_path, 11), gather=gather))
    assert [r.index for g in groups for r in g] == list(range(11))
    assert all(len(g) == gather for g in groups[:-1])  # at most `gather`, waited for
    assert len(groups[-1]) >= 1 and len(groups) <= -(-11 // gather)


def test_without_gather_a_ready_file_is_handed_over_at_once(tmp_path: Path) -> None:
    batches = [(Pipeline(index=i, label=str(i), command=f"sleep {0.3 * i}; echo {i}",
                         cwd=str(tmp_path)),) for i in range(3)]  # fmt: skip
    with LocalPool(threads=3) as pool:
        sizes = [len(g) for g in run_ordered_groups(pool, batches)]
    assert sizes == [1, 1, 1]


def test_a_group_ends_at_the_failure_with_quitonerror(tmp_path: Path) -> None:
    with LocalPool(threads=1) as pool:
        groups = list(run_ordered_groups(pool, _sleepy(tmp_path, 8, fail=2), gather=4,
                                         quitonerror=True))  # fmt: skip
    assert [[r.index for r in g] for g in groups] == [[0, 1, 2]]


@pytest.mark.parametrize("threads", [1, 3])
def test_thread_ids_stay_within_num_threads(tmp_path: Path, threads: int) -> None:
    batches = [
        (Pipeline(index=i, label=str(i), command=f"sleep 0.01; echo {THREAD_ID}"),)
        for i in range(12)
    ]
    with LocalPool(threads=threads) as pool:
        ids = {int(r.stdout) for r in run_ordered(pool, batches)}
    assert ids <= set(range(1, threads + 1))

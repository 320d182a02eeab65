"""Direct staging (ess.udb.direct): inside ess stream on a cluster whose workers are all on this
machine, aq_pp -imp writes its staged batches itself into the owners' staging directories; the
result is byte for byte what the gateway's staging tasks give (ESS_UDB_DIRECT=0). A real
2-worker local cluster for the module; every daemon is killed by pid at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ess.udb import spec
from ess.workspace import Workspace
from tests.unit.udb.harness import Sandbox, cluster

pytestmark = pytest.mark.slow

COLS = "s:k i:n f:x s:tag"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with cluster(tmp_path_factory.mktemp("udb-direct"), workers=2) as sandbox:
        ws = sandbox.root
        with sandbox.inprocess(ws):
            spec.create_database(Workspace.from_env(), "db", [])
            for kind, name, cols in (
                ("vector", "vec", "s,pkey:k i,+add:n f,+add:x s,+last:tag"),
                ("vector", "mins", "s,pkey:k i,+min:n f,+max:x"),  # pre-merged on the way
                ("table", "log", "s,pkey:k i:n f:x s:tag"),
            ):
                spec.create_target(Workspace.from_env(), kind, name, [cols])
        yield sandbox


def rows(start: int, count: int) -> pl.DataFrame:
    i = pl.int_range(start, start + count, eager=True)
    return pl.DataFrame({
        "k": "u" + (i * 7919 % 97).cast(pl.String),
        "n": i % 10,
        "x": (i % 17).cast(pl.Float64) / 3 + 0.1,  # sums that depend on their order
        "tag": "t" + (i % 5).cast(pl.String),
    })  # fmt: skip


def stage_tasks(box: Sandbox) -> int:
    """How many staging tasks (the gateway's path) the scheduler has run so far."""
    from ess.udb.client import UdbSession

    def count(dask_scheduler: Any) -> int:
        prefix = dask_scheduler.task_prefixes.get("w_stage")
        return 0 if prefix is None else int(sum(prefix.state_counts.values()))

    with box.inprocess(box.root), UdbSession(Workspace.from_env()) as session:
        return int(session.client.run_on_scheduler(count))


def exports(box: Sandbox) -> dict[str, bytes]:
    return {t: box.run(f"aq_udb -exp db:{t}").stdout for t in ("vec", "mins", "log")}


def test_direct_staging_gives_the_gateways_result(box: Sandbox, tmp_path: Path) -> None:
    root = tmp_path / "files"
    root.mkdir()
    for day in range(1, 9):
        rows(day * 300, 300).write_csv(root / f"p_201409{day:02d}.csv", include_header=False)
    box.run(f"ess select local && ess category add many '{root}/p_*'")
    imp = f"aq_pp -f - -d {COLS} -imp db:vec -imp db:mins -imp db:log"
    stream = "ess stream many '*' '*' '{}' --threads 2"

    before = stage_tasks(box)
    box.run(stream.format(imp))
    assert stage_tasks(box) == before  # no staging task: aq_pp wrote the staged files
    direct = exports(box)
    for t in ("vec", "mins", "log"):
        box.run(f"aq_udb -clr db:{t}")

    box.run(stream.format(f"ESS_UDB_DIRECT=0 {imp}"))  # the command's own environment
    assert stage_tasks(box) > before  # the gateway's path staged through tasks
    through_gateway = exports(box)
    assert direct == through_gateway
    frame = pl.read_csv(direct["vec"])
    assert (
        frame.height == 97
        and frame.get_column("n").sum()
        == pl.concat([rows(d * 300, 300) for d in range(1, 9)]).get_column("n").sum()
    )
    for t in ("vec", "mins", "log"):
        box.run(f"aq_udb -clr db:{t}")


def test_a_refused_batch_is_refused_alike(box: Sandbox, tmp_path: Path) -> None:
    root = tmp_path / "bad"
    root.mkdir()
    for day in (1, 2):
        rows(day * 10, 10).write_csv(root / f"p_201409{day:02d}.csv", include_header=False)
    box.run(f"ess select local && ess category add bad '{root}/p_*'")
    before = box.run("aq_udb -cnt db:vec").stdout
    command = "ess stream bad '*' '*' '{}aq_pp -f - -d s:k s:n f:x s:tag -imp db:vec'"
    direct = box.run(command.format(""), check=False)
    through = box.run(command.format("ESS_UDB_DIRECT=0 "), check=False)
    assert direct.returncode == through.returncode != 0
    assert b"does not match" in direct.stderr
    assert direct.stderr == through.stderr
    assert box.run("aq_udb -cnt db:vec").stdout == before

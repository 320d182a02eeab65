"""A parallel ``ess stream ... aq_pp -imp`` leaves the database exactly as a sequential run in
file order does (docs/udb.md, "Imports inside ess stream"), on 1 and 2 workers: the exports
byte for byte, and the snapshots' contents (row stamps compared by rank: they are wall-clock
based, so two sequential runs differ in their values, never in their order).

Inputs: the tutorial's woodworking month (its allsales table and a usersales vector with float
``+add``), and generated files whose keys recur across files, with float ``+add`` (values whose
sum depends on the order), ``+first`` and ``+last``. ``ESS_UDB_DETERMINISM_ROWS`` sets the total
(default 240,000 rows, ~1 min; 2000000 for the full check).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from ess.udb.snapshot import SEG_RE, read_segment
from tests.conftest import DATA
from tests.unit.udb.harness import Sandbox, cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROWS = int(os.environ.get("ESS_UDB_DETERMINISM_ROWS", "240000"))
FILES = 12
IMPORT = "aq_pp -f - -d s:k i:n f:x -imp db:t -imp db:v -imp db:w"
TARGETS = ("db:t", "db:v", "db:w")


def make_files(folder: Path) -> None:
    folder.mkdir()
    per = ROWS // FILES
    for f in range(FILES):
        i = pl.int_range(f * per, (f + 1) * per, eager=True)
        # floats of very different magnitudes: their sum depends on the order of the additions
        frame = pl.DataFrame({"i": i}).select(
            ("k" + (pl.col("i") * 7919 % 5003).cast(pl.String)).alias("k"),
            pl.col("i").alias("n"),
            pl.when(pl.col("i") % 3 == 0).then(1e16)
            .otherwise((pl.col("i") % 97).cast(pl.Float64) / 7.0).alias("x"),
        )  # fmt: skip
        frame.write_csv(folder / f"part_201409{f + 1:02d}.csv", include_header=False)


@pytest.fixture(params=[pytest.param(1, marks=pytest.mark.long, id="1-worker"),
                        pytest.param(2, id="2-workers")])  # fmt: skip
def box(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sandbox]:
    with cluster(tmp_path / "c", workers=request.param) as sandbox_:
        sandbox_.run(
            "ess create database db && ess create table t s,pkey:k i:n f:x"
            " && ess create vector v s,pkey:k i,+last:n f,+add:x"
            " && ess create vector w s,pkey:k i,+first:n f,+add:x && ess udbd restart"
        )
        make_files(tmp_path / "parts")
        sandbox_.run(f"ess select local && ess category add parts '{tmp_path}/parts/part_*'")
        yield sandbox_


def exports(box: Sandbox) -> dict[str, bytes]:
    return {t: box.run(f"aq_udb -exp {t}").stdout for t in TARGETS}


def snapshot(box: Sandbox, db: str = "db") -> dict[tuple[str, str, str], pl.DataFrame]:
    """Every partition's rows per (worker, partition, segment name), as loading would see
    them, stamps replaced by their rank among all stamps of the database."""
    frames: dict[tuple[str, str, str], list[tuple[int, bool, pl.DataFrame]]] = {}
    for path in sorted((box.root / ".ess" / "udb").glob(f"*/*/{db}/p*/*.arrow")):
        m = SEG_RE.match(path.name)
        assert m is not None, path
        frame, why = read_segment(path)
        assert frame is not None, why
        key = (path.parents[2].name, path.parent.name, m["name"])
        frames.setdefault(key, []).append((int(m["seq"]), bool(m["base"]), frame))
    out = {}
    for key, segs in frames.items():
        segs.sort(key=lambda s: s[0])
        start = max((i for i, s in enumerate(segs) if s[1]), default=0)
        out[key] = pl.concat([s[2] for s in segs[start:]])
    stamps = (
        pl.concat(
            [
                f.select(pl.col(c).alias("s"))
                for f in out.values()
                for c in ("__k", "__r")
                if c in f.columns
            ]
        )
        .unique()
        .sort("s")
        .with_row_index("rank")
    )
    ranked = {}
    for key, frame in out.items():
        cols = [c for c in ("__k", "__r") if c in frame.columns]
        for c in cols:
            frame = frame.join(stamps.rename({"s": c, "rank": c + "_rank"}), on=c, how="left",
                               maintain_order="left").drop(c).rename({c + "_rank": c})  # fmt: skip
        ranked[key] = frame.sort(cols).select(sorted(frame.columns))
    return ranked


def test_parallel_stream_import_equals_the_sequential_one(box: Sandbox) -> None:
    parallel = box.run(f"ess stream parts '*' '*' '{IMPORT}'", timeout=600)
    assert parallel.stdout == b"", parallel.stderr
    got, got_snap = exports(box), snapshot(box)
    box.run("aq_udb -clr db && ess udbd restart")
    # the reference: one file after the other, in date order, on this machine
    box.run(f"ess stream --master parts '*' '*' '{IMPORT}'", timeout=600)
    want, want_snap = exports(box), snapshot(box)
    assert got["db:t"].count(b"\n") == ROWS // FILES * FILES + 1
    for target in TARGETS:
        assert got[target] == want[target], target
    assert got_snap.keys() == want_snap.keys()
    for key, frame in want_snap.items():
        assert got_snap[key].equals(frame), key
    leftovers = list((box.root / ".ess" / "udb").glob("*/*/.staging/*"))
    assert leftovers == []  # the stream's staging is gone once it committed


WOOD = DATA / "woodworking" / "diy_woodworking"
WOOD_IMPORT = (
    "aq_pp -f,+1,eok,qui - -d %cols -eval i:ptime 'DateToTime(purchaseDate,\"Y.m.d.H.M.S\")'"
    " -eval f:total price -imp wood:allsales -imp wood:usersales"
)


@pytest.mark.parametrize("workers", [pytest.param(1, marks=pytest.mark.long), 2])
def test_woodworking_month_parallel_equals_sequential(tmp_path: Path, workers: int) -> None:
    """The tutorial's month of purchases (30 files) into its allsales table and the usersales
    vector (`f,+add:total`, `+last`), parallel vs one file after the other."""
    with cluster(tmp_path / "c", workers=workers) as box:
        box.run(
            "ess create database wood && ess create table allsales s,pkey:userid i,tkey:ptime"
            " i:articleid f:price i:refid && ess create vector usersales s,pkey:userid"
            " i,+last:articleid f,+add:total && ess udbd restart && ess select local && "
            f"ess category add purchase '{WOOD}/*purchase_*' && ess category change columnspec "
            "purchase 'S:purchaseDate S:userID I:articleID f:price I:refID'"
        )
        targets = ("wood:allsales", "wood:usersales")
        command = shlex.quote(WOOD_IMPORT)
        box.run(f"ess stream purchase 2014-09-01 2014-09-30 {command}", timeout=600)
        got = {t: box.run(f"aq_udb -exp {t}").stdout for t in targets}
        got_snap = snapshot(box, "wood")
        box.run("aq_udb -clr wood && ess udbd restart")
        box.run(f"ess stream --master purchase 2014-09-01 2014-09-30 {command}", timeout=600)
        want = {t: box.run(f"aq_udb -exp {t}").stdout for t in targets}
        want_snap = snapshot(box, "wood")
    assert got["wood:allsales"].count(b"\n") > 10_000
    for target in targets:
        assert got[target] == want[target], target
    assert got_snap.keys() == want_snap.keys() and got_snap
    for key, frame in want_snap.items():
        assert got_snap[key].equals(frame), key

"""Local files travel with the task to workers that cannot see the master's filesystem."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from ess.datastore.store import StoreSpec
from ess.errors import DatastoreError
from ess.run.pipeline import Pipeline, Source, run_pipeline
from ess.run.ship import ship_batch


def test_shipped_bytes_are_used_instead_of_the_path(tmp_path: Path) -> None:
    f = tmp_path / "a.csv.gz"
    f.write_bytes(gzip.compress(b"x,1\ny,2\n"))
    p = Pipeline(
        index=0, label="a", command="cat", sources=(Source(StoreSpec("local", "/"), str(f)),)
    )
    (shipped,) = ship_batch((p,))
    assert shipped.sources[0].data == f.read_bytes()
    f.unlink()  # the worker has no such file: the bytes are all it gets
    result = run_pipeline(shipped)
    assert result.ok, result.error
    assert result.stdout == b"x,1\ny,2\n"


def test_s3_sources_are_left_alone() -> None:
    src = Source(StoreSpec("s3", "bucket"), "bucket/a.gz")
    p = Pipeline(index=0, label="a", command="cat", sources=(src,))
    assert ship_batch((p,))[0].sources[0].data is None


def test_unreadable_file_fails_on_the_master(tmp_path: Path) -> None:
    src = Source(StoreSpec("local", "/"), str(tmp_path / "gone.csv"))
    p = Pipeline(index=0, label="gone", command="cat", sources=(src,))
    with pytest.raises(DatastoreError, match=r"gone\.csv: cannot read"):
        ship_batch((p,))

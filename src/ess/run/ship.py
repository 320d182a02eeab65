"""Ship local-datastore files to workers that cannot see the master's filesystem.

A worker on another machine (custom or cloud clusters: ``Connection.shared_filesystem`` is
False) cannot open ``/data/logs/x.gz`` of the master. Just before a batch of pipelines is
submitted, :func:`ship_batch` reads each such file on the master and puts its raw bytes
(still compressed: the worker decompresses by content as for any other source) into the
:class:`~ess.run.pipeline.Source`, so they travel with the task. The stream's submission window
bounds how many batches, hence how many files, are held in memory at once; S3 sources are not
touched (workers read S3 directly).
"""

from __future__ import annotations

from dataclasses import replace

from ess.errors import DatastoreError
from ess.run.pipeline import Pipeline, Source


def _ship(src: Source) -> Source:
    if getattr(src.store, "kind", None) != "local" or src.data is not None:
        return src
    try:
        with open(src.path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise DatastoreError(f"{src.path}: cannot read ({exc.strerror or exc})") from exc
    return replace(src, data=data)


def ship_batch(batch: tuple[Pipeline, ...]) -> tuple[Pipeline, ...]:
    """``batch`` with the bytes of its local files inside (for workers on other machines)."""
    return tuple(replace(p, sources=tuple(_ship(s) for s in p.sources)) for p in batch)

"""A stream commit's rollback journal, so a worker that dies while it applies a file's staged
import can apply it again, exactly once, when it is back.

A commit (ess.udb.server.w_commit_files) runs inside :func:`journaled`: every snapshot segment the
committing thread writes is named in the commit's marker file (``applying``, in the file's
staging folder) before the segment exists, and the segments those writes supersede are kept
until the commit is complete, which is when the marker is removed. A worker that dies before
that leaves the marker; when it starts again, :func:`roll_back` (run by the store's load,
before anything is read) removes the segments the marker names. What remains is the
partition's state from before the commit, since nothing it superseded was deleted, and the
stream's next try of that commit applies the whole file as if for the first time.

Standard library only, and nothing of ess.udb: the snapshot store and the staging module both
import it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

STAGING = ".staging"  # under a worker's store root (the store's loader skips dot folders)
APPLYING = "applying"  # a commit on this worker started (and has not finished)
#: the first line of a marker whose commit is journaled (an older version's marker is not)
HEADER = "journal v1"

logger = logging.getLogger(__name__)
_local = threading.local()


@contextlib.contextmanager
def journaled(marker: Path, root: Path) -> Iterator[list[Path]]:
    """Journal this thread's segment writes under `root` in `marker`; yields the superseded
    segments, for the caller to delete once the commit is complete (the marker removed)."""
    superseded: list[Path] = []
    with open(marker, "a", encoding="utf-8") as journal:
        _local.state = (journal, root, superseded)
        try:
            yield superseded
        finally:
            _local.state = None


def will_write(path: Path) -> None:
    """Called before a segment is created: inside a journaled commit, name it in the journal
    (flushed: a SIGKILL right after must not lose the line)."""
    state: tuple[TextIO, Path, list[Path]] | None = getattr(_local, "state", None)
    if state is not None:
        journal, root, _ = state
        journal.write(f"+{path.relative_to(root)}\n")
        journal.flush()


def supersede(path: Path) -> bool:
    """Called for a segment a new base segment replaces: True when its deletion waits for the
    end of the journaled commit (the caller then leaves it)."""
    state: tuple[TextIO, Path, list[Path]] | None = getattr(_local, "state", None)
    if state is None:
        return False
    state[2].append(path)
    return True


def roll_back(root: Path) -> int:
    """Undo the writes of every journaled commit left unfinished under `root` (a worker died
    inside it) and remove its marker; returns how many. An older version's marker (not
    journaled) is left: its commit is refused as before (ess.udb.staging.check_files)."""
    undone = 0
    for marker in sorted(root.glob(f"{STAGING}/*/f*/{APPLYING}")):
        try:
            lines = marker.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        if not lines or lines[0] != HEADER:
            continue
        for line in lines[1:]:
            written = (root / line.removeprefix("+")).resolve()
            if written.is_relative_to(root.resolve()):  # never a file outside the store
                written.unlink(missing_ok=True)
        marker.unlink(missing_ok=True)
        logger.warning("UDB commit cut short, rolled back: %s", marker.parent)
        undone += 1
    return undone

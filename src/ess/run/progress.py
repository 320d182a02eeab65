"""Run-state records: what an ``ess stream``/``ess exec`` is doing, for ``ess ui`` to show.

The command that runs the work (the client, on the master) keeps one small JSON file per run in
``$ESS_WORK_DIR/runs/<id>.json``: the command, the files (or nodes) with their state, sizes,
the node that ran each, and the stderr tail of a failed one. It is written atomically (temp +
rename, mode 0600: commands and file names may be private) at most once per
:data:`MIN_INTERVAL` seconds while files finish (less often when the record is big, so writing
takes at most :data:`WRITE_SHARE` of the time), and once at the end: the overhead does not grow
with the rows, and stays about 2% of one core with tens of thousands of files. Nothing is
fsynced: a record lost in a crash costs a progress display, not data. Only the newest
:data:`KEEP` records are kept.

A record whose ``state`` is ``running`` but whose ``pid`` is gone was interrupted (killed);
:func:`read_runs` says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ess.workspace import Workspace

#: seconds between two writes of a running record (the last state is always written at the end)
MIN_INTERVAL = 0.5
#: records kept per work directory (older ones are removed when a run starts)
KEEP = 50
#: the most of the command's time the writes may take (big records are written less often)
WRITE_SHARE = 0.02
#: bytes of a failed file's stderr kept in its record
STDERR_TAIL = 2000

RUNNING, DONE, FAILED, INTERRUPTED = "running", "done", "failed", "interrupted"


def runs_dir(ws: Workspace) -> Path:
    return ws.work_dir / "runs"


@dataclass
class RunRecorder:
    """The record of one run. ``labels``: the files (or nodes) in run order; ``sizes`` their
    bytes (0 when unknown). Call :meth:`completed` as work finishes in any order (progress),
    :meth:`file_done` per result in run order (details), :meth:`finish` once."""

    path: Path
    state: dict[str, Any]
    _last_write: float = 0.0
    _dirty: bool = field(default=False)
    _interval: float = MIN_INTERVAL

    @classmethod
    def start(
        cls,
        ws: Workspace,
        *,
        kind: str,
        command: str,
        labels: Sequence[str],
        sizes: Sequence[int] | None = None,
        detail: str = "",
    ) -> RunRecorder:
        now = time.time()
        # sortable by start (to the microsecond: runs started in one second keep their order)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
        run_id = f"{stamp}.{int(now % 1 * 1e6):06d}-{uuid.uuid4().hex[:6]}"
        sizes = list(sizes) if sizes is not None else [0] * len(labels)
        files = [
            {"label": label, "size": size, "state": "pending"}
            for label, size in zip(labels, sizes, strict=True)
        ]
        state = {
            "id": run_id,
            "kind": kind,
            "command": command,
            "detail": detail,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": now,
            "updated": now,
            "finished": None,
            "state": RUNNING,
            "total": len(files),
            "completed": 0,
            "done": 0,
            "failed": 0,
            "bytes_total": sum(sizes),
            "bytes_done": 0,
            "files": files,
        }
        recorder = cls(path=runs_dir(ws) / f"{run_id}.json", state=state)
        with contextlib.suppress(OSError):  # a full or read-only disk must not stop the work
            _prune(runs_dir(ws))
        recorder._write()
        return recorder

    def completed(self, count: int) -> None:
        """``count`` more files finished on the workers (not necessarily in order)."""
        self.state["completed"] = min(self.state["total"], self.state["completed"] + count)
        self._maybe_write()

    def file_done(
        self,
        index: int,
        *,
        ok: bool,
        node: str = "",
        returncode: int = 0,
        error: str | None = None,
        stderr: bytes = b"",
    ) -> None:
        files = self.state["files"]
        if not 0 <= index < len(files):
            return
        entry = files[index]
        entry.update(state=DONE if ok else FAILED, node=node, finished=time.time())
        self.state["done" if ok else "failed"] += 1
        self.state["bytes_done"] += entry["size"]
        done = self.state["done"] + self.state["failed"]
        self.state["completed"] = max(self.state["completed"], done)
        if not ok:
            entry["returncode"] = returncode
            entry["error"] = error or f"exit status {returncode}"
            entry["stderr"] = stderr[-STDERR_TAIL:].decode(errors="replace")
        self._maybe_write()

    def finish(self, ok: bool) -> None:
        if self.state["finished"] is not None:
            return
        all_in = self.state["done"] + self.state["failed"] == self.state["total"]
        if self.state["failed"]:
            self.state["state"] = FAILED
        else:
            self.state["state"] = DONE if ok and all_in else INTERRUPTED
        self.state["finished"] = time.time()
        self._write()

    def _maybe_write(self) -> None:
        self._dirty = True
        if time.monotonic() - self._last_write >= self._interval:
            self._write()

    def _write(self) -> None:
        began = time.monotonic()
        self.state["updated"] = time.time()
        data = json.dumps(self.state, separators=(",", ":")).encode()
        with contextlib.suppress(OSError):
            _write_private(self.path, data)
        self._last_write = time.monotonic()
        self._dirty = False
        # a record of many files costs more to write: space the writes so that they never
        # take more than WRITE_SHARE of the command's time
        self._interval = max(MIN_INTERVAL, (self._last_write - began) / WRITE_SHARE)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:  # mkstemp makes it 0600
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _prune(directory: Path) -> None:
    records = sorted(directory.glob("*.json"))
    for old in records[: max(0, len(records) - KEEP + 1)]:
        with contextlib.suppress(FileNotFoundError):
            old.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_runs(ws: Workspace, *, limit: int = 20) -> list[dict[str, Any]]:
    """The newest ``limit`` records, newest first; a running record whose process on this
    host is gone is reported as interrupted."""
    directory = runs_dir(ws)
    if not directory.is_dir():
        return []
    out = []
    host = socket.gethostname()
    for path in sorted(directory.glob("*.json"), reverse=True)[:limit]:
        try:
            record = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue  # removed or half-replaced meanwhile: the next poll sees it
        mine = record.get("state") == RUNNING and record.get("host") == host
        if mine and not _alive(int(record.get("pid", 0))):
            record["state"] = INTERRUPTED
        out.append(record)
    return out

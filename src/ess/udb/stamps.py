"""Row stamps, handed out by the scheduler (ess.udb.merge: every stored row carries one)."""

from __future__ import annotations

import time
from typing import Any


def reserve_stamps(dask_scheduler: Any, count: int) -> int:
    """Run on the scheduler: `count` consecutive row stamps, increasing across all clients.

    Stamps are wall-clock microseconds or above, so they keep increasing after a scheduler
    restart too.
    """
    state = getattr(dask_scheduler, "_ess_udb_stamp", 0)
    base = max(state + 1, time.time_ns() // 1000)
    dask_scheduler._ess_udb_stamp = base + count - 1
    return base

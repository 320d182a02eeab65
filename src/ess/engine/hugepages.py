"""Transparent huge pages off for ess's long-lived processes (workers, scheduler, warm service
and the commands it runs).

A worker or an aq_pp child allocates and frees buffers of a few MB for every file (batches,
their cuts, the merge's columns). Where the kernel backs such memory with transparent huge
pages (THP ``always``, or ``madvise``, which NumPy and mimalloc ask for on large blocks), each
first touch zeroes a whole 2 MB page, and freed blocks go back to the kernel to be zeroed again
for the next file: on the benchmark's job that was about 10% of a worker's CPU
(``clear_page_erms``). PR_SET_THP_DISABLE turns THP off for this process and, across fork and
exec, for everything it starts; ``ESS_HUGE_PAGES=1`` leaves the system's setting alone.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: prctl(2) option (linux/prctl.h), Linux 3.15 and later.
PR_SET_THP_DISABLE = 41
ENV_HUGE_PAGES = "ESS_HUGE_PAGES"


def no_huge_pages() -> bool:
    """Turn THP off for this process and its future children; False where that is not done
    (not Linux, an old kernel, or ESS_HUGE_PAGES=1)."""
    if os.environ.get(ENV_HUGE_PAGES, "0") == "1" or not sys.platform.startswith("linux"):
        return False
    try:
        return int(ctypes.CDLL(None, use_errno=True).prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False

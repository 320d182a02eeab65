"""The PostgreSQL test harness leaves no server behind, even when its test run is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.conftest import PROJECT
from tests.integration.pg_harness import running_postgres
from tests.unit.udb.harness import _alive

HOLD = """
from tests.integration.pg_harness import running_postgres
with running_postgres() as pg:
    print(pg.pid, flush=True)
    import time
    time.sleep(600)
"""


def test_a_server_of_a_killed_run_is_stopped_by_the_next_one() -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD], cwd=PROJECT, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(PROJECT)})  # fmt: skip
    try:
        assert holder.stdout is not None
        orphan = int(holder.stdout.readline())
        holder.send_signal(signal.SIGKILL)  # its `finally` never runs
        holder.wait(30)
        assert _alive(orphan), "the killed run's server should still be running here"
        with running_postgres():
            deadline = time.monotonic() + 30
            while _alive(orphan) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not _alive(orphan), "the next run left the orphaned server running"
    finally:
        holder.kill()

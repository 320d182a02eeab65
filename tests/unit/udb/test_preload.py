"""What a worker loads when `ess udbd start` installs the UDB on it (ess.udb.server.preload),
in a fresh process: the first stream import then finds it loaded."""

from __future__ import annotations

import subprocess
import sys

from ess.udb import server

CHECK = """
import sys
from ess.udb import server
print(",".join(m for m in server.PRELOAD if m in sys.modules) or "-")
server.preload()
print(",".join(m for m in server.PRELOAD if m not in sys.modules) or "-")
"""


def test_preload_loads_what_the_first_stream_import_needs() -> None:
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()  # fmt: skip
    assert len(out) == 2 and out[1] == "-", out  # all loaded after
    assert out[0] != ",".join(server.PRELOAD), "all were loaded before: the test shows nothing"

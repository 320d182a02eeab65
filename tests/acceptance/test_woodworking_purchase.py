"""ep_read_purchase without ess: each purchase file's bytes piped into aq_pp, in date order."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

GOLDEN = Path(__file__).parents[2].parent / "shared/acceptance/golden"
DATA = GOLDEN.parent / "data/woodworking/diy_woodworking"
BIN = Path(sys.executable).parent
CMD = ["-f,+1,eok", "-", "-d", "S:purchaseDate", "S:userID", "I:articleID", "f:price",
       "I:refID", "-o,notitle", "-"]  # fmt: skip


def test_read_purchase_matches_recording() -> None:
    env = dict(os.environ, TZ="UTC", LC_ALL="C")
    files = sorted(DATA.glob("purchase_*.gz"))
    assert len(files) == 30
    out = []
    for path in files:
        proc = subprocess.run(
            [str(BIN / "aq_pp"), *CMD], input=gzip.decompress(path.read_bytes()),
            capture_output=True, env=env, timeout=120, check=True,
        )  # fmt: skip
        out.append(proc.stdout)
    assert b"".join(out) == (GOLDEN / "ep_read_purchase/expected.txt").read_bytes()

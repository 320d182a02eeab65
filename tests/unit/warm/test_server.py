"""What makes a warm server stale, and its refusal of requests it must not run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ess.warm import server


def test_loaded_sources_are_the_modules_it_imported() -> None:
    root = Path(server.__file__).resolve().parents[1]
    files = server.loaded_sources(root)
    assert server.__file__ in files  # this module: loaded
    assert any(f.endswith("_native.c") for f in files)  # the C helper's sources: built once
    unloaded = root / "cluster" / "ec2_boot.py"
    assert ("ess.cluster.ec2_boot" in sys.modules) == (str(unloaded) in files)


def test_an_edit_makes_it_stale(tmp_path: Path) -> None:
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("x = 1\n")
    b.write_text("y = 1\n")
    files = (str(a), str(b))
    stamp = server.fingerprint(files)
    assert server.fingerprint(files) == stamp
    st = os.stat(b)
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert server.fingerprint(files) != stamp
    b.unlink()
    assert server.fingerprint(files)[1] == -1

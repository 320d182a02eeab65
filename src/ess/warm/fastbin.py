"""The directory of fast launchers a warm service fills for its commands (:mod:`ess.warm.fast`).

``<socket>.bin/aq_pp`` and ``aq_udb``: tiny scripts run by ``python -S`` that import only the
launcher. The worker (ess.engine.serve) and the local stream (ess.warm.local) put the directory
first on their commands' PATH; while it is missing or empty (the service is still starting),
the shell finds the regular entry points, which behave the same, a few ms slower.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import ess

TOOLS = ("aq_pp", "aq_udb")
#: the kernel reads at most this much of a "#!" line; a longer or spaced path cannot be one
SHEBANG_MAX = 120

SCRIPT = """#!{python} -S
# ess: the warm launcher without site-packages (ess.warm.fast, docs/performance.md)
import sys
sys.path.insert(0, {root!r})
from ess.warm.fast import run
run({tool!r}, {script!r})
"""


def bin_dir(socket: str) -> str:
    """The fast launchers' directory of the service at `socket`."""
    return f"{socket}.bin"


def install(socket: str) -> Path | None:
    """Write the launchers for the service at `socket`; None when this interpreter's path
    cannot be a "#!" line or the regular entry points are missing (the PATH entry then finds
    nothing and the regular entry points run)."""
    python = sys.executable
    if " " in python or len(python) > SHEBANG_MAX:
        return None
    scripts = {tool: Path(python).parent / tool for tool in TOOLS}
    if not all(path.exists() for path in scripts.values()):
        return None
    where = Path(bin_dir(socket))
    where.mkdir(mode=0o700, exist_ok=True)
    root = str(Path(ess.__file__).resolve().parent.parent)
    for tool, script in scripts.items():
        text = SCRIPT.format(python=python, root=root, tool=tool, script=str(script))
        tmp = where / f".{tool}.tmp"
        tmp.write_text(text)
        os.chmod(tmp, 0o700)
        os.replace(tmp, where / tool)  # never a half-written launcher on the PATH
    return where

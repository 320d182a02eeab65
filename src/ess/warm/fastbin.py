"""The directory of fast launchers a warm service fills for its commands.

``<socket>.bin/aq_pp`` and ``aq_udb``: the launcher in C (``_launch.c``, built with the host's
compiler and cached beside the C helper: about 1 ms of CPU per command), or where it cannot be
built, tiny scripts run by ``python -S`` that import only the Python launcher
(:mod:`ess.warm.fast`, about 10 ms). The worker (ess.engine.serve) and the local stream
(ess.warm.local) put the directory first on their commands' PATH; while it is missing or empty
(the service is still starting), the shell finds the regular entry points, which behave the
same, a few ms slower. ``ESS_WARM_C=0`` installs the scripts instead of the C launcher.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import sys
from pathlib import Path

import ess
from ess.aq import native

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
    binary = c_launcher(str(Path(python).parent))
    for tool, script in scripts.items():
        tmp = where / f".{tool}.tmp"
        if binary is not None:
            shutil.copyfile(binary, tmp)
        else:
            tmp.write_text(SCRIPT.format(python=python, root=root, tool=tool, script=str(script)))
        os.chmod(tmp, 0o700)
        os.replace(tmp, where / tool)  # never a half-written launcher on the PATH
    return where


def c_launcher(cold_dir: str) -> Path | None:
    """The C launcher built for entry points in `cold_dir` (cached), or None: no compiler,
    a path that cannot be a C string literal as is, or ``ESS_WARM_C=0``."""
    source = Path(__file__).with_name("_launch.c")
    if os.environ.get("ESS_WARM_C") == "0" or not source.exists():
        return None
    if any(c in cold_dir for c in '"\\\n') or not cold_dir.isprintable():
        return None
    digest = hashlib.sha256(source.read_bytes() + os.fsencode(cold_dir)).hexdigest()[:12]
    target = native.cache_dir() / f"launch-{digest}-{platform.machine()}"
    if target.exists():
        return target
    args = ["-O2", f'-DCOLD_DIR="{cold_dir}"', str(source)]
    return target if native.build(target, args) else None

"""Functions the master runs *on* cloud workers through Dask (``client.run``).

They import only the standard library and psutil at call time, so they work on any worker that
has ess installed, whatever its build.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any


def node_info() -> dict[str, Any]:
    """Build, CPU, memory and disk of the node this worker runs on (for ``ess cluster status``)."""
    import psutil

    from ess.cluster.bootstrap import build_id

    boot = Path(os.environ.get("ESS_BOOT_DIR") or "/")
    anchor = boot if boot.exists() else Path("/")
    per_cpu = psutil.cpu_percent(0.1, percpu=True)
    return {
        "build": build_id(),
        "instance": os.environ.get("ESS_INSTANCE_ID", ""),
        "cpu": "[" + ", ".join(f"{c:.1f}" for c in per_cpu) + "]",
        "mem": f"{psutil.virtual_memory().percent:.1f}",
        "disk": f"{psutil.disk_usage(str(anchor)).percent:.1f}",
    }


def _exit_soon(delay: float = 0.5) -> None:
    # Let client.run return its answer first; the bootstrap loop then restarts the worker.
    timer = threading.Timer(delay, os._exit, args=(0,))
    timer.daemon = True
    timer.start()


def resync(wheel_url: str, wheel_file: str, build: str) -> str:
    """Install the master's wheel into this worker's environment, then restart the worker."""
    boot = Path(os.environ.get("ESS_BOOT_DIR") or "/opt/ess")
    wheel = boot / wheel_file
    tmp = wheel.with_name(wheel.name + ".part")
    with urllib.request.urlopen(wheel_url, timeout=120) as response, open(tmp, "wb") as out:
        out.write(response.read())
    tmp.replace(wheel)
    extra = os.environ.get("ESS_PIP_ARGS", "").split()
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, *extra, str(wheel)], check=True, capture_output=True)
    subprocess.run(
        [*pip, "--no-deps", "--force-reinstall", *extra, str(wheel)],
        check=True,
        capture_output=True,
    )
    (boot / "installed").write_text(build + "\n")
    _exit_soon()
    return build


def detach() -> bool:
    """Leave the cluster for good: the bootstrap loop sees the marker and does not restart."""
    boot = Path(os.environ.get("ESS_BOOT_DIR") or "/opt/ess")
    with contextlib.suppress(OSError):
        (boot / "detached").touch()
    _exit_soon()
    return True

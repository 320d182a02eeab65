"""CPU, memory and disk figures of ``ess cluster status`` for processes on this machine.

Units (the spec leaves them open): ``cpu`` is a bracketed list of per-CPU load percentages for
the master and the process's CPU percentage for a worker process; ``mem`` is the percentage of
memory in use (machine for the master, the process's resident share for a worker); ``disk`` is
the percentage used of the filesystem holding the work directory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

INTERVAL = 0.1


@dataclass(frozen=True)
class Metrics:
    cpu: str
    mem: str
    disk: str


def sample(pids: dict[str, int | None], *, work_dir: Path) -> dict[str, Metrics]:
    import psutil

    anchor = work_dir if work_dir.exists() else Path("/")
    disk = f"{psutil.disk_usage(str(anchor)).percent:.1f}"
    procs: dict[str, psutil.Process] = {}
    for name, pid in pids.items():
        if pid is None:
            continue
        try:
            proc = psutil.Process(pid)
            proc.cpu_percent(None)
            procs[name] = proc
        except psutil.Error:
            pass
    psutil.cpu_percent(None, percpu=True)
    time.sleep(INTERVAL)
    total = psutil.virtual_memory()
    out: dict[str, Metrics] = {}
    for name in pids:
        if name == "scheduler":
            per_cpu = psutil.cpu_percent(None, percpu=True)
            out[name] = Metrics(
                cpu="[" + ", ".join(f"{c:.1f}" for c in per_cpu) + "]",
                mem=f"{total.percent:.1f}",
                disk=disk,
            )
            continue
        proc = procs.get(name)
        try:
            if proc is None:
                raise psutil.NoSuchProcess(0)
            cpu = proc.cpu_percent(None)
            mem = 100.0 * proc.memory_info().rss / total.total
            out[name] = Metrics(cpu=f"[{cpu:.1f}]", mem=f"{mem:.1f}", disk=disk)
        except psutil.Error:
            out[name] = Metrics(cpu="[-]", mem="-", disk=disk)
    return out

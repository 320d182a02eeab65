"""EC2 control-plane benchmark against a moto server (started and stopped here).

    .venv/bin/python benchmarks/bench_ec2.py [--number 50]

Measures, through the real ``ess`` command line, the wall time of ``ess cluster create
--number=N`` (batched RunInstances, 25 per call, batches in parallel; key pair, security group,
bootstrap bucket, wheel upload, scheduler daemon included) and of ``ess cluster status`` on the
N nodes, against the same create with one instance per RunInstances call (the peer: what a
naive one-call-per-node loop costs). Workers are not booted: this is the control plane only
(ESS_EC2_JOIN_TIMEOUT=0). Writes benchmarks/results/ec2.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
TARGETS = {"create": 10.0, "status": 2.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.1)


def ess(
    env: dict[str, str], cwd: Path, *args: str
) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(BIN / "ess"), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )
    return time.perf_counter() - t0, proc


def run_cluster(endpoint: str, number: int, batch: int, status_runs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ess-bench-ec2-") as tmp:
        root = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ESS_"))}
        env.update(
            ESS_WORK_DIR=str(root / ".conf"),
            ESS_CACHE_DIR=str(root / ".ess"),
            ESS_AWS_DIR=str(root / ".aws"),
            AWS_ENDPOINT_URL=endpoint,
            AWS_DEFAULT_REGION="us-east-1",
            AWS_EC2_METADATA_DISABLED="true",
            AWS_ACCESS_KEY_ID="AKIABENCH",
            AWS_SECRET_ACCESS_KEY="bench",
            ESS_EC2_SCHEDULER_HOST="127.0.0.1",
            ESS_EC2_SSH_CIDR="127.0.0.1/32",
            ESS_EC2_SCHEDULER_PORT=str(free_port()),
            ESS_EC2_JOIN_TIMEOUT="0",
            ESS_EC2_BATCH=str(batch),
        )
        ess(env, root, "cluster", "set", "cloud")
        try:
            created, proc = ess(env, root, "cluster", "create", f"--number={number}")
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr)
            times = []
            for _ in range(status_runs):
                t, proc = ess(env, root, "cluster", "status")
                rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("i-")]
                if len(rows) != number:
                    raise RuntimeError(f"status showed {len(rows)} nodes:\n{proc.stdout}")
                times.append(t)
        finally:
            ess(env, root, "cluster", "terminate", "--all", "-y")
        return {
            "create_s": created,
            "status_median_s": statistics.median(times) if times else 0.0,
            "status_best_s": min(times) if times else 0.0,
        }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--number", type=int, default=50)
    parser.add_argument("--status-runs", type=int, default=5)
    args = parser.parse_args()
    moto, endpoint = start_moto()
    try:
        batched = run_cluster(endpoint, args.number, 25, args.status_runs)
        single = run_cluster(endpoint, args.number, 1, 1)
    finally:
        moto.terminate()
        moto.wait(10)
    result = {
        "number": args.number,
        "machine": {"cpus": os.cpu_count(), "load_at_start": os.getloadavg()[0]},
        "batched": batched,
        "one_per_call": single,
        "targets_s": TARGETS,
    }
    out = HERE / "results" / "ec2.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    n = args.number
    ratio = single["create_s"] / batched["create_s"]
    lines = [
        "| measurement | ess | peer | ratio | target |",
        "|---|---|---|---|---|",
        f"| `ess cluster create --number={n}` (25 per RunInstances, parallel) | "
        f"{batched['create_s']:.2f} s | one instance per call: {single['create_s']:.2f} s | "
        f"{ratio:.2f}x faster | < {TARGETS['create']:.0f} s |",
        f"| `ess cluster status` on {n} nodes | {batched['status_median_s']:.2f} s median, "
        f"{batched['status_best_s']:.2f} s best | | | < {TARGETS['status']:.0f} s |",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

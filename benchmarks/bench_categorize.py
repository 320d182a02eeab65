"""Benchmark: categorize (scan + match + date extraction) 100,000 local files and 10,000 S3
objects in moto, beside `find DIR -name PATTERN | wc -l` in the same run.

    .venv/bin/python benchmarks/bench_categorize.py [--files 100000] [--objects 10000]

Writes benchmarks/results/categorize.json and prints a table. Targets (issue 2): 100,000 local
files categorized in under 3 s, and no slower than 5x `find`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ESS = Path(sys.executable).parent / "ess"


def make_tree(root: Path, count: int) -> None:
    """count files over 100 directories, names carrying dates, a third of them excluded."""
    for i in range(count):
        directory = root / f"host{i % 100:03d}"
        if i < 100:
            directory.mkdir(parents=True, exist_ok=True)
        day = 1 + i % 28
        kind = ("access", "error", "debug")[i % 3]
        (directory / f"{kind}_201409{day:02d}_{i:06d}.log").write_bytes(b"x\n")


def timed(cmd: list[str], env: dict[str, str], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


def bench_local(count: int, work: Path, env: dict[str, str]) -> dict[str, float]:
    tree = work / "tree"
    make_tree(tree, count)
    find = timed(["sh", "-c", f"find {tree} -name '*access_*' | wc -l"], env)
    ess = timed(
        [str(ESS), "category", "add", "access", f"{tree}/*access_*", "--noprobe", "--overwrite"],
        env,
    )
    matched = int(
        subprocess.run(
            ["sh", "-c", f"find {tree} -name '*access_*' | wc -l"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    return {
        "files": count,
        "matched": matched,
        "ess_s": ess,
        "find_s": find,
        "ess_files_per_s": count / ess,
        "ratio_vs_find": ess / find,
    }


def bench_s3(count: int, env: dict[str, str]) -> dict[str, float]:
    import boto3

    port = 5599
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        time.sleep(2)
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="k",
            aws_secret_access_key="s",
        )
        s3.create_bucket(Bucket="bench")
        from concurrent.futures import ThreadPoolExecutor

        def put(i: int) -> None:
            s3.put_object(
                Bucket="bench",
                Key=f"logs/host{i % 50:02d}/access_201409{1 + i % 28:02d}_{i:06d}.log",
                Body=b"x\n",
            )

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(put, range(count)))
        s3env = dict(
            env,
            AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="k",
            AWS_SECRET_ACCESS_KEY="s",
            AWS_DEFAULT_REGION="us-east-1",
        )
        subprocess.run([str(ESS), "select", "s3://bench"], env=s3env, check=True)
        ess = timed(
            [str(ESS), "category", "add", "access", "logs/*access_*", "--noprobe", "--overwrite"],
            s3env,
            repeat=2,
        )
        return {"objects": count, "ess_s": ess, "ess_objects_per_s": count / ess}
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--objects", type=int, default=10_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ess-bench-"))
    env = dict(os.environ, ESS_CACHE_DIR=str(work / ".ess"), ESS_WORK_DIR=str(work / ".conf"))
    try:
        local = bench_local(args.files, work, env)
        s3 = bench_s3(args.objects, env) if args.objects else {}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"local": local, "s3_moto": s3}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "categorize.json").write_text(json.dumps(result, indent=1) + "\n")
    print("| what | files | ess | find | ess files/s | ess / find |")
    print("|---|---|---|---|---|---|")
    print(
        f"| local categorize | {local['files']:,} | {local['ess_s']:.2f} s | "
        f"{local['find_s']:.2f} s | {local['ess_files_per_s']:,.0f} | "
        f"{local['ratio_vs_find']:.2f}x |"
    )
    if s3:
        print(
            f"| S3 (moto) categorize | {s3['objects']:,} | {s3['ess_s']:.2f} s | - | "
            f"{s3['ess_objects_per_s']:,.0f} | - |"
        )


if __name__ == "__main__":
    main()

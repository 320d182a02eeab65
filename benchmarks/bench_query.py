"""Benchmark: ``ess query`` over gzip CSV, beside DuckDB alone and Polars, in the same run.

    .venv/bin/python benchmarks/bench_query.py [--size 2G] [--data DIR] [--repeat 1] [--cluster]

Data: ``--size`` of gzip CSV (purchase-like rows ``saleDate,userID,articleID,price,refID``),
generated once into ``--data`` (default ~/.cache/ess/bench_query) as daily files
``sales_YYYYMMDD.gz`` and registered as category ``sales`` with the spec
``S:saleDate S:userID I:articleID f:price I:refID`` in a temporary work dir.

Queries (the same question for every contender):
1. ``select count(*) from sales:*:* where articleID >= 46``            (an Essentia COUNT)
2. ``select articleID, count(distinct userID) from sales:*:* group by articleID`` (beyond it)
3. ``select * from sales:*:* where price > 99.9 limit 10``            (time to first row)

Contenders: the whole ``ess query`` process (no cluster: this machine's cores; with
``--cluster`` also a 2-worker local cluster), DuckDB alone (``read_csv`` over the same files,
in this process, all cores) and Polars (``scan_csv`` over the same files). Targets: ess at
least 1.0x DuckDB alone for the aggregate queries; first row of the LIMIT query under 1 s.

Writes benchmarks/results/query.json, prints a table and puts it in benchmarks/README.md under
``## query (ess query)``. Page cache is warmed before each run so every contender reads from
memory.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from readme_section import replace_section

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
ESS = str(BIN / "ess")
SPEC = "S:saleDate S:userID I:articleID f:price I:refID"
COLUMNS = {
    "saleDate": "VARCHAR",
    "userID": "VARCHAR",
    "articleID": "BIGINT",
    "price": "DOUBLE",
    "refID": "BIGINT",
}
FILE_MB = 48  # compressed size of one file

QUERIES = {
    "count where": (
        "select count(*) from sales:*:* where articleID >= 46",
        "select count(*) from {src} where articleID >= 46",
    ),
    "count distinct group by": (
        "select articleID, count(distinct userID) from sales:*:* group by articleID",
        "select articleID, count(distinct userID) from {src} group by articleID",
    ),
    "select where limit": (
        "select * from sales:*:* where price > 99.9 limit 10",
        "select * from {src} where price > 99.9 limit 10",
    ),
}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]?)B?", text.upper())
    if not m:
        raise SystemExit(f"bad --size {text!r}")
    return int(float(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2)])


def make_template(path: Path, compressed: int) -> None:
    """One gzip CSV of about ``compressed`` bytes (isal level 1), a header line first."""
    from isal import igzip

    rng = random.Random(7)
    rows = []
    for _ in range(200_000):
        rows.append(
            f"2014-09-{rng.randint(1, 30):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"
            f":{rng.randint(0, 59):02d},{rng.randint(1, 99999)},{rng.randint(1, 50)},"
            f"{rng.randint(100, 10000) / 100:.2f},{rng.randint(0, 50)}\n"
        )
    block = "".join(rows).encode()
    with igzip.open(path, "wb", compresslevel=1) as f:
        f.write(b"saleDate,userID,articleID,price,refID\n")
        while path.stat().st_size < compressed:
            f.write(block)
            f.flush()


def make_data(root: Path, size: int) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    per_file = min(FILE_MB << 20, max(size // 8, 1 << 20))
    count = max(2, round(size / per_file))
    template = root / "template.gz"
    if not template.exists() or abs(template.stat().st_size - per_file) > per_file // 4:
        make_template(template, per_file)
    files = []
    day0 = time.mktime((2014, 1, 1, 12, 0, 0, 0, 0, 0))
    for i in range(count):
        day = time.strftime("%Y%m%d", time.localtime(day0 + i * 86400))
        target = root / f"sales_{day}.gz"
        if not target.exists() or target.stat().st_size != template.stat().st_size:
            shutil.copyfile(template, target)
        files.append(target)
    for extra in sorted(root.glob("sales_*.gz"))[count:]:
        extra.unlink()
    return files


def warm(files: list[Path]) -> None:
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def ess_query(env: dict[str, str], sql: str) -> tuple[float, float, bytes]:
    """(seconds to the first output line, total seconds, stdout) of the whole ess process."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [ESS, "query", sql], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert proc.stdout is not None
    first_line = proc.stdout.readline()
    first = time.perf_counter() - start
    rest = proc.stdout.read()
    proc.wait()
    if proc.returncode:
        raise SystemExit(f"ess query failed ({proc.returncode}): {sql}")
    return first, time.perf_counter() - start, first_line + rest


def duckdb_query(files: list[Path], sql: str) -> list[tuple[Any, ...]]:
    import duckdb

    names = ", ".join(f"'{f}'" for f in files)
    types = ", ".join(f"'{c}': '{t}'" for c, t in COLUMNS.items())
    src = f"read_csv([{names}], header=true, columns={{{types}}})"
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    try:
        return con.execute(sql.format(src=src)).fetchall()
    finally:
        con.close()


def polars_query(files: list[Path], name: str) -> Any:
    import polars as pl

    schema = {
        "saleDate": pl.String,
        "userID": pl.String,
        "articleID": pl.Int64,
        "price": pl.Float64,
        "refID": pl.Int64,
    }
    lf = pl.scan_csv([str(f) for f in files], schema=schema)
    if name == "count where":
        return lf.filter(pl.col("articleID") >= 46).select(pl.len()).collect()
    if name == "count distinct group by":
        return lf.group_by("articleID").agg(pl.col("userID").n_unique()).collect()
    return lf.filter(pl.col("price") > 99.9).head(10).collect()


def setup_env(work: Path, data: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(ESS_WORK_DIR=str(work / ".conf"), ESS_CACHE_DIR=str(work / ".ess"), TZ="UTC")
    for argv in (
        ["select", "local"],
        ["category", "add", "sales", f"{data}/sales_*.gz"],
        ["category", "change", "columnspec", "sales", SPEC],
    ):
        subprocess.run([ESS, *argv], env=env, check=True, capture_output=True)
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size", default="2G", help="compressed data size (default 2G)")
    ap.add_argument("--data", type=Path, default=Path("~/.cache/ess/bench_query").expanduser())
    ap.add_argument("--repeat", type=int, default=1, help="runs per measurement (best kept)")
    ap.add_argument("--cluster", action="store_true", help="also on a 2-worker local cluster")
    ap.add_argument("--no-readme", action="store_true", help="do not update benchmarks/README.md")
    args = ap.parse_args()
    files = make_data(args.data, parse_size(args.size))
    total = sum(f.stat().st_size for f in files)
    load = Path("/proc/loadavg").read_text().split()[0]
    results: dict[str, Any] = {
        "files": len(files),
        "gzip_bytes": total,
        "load_start": load,
        "queries": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-query-") as tmp:
        env = setup_env(Path(tmp), args.data)
        modes = [("ess", env)]
        if args.cluster:
            subprocess.run(
                [ESS, "cluster", "create", "--number", "2"],
                env=env,
                check=True,
                capture_output=True,
            )
            modes = [("ess cluster", env)]
        try:
            for name, (ess_sql, sql) in QUERIES.items():
                row: dict[str, Any] = {"ess_sql": ess_sql}
                for label, e in modes:
                    warm(files)
                    best = None
                    for _ in range(args.repeat):
                        got = ess_query(e, ess_sql)
                        best = got if best is None or got[1] < best[1] else best
                    assert best is not None
                    row[label] = {"seconds": best[1], "first_row": best[0]}
                    row[f"{label} answer"] = best[2].decode()[:200]
                warm(files)
                row["duckdb"], answer = timed(lambda s=sql: duckdb_query(files, s), args.repeat)
                row["duckdb answer"] = str(answer[:3])
                warm(files)
                row["polars"], _ = timed(lambda n=name: polars_query(files, n), args.repeat)
                results["queries"][name] = row
                print(name, json.dumps(row, indent=1), flush=True)
        finally:
            if args.cluster:
                subprocess.run([ESS, "cluster", "terminate"], env=env, capture_output=True)
    results["load_end"] = Path("/proc/loadavg").read_text().split()[0]
    out = HERE / "results" / "query.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    table = render(results, modes=[m for m, _ in modes])
    print(table)
    if not args.no_readme:
        replace_section(HERE / "README.md", "query (ess query)", table)


def render(results: dict[str, Any], modes: list[str]) -> str:
    gb = results["gzip_bytes"] / (1 << 30)
    lines = [
        "## query (ess query)",
        "",
        "`.venv/bin/python benchmarks/bench_query.py [--size 2G] [--cluster]` (results in "
        "`results/query.json`).",
        "",
        f"Data: {results['files']} gzip CSV files, {gb:.2f} GB compressed. Machine: 2 CPUs, "
        f"load average {results['load_start']} at start, {results['load_end']} at the end "
        "(other jobs were running: the ratios matter more than the seconds).",
        "",
        "| query | " + " | ".join(modes) + " | DuckDB alone | Polars scan_csv | ess vs DuckDB |",
        "|---|" + "---|" * (len(modes) + 3),
    ]
    for name, row in results["queries"].items():
        ess = row[modes[0]]
        cells = []
        for m in modes:
            cell = f"{row[m]['seconds']:.2f} s"
            if name == "select where limit":
                cell += f" (first row {row[m]['first_row']:.2f} s)"
            cells.append(cell)
        ratio = row["duckdb"] / ess["seconds"]
        lines.append(
            f"| `{row['ess_sql']}` | "
            + " | ".join(cells)
            + f" | {row['duckdb']:.2f} s | {row['polars']:.2f} s | {ratio:.2f}x |"
        )
    lines.append("")
    lines.append(
        "ess vs DuckDB: DuckDB's time divided by ess's (above 1: ess is faster). "
        "ess times are whole processes (start-up included); DuckDB and Polars run in "
        "the benchmark's process."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

"""aq_pp against its peers on a generated CSV: mawk, DuckDB and a hand-written Polars query.

    .venv/bin/python benchmarks/bench_aq_pp.py [--rows N]

Two tasks, each run by every tool in the same run on the same file:
  etl  — filter (price > 10.0) + two derived columns (total = price*1.08, day = time/86400),
         CSV output of the surviving rows;
  agg  — the same filter and eval, then a sum and a count. aq_pp has no group-by; its
         documented equivalent of an aggregate is a `-var` accumulator printed by `-ovar`.
Every tool runs as its own process (startup included). Writes benchmarks/results/aq_pp.json.
Note: aq_pp and mawk print floats as %.17g (Essentia's format); DuckDB and Polars print the
shortest round-trip form, which is cheaper — the table says so rather than hiding it.
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
BIN = Path(sys.executable).parent
PY = sys.executable


def generate(path: Path, rows: int) -> None:
    import polars as pl

    def rand(seed: int) -> pl.Expr:  # uniform in [0, 1), reproducible
        return pl.int_range(rows, dtype=pl.UInt64).hash(seed).cast(pl.Float64) / 2.0**64

    df = pl.select(
        key=pl.concat_str(
            [pl.lit("u"), (rand(1) * 1e6).cast(pl.Int64).cast(pl.String).str.zfill(7)]
        ),
        time=(1_400_000_000 + rand(2) * 2e7).cast(pl.Int64),
        article=(1 + rand(3) * 5000).cast(pl.Int64),
        price=(0.5 + rand(4) * 99.5).round(2),
    )
    df.write_csv(path)


def commands(data: Path, out: Path) -> dict[str, dict[str, list[str]]]:
    d = str(data)
    o = str(out)
    aq = str(BIN / "aq_pp")
    spec = ["-d", "s:key", "i:time", "i:article", "f:price"]
    body = ["-filt", "price > 10.0", "-eval", "f:total", "price * 1.08",
            "-eval", "i:day", "time / 86400"]  # fmt: skip
    mawk_etl = ('NR>1 && $4 > 10.0 { printf "\\"%s\\",%s,%s,%.17g,%.17g,%d\\n", '
                "$1, $2, $3, $4, $4*1.08, int($2/86400) }")  # fmt: skip
    mawk_agg = 'NR>1 && $4 > 10.0 { s += $4*1.08; n++ } END { printf "%.17g,%d\\n", s, n }'
    duck = (
        'import duckdb,sys; c=duckdb.connect(); c.execute("PRAGMA threads=2");'
        f"src=\"read_csv('{d}', header=true, columns={{'key':'VARCHAR','time':'BIGINT',"
        "'article':'BIGINT','price':'DOUBLE'})\";"
    )
    duck_etl = duck + (
        'c.execute(f"COPY (SELECT key, time, article, price, price*1.08 AS total, '
        f"time//86400 AS day FROM {{src}} WHERE price > 10.0) TO '{o}' (HEADER false)\")"
    )
    duck_agg = duck + (
        'print(c.execute(f"SELECT sum(price*1.08), count(*) FROM {src} '
        'WHERE price > 10.0").fetchall())'
    )
    pol = (
        "import polars as pl; lf = pl.scan_csv("
        f"'{d}', schema={{'key':pl.String,'time':pl.Int64,'article':pl.Int64,"
        "'price':pl.Float64}).filter(pl.col('price') > 10.0).with_columns("
        "total=pl.col('price')*1.08, day=pl.col('time')//86400);"
    )
    pol_etl = pol + f"lf.sink_csv('{o}', include_header=False)"
    pol_agg = pol + "print(lf.select(pl.col('total').sum(), pl.len()).collect())"
    return {
        "etl": {
            "aq_pp": [aq, "-f,+1", d, *spec, *body, "-o,notitle", o],
            "mawk": ["mawk", "-F,", mawk_etl, d],
            "duckdb": [PY, "-c", duck_etl],
            "polars": [PY, "-c", pol_etl],
        },
        "agg": {
            "aq_pp": [
                aq,
                "-f,+1",
                d,
                *spec,
                "-var",
                "f:sum",
                "0.0",
                "-var",
                "i:n",
                "0",
                *body,
                "-eval",
                "sum",
                "sum + total",
                "-eval",
                "n",
                "n + 1",
                "-ovar",
                o,
            ],
            "mawk": ["mawk", "-F,", mawk_agg, d],
            "duckdb": [PY, "-c", duck_agg],
            "polars": [PY, "-c", pol_agg],
        },
    }


def timed(cmd: list[str], out: Path) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB) and CPU seconds (user+sys) of one command.

    CPU seconds do not depend on how busy a shared machine is; wall seconds do."""
    start = time.perf_counter()
    with open(out.with_suffix(".stdout"), "wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): {err}")
    return elapsed, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--generate", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.generate:
        generate(Path(args.generate), args.rows)
        return
    if not shutil.which("mawk"):
        raise SystemExit("mawk is missing: run scripts/setup-system.sh as root")
    with tempfile.TemporaryDirectory(prefix="bench_aq_pp_") as tmp:
        data = Path(tmp) / "data.csv"
        t0 = time.perf_counter()
        # generated in a child process so this parent stays small: a forked child's peak RSS
        # counts the parent's pages it started with
        subprocess.run([PY, __file__, "--generate", str(data), "--rows", str(args.rows)],
                       check=True)  # fmt: skip
        size_mb = data.stat().st_size / 1e6
        print(f"generated {args.rows:,} rows ({size_mb:.0f} MB) in {time.perf_counter() - t0:.1f}s")
        load = os.getloadavg()[0]  # the machine may be shared: record how busy it was
        results: dict[str, dict[str, dict[str, float]]] = {}
        for task, tools in commands(data, Path(tmp) / "out.csv").items():
            results[task] = {}
            # rounds interleave the tools, so a burst of load on a shared machine hits all alike
            runs: dict[str, list[tuple[float, float, float]]] = {tool: [] for tool in tools}
            for _ in range(args.repeat):
                for tool, cmd in tools.items():
                    runs[tool].append(timed(cmd, Path(tmp) / f"{task}_{tool}"))
            for tool in tools:
                best, rss, cpu = min(runs[tool])
                results[task][tool] = {"seconds": round(best, 3), "peak_rss_mb": round(rss, 1),
                                       "cpu_seconds": round(cpu, 3),
                                       "rows_per_s": round(args.rows / best)}  # fmt: skip
        payload = {"rows": args.rows, "input_mb": round(size_mb, 1), "cpus": os.cpu_count(),
                   "load_average_start": round(load, 2), "results": results}  # fmt: skip
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / "aq_pp.json").write_text(json.dumps(payload, indent=2) + "\n")
        print(table(payload))


def table(payload: dict) -> str:  # type: ignore[type-arg]
    lines = [f"rows: {payload['rows']:,} ({payload['input_mb']} MB CSV), cpus: {payload['cpus']}, "
             f"load average at start: {payload.get('load_average_start')}",
             "", "| task | tool | wall s | Mrows/s | CPU s | peak RSS MB | aq_pp speed-up (wall) "
             "| aq_pp speed-up (CPU) |", "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for task, tools in payload["results"].items():
        ours, ours_cpu = tools["aq_pp"]["seconds"], tools["aq_pp"]["cpu_seconds"]
        for tool, r in tools.items():
            speed = f"{r['seconds'] / ours:.2f}x | {r['cpu_seconds'] / ours_cpu:.2f}x"
            lines.append(
                f"| {task} | {tool} | {r['seconds']:.2f} | {r['rows_per_s'] / 1e6:.2f} | "
                f"{r['cpu_seconds']:.2f} | {r['peak_rss_mb']:.0f} | {speed} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()

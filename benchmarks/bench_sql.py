"""Benchmark: ``ess redshift stream`` into a real PostgreSQL, beside the pipelines a user would
otherwise run, in the same run.

    .venv/bin/python benchmarks/bench_sql.py [--rows 10000000] [--files 20] [--workers 2]

Data: ``--rows`` purchase-like rows (``purchaseDate,userID,articleID,price,refID`` with a
header line) in ``--files`` gzip CSV files. Cleaning = ``aq_pp -f,+1,eok - -d S:purchaseDate
I:userID I:articleID F:price I:refID -o,notitle -``. Contenders, each into its own fresh table
of a PostgreSQL 15 server started for the run (127.0.0.1, fsync off as in the tests):

1. ``ess redshift stream purchase '*' '*' 'aq_pp ...' t_ess`` on a ``--workers``-worker local
   cluster: each worker's loader runs aq_pp and COPYs on its own connection;
2. single stream: ``for f in FILES; do zcat f | aq_pp ...; done | psql -c "\\copy t_pipe from
   stdin csv"``;
3. ``psql -c "\\copy t_copy from 'clean.csv' csv"`` of the already-cleaned CSV: the server's
   ingest rate for this table (no cleaning at all).

Targets (issue 17): ess >= 1.5x the single stream, >= 0.7x the plain \\copy rate. Writes
benchmarks/results/sql.json, prints a table and puts it in benchmarks/README.md under
``## SQL load (ess redshift)``. Every row count is checked equal before a time is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from readme_section import replace_section

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
sys.path.insert(0, str(PROJECT))
BIN = Path(sys.executable).parent
ESS = str(BIN / "ess")
SPEC = "S:purchaseDate I:userID I:articleID F:price I:refID"
CLEAN = f"aq_pp -f,+1,eok - -d {SPEC} -o,notitle -"
DDL = "(purchasedate varchar(256), userid bigint, articleid bigint, price float8, refid bigint)"


def make_files(data: Path, rows: int, files: int) -> int:
    """``files`` gzip CSVs of ``rows`` rows in total (vectorised with Polars); their bytes."""
    import polars as pl
    from isal import igzip

    data.mkdir(parents=True, exist_ok=True)
    per = rows // files
    total = 0
    for i in range(files):
        n = per + (rows % files if i == files - 1 else 0)
        seed = pl.col("i")
        df = pl.DataFrame({"i": pl.int_range(0, n, eager=True) + i * per}).select(
            purchaseDate=pl.lit(f"2014-09-{i % 28 + 1:02d}T") + (seed % 86400).cast(pl.String),
            userID=(seed * 7919) % 99991,
            articleID=(seed * 31) % 500 + 1,
            price=((seed * 13) % 10000) / 100,
            refID=(seed * 17) % 1000,
        )
        raw = df.write_csv().encode()
        path = data / f"purchase_{20140901 + i}.csv.gz"
        path.write_bytes(igzip.compress(raw, 1))
        total += len(raw)
    return total


def run(argv: list[str], env: dict[str, str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, check=True, capture_output=True, text=True, **kw)  # type: ignore[call-overload]


def timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-readme", action="store_true", help="do not update README.md")
    args = ap.parse_args()

    from tests.integration.pg_harness import running_postgres

    root = Path(tempfile.mkdtemp(prefix="ess-bench-sql-"))
    data = root / "data"
    raw_bytes = make_files(data, args.rows, args.files)
    load_start = Path("/proc/loadavg").read_text().split()[0]
    env = dict(os.environ)
    env.update(
        ESS_WORK_DIR=str(root / ".conf"),
        ESS_CACHE_DIR=str(root / ".ess"),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    results: dict[str, object] = {}
    with running_postgres() as pg:
        env["PGPASSWORD"] = pg.password
        url = pg.url()
        psql = ["psql", "-X", "-q", "-h", pg.host, "-p", str(pg.port), "-U", pg.user, pg.dbname]
        for t in ("t_ess", "t_pipe", "t_copy"):
            run([*psql, "-c", f"create unlogged table {t} {DDL}"], env)
        run([ESS, "select", "local"], env, cwd=root)
        run([ESS, "category", "add", "purchase", f"{data}/purchase_*"], env, cwd=root)
        run([ESS, "redshift", "register", "--url", url], env, cwd=root)
        run([ESS, "cluster", "create", "--number", str(args.workers)], env, cwd=root, timeout=300)
        try:
            # warm: page cache, warm aq_pp, the cluster's imports
            run([ESS, "stream", "purchase", "*", "*", "wc -c"], env, cwd=root)
            t_ess = timed(
                lambda: run(
                    [ESS, "redshift", "stream", "purchase", "*", "*", CLEAN, "t_ess"], env, cwd=root
                )
            )
        finally:
            run([ESS, "cluster", "terminate", "-y"], env, cwd=root, timeout=120)
        files = " ".join(f"'{p}'" for p in sorted(data.glob("purchase_*")))
        pipe = (
            f'set -o pipefail; for f in {files}; do zcat "$f" | {CLEAN}; done | '
            f"{' '.join(psql)} -c '\\copy t_pipe from stdin csv'"
        )
        t_pipe = timed(lambda: run(["bash", "-c", pipe], env, cwd=root))
        clean = root / "clean.csv"
        run(["bash", "-c", f"for f in {files}; do zcat \"$f\" | {CLEAN}; done > '{clean}'"], env)
        run(["cat", str(clean)], env)  # into the page cache
        t_copy = timed(lambda: run([*psql, "-c", f"\\copy t_copy from '{clean}' csv"], env))
        counts = {
            t: int(run([*psql, "-tAc", f"select count(*) from {t}"], env).stdout)
            for t in ("t_ess", "t_pipe", "t_copy")
        }
    load_end = Path("/proc/loadavg").read_text().split()[0]
    if len(set(counts.values())) != 1 or counts["t_ess"] != args.rows:
        raise SystemExit(f"row counts differ: {counts} (expected {args.rows})")
    rows = args.rows
    results = {
        "rows": rows,
        "files": args.files,
        "raw_bytes": raw_bytes,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "loadavg_start": load_start,
        "loadavg_end": load_end,
        "seconds": {"ess": t_ess, "single_stream": t_pipe, "psql_copy": t_copy},
        "rows_per_s": {
            "ess": rows / t_ess,
            "single_stream": rows / t_pipe,
            "psql_copy": rows / t_copy,
        },
        "ratio_vs_single_stream": t_pipe / t_ess,
        "ratio_vs_copy_rate": t_copy / t_ess,
    }
    out = HERE / "results" / "sql.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    table = section(results)
    print(table)
    if not args.no_readme:
        replace_section(HERE / "README.md", "SQL load (ess redshift)", table)
    subprocess.run(["rm", "-rf", str(root)], check=False)


def section(r: dict) -> str:  # type: ignore[type-arg]
    s = r["seconds"]
    rate = r["rows_per_s"]
    return (
        "## SQL load (ess redshift)\n\n"
        "`.venv/bin/python benchmarks/bench_sql.py [--rows N] [--files N]` (results in "
        "`results/sql.json`).\n\n"
        f"Machine: {r['cpus']} CPUs shared with the PostgreSQL server, load average "
        f"{r['loadavg_start']} at start, {r['loadavg_end']} at the end. Data: {r['rows']:,} rows "
        f"in {r['files']} gzip CSV files ({r['raw_bytes'] / 1e6:.0f} MB raw), cleaned by aq_pp "
        "into a PostgreSQL 15 table (unlogged, fsync off).\n\n"
        "| measurement | time | rows/s | ess ratio | target |\n|---|---|---|---|---|\n"
        f"| `ess redshift stream` ({r['workers']}-worker local cluster) | {s['ess']:.2f} s | "
        f"{rate['ess']:,.0f} | | |\n"
        f"| single stream `zcat \\| aq_pp \\| psql \\copy` | {s['single_stream']:.2f} s | "
        f"{rate['single_stream']:,.0f} | {r['ratio_vs_single_stream']:.2f}x faster | >= 1.5x |\n"
        f"| `psql \\copy` of the cleaned CSV (server ingest limit) | {s['psql_copy']:.2f} s | "
        f"{rate['psql_copy']:,.0f} | {r['ratio_vs_copy_rate']:.2f}x the rate | >= 0.7x |\n"
    )


if __name__ == "__main__":
    main()

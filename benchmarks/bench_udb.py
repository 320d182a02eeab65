"""Benchmark: the UDB on a local 2-worker cluster, beside single-process Polars and DuckDB, in
the same run.

    .venv/bin/python benchmarks/bench_udb.py [--rows 10000000] [--batch 1000000] [--keys 200000]

1. vector import: ``--rows`` rows of a word-count shape (a string key drawn from ``--keys``
   distinct words, ``count`` = 1) into a vector ``s,pkey:word i,+add:count``, in batches of
   ``--batch`` rows through ``UdbSession.import_frames`` (what ``aq_pp -imp`` calls), then the
   export of the vector (``aq_udb -exp``, CSV bytes) — beside Polars ``group_by().sum()`` and
   DuckDB ``GROUP BY`` of the same in-memory data (the limit: no distribution, no durability).
2. table import: the same rows plus an int and a float column into a table, then its export.

Targets (2 workers): import >= 1M rows/s, export >= 3M rows/s, vector import+export within 3x
of Polars. Input generation is not timed. Writes benchmarks/results/udb.json and prints a table
(paste it into benchmarks/README.md under "## UDB"). The cluster lives in a temporary work dir
and its daemons are killed by pid at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def make_rows(rows: int, keys: int) -> pl.DataFrame:
    i = pl.int_range(0, rows, eager=True)
    # a skewed vocabulary: key = w<(i * 2654435761) mod keys, squared toward small ids>
    idx = ((i * 2654435761) % (keys * keys)).sqrt().cast(pl.Int64)
    return pl.DataFrame(
        {
            "word": "w" + idx.cast(pl.String),
            "count": pl.repeat(1, rows, eager=True, dtype=pl.Int64),
            "t": i % 86400,
            "price": (i % 997).cast(pl.Float64) / 100,
        }
    )


def timed(fn: object) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()  # type: ignore[operator]
    return time.perf_counter() - start, result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--batch", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from tests.unit.udb.harness import cluster

    data = make_rows(args.rows, args.keys)
    batches = [data.slice(o, args.batch) for o in range(0, args.rows, args.batch)]
    load_before = os.getloadavg()[0]
    results: dict[str, object] = {
        "rows": args.rows,
        "batch": args.batch,
        "keys": args.keys,
        "workers": args.workers,
        "cpus": os.cpu_count(),
    }

    # peers: single process, in memory
    t_polars, grouped = timed(
        lambda: data.group_by("word", maintain_order=True).agg(pl.col("count").sum())
    )
    import duckdb

    con = duckdb.connect()
    arrow = data.to_arrow()
    con.register("data", arrow)
    t_duck, _ = timed(
        lambda: con.execute("select word, sum(count) from data group by word").fetchall()
    )
    distinct = grouped.height  # type: ignore[union-attr]

    with (
        tempfile.TemporaryDirectory() as tmp,
        cluster(Path(tmp), workers=args.workers) as box,
        box.inprocess(box.root),
    ):
        from ess.udb import spec
        from ess.udb.client import UdbSession
        from ess.udb.query import run
        from ess.workspace import Workspace

        ws = Workspace.from_env()
        spec.create_database(ws, "bench", [])
        spec.create_target(ws, "vector", "wc", ["s,pkey:word i,+add:count"])
        spec.create_target(ws, "table", "events", ["s,pkey:word i:t f:price"])
        db = spec.load(ws, "bench")
        with UdbSession(ws) as s:
            t_vimp, n = timed(lambda: s.import_frames(db, "wc", batches))
            t_vexp, out = timed(lambda: run(ws, ["-exp", "bench:wc"], session=s))
            vec_lines = out.count(b"\n") - 1  # type: ignore[union-attr]
            t_timp, _ = timed(lambda: s.import_frames(db, "events", batches))
            t_texp, out = timed(lambda: run(ws, ["-exp", "bench:events"], session=s))
            tab_lines = out.count(b"\n") - 1  # type: ignore[union-attr]
            t_top, _ = timed(
                lambda: run(ws, ["-exp", "bench:wc", "-sort,dec", "count", "-top", "10"], session=s)
            )
    assert n == args.rows and vec_lines == distinct and tab_lines == args.rows
    results.update(
        distinct_keys=distinct,
        polars_group_by_s=t_polars,
        duckdb_group_by_s=t_duck,
        vector_import_s=t_vimp,
        vector_import_rows_per_s=args.rows / t_vimp,
        vector_export_s=t_vexp,
        vector_export_rows_per_s=distinct / t_vexp,
        vector_import_export_vs_polars=(t_vimp + t_vexp) / t_polars,
        table_import_s=t_timp,
        table_import_rows_per_s=args.rows / t_timp,
        table_export_s=t_texp,
        table_export_rows_per_s=args.rows / t_texp,
        vector_top10_s=t_top,
    )
    # the machine is shared: record how busy it was, so the rates can be read in context
    results.update(load_average_before=load_before, load_average_after=os.getloadavg()[0])
    out_path = HERE / "results" / "udb.json"
    out_path.parent.mkdir(exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"| measure ({args.rows:,} rows, {distinct:,} keys, {args.workers} workers) | time | rate |"
    )
    print("|---|---|---|")
    print(
        f"| load average before / after (2 cores, shared) | {load_before:.1f} / "
        f"{os.getloadavg()[0]:.1f} | |"
    )
    print(
        f"| Polars group_by (1 process, in memory) | {t_polars:.2f} s | "
        f"{args.rows / t_polars / 1e6:.1f} M rows/s |"
    )
    duck_rate = args.rows / t_duck / 1e6
    print(f"| DuckDB GROUP BY (in memory) | {t_duck:.2f} s | {duck_rate:.1f} M rows/s |")
    print(
        f"| UDB vector import (+add) | {t_vimp:.2f} s | {args.rows / t_vimp / 1e6:.2f} M rows/s |"
    )
    print(f"| UDB vector export (CSV) | {t_vexp:.2f} s | {distinct / t_vexp / 1e6:.2f} M rows/s |")
    print(f"| UDB vector import+export vs Polars | {(t_vimp + t_vexp) / t_polars:.1f}x | |")
    print(f"| UDB table import | {t_timp:.2f} s | {args.rows / t_timp / 1e6:.2f} M rows/s |")
    print(f"| UDB table export (CSV) | {t_texp:.2f} s | {args.rows / t_texp / 1e6:.2f} M rows/s |")
    print(f"| UDB -sort,dec -top 10 of the vector | {t_top:.2f} s | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

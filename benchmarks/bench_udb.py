"""Benchmark: the UDB on a local 2-worker cluster, beside single-process Polars and DuckDB, in
the same run.

    .venv/bin/python benchmarks/bench_udb.py [--rows 10000000] [--batch 1000000] [--keys 200000]

1. vector import: ``--rows`` rows of a word-count shape (a string key drawn from ``--keys``
   distinct words, ``count`` = 1) into a vector ``s,pkey:word i,+add:count``, in batches of
   ``--batch`` rows through ``UdbSession.import_frames`` (what ``aq_pp -imp`` calls), then the
   export of the vector (``aq_udb -exp``, CSV bytes) — beside Polars ``group_by().sum()`` and
   DuckDB ``GROUP BY`` of the same in-memory data (the limit: no distribution, no durability).
2. table import: the same rows plus an int and a float column into a table, then its export.
3. stream import: the first ``--stream-rows`` rows as ``--stream-files`` CSV files of a
   category, imported by ``ess stream ... 'aq_pp -f - ... -imp bench:sevents -imp bench:sprice'``
   (a table and a float ``+add`` vector) on the cluster: the user's path, files in parallel
   (staged and committed in file order, docs/udb.md). Wall time of the whole command.

Targets (2 workers): import >= 1M rows/s, export >= 3M rows/s, vector import+export within 3x
of Polars. Input generation is not timed. Writes benchmarks/results/udb.json and prints a table
(paste it into benchmarks/README.md under "## UDB"). The cluster lives in a temporary work dir
and its daemons are killed by pid at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


def cpu_seconds(pids: list[int]) -> float:
    """user + system CPU seconds of this process and of `pids` with their descendants."""
    import psutil

    total = time.process_time()
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for proc in (root, *root.children(recursive=True)):
                t = proc.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            continue
    return total


class Meter:
    """Wall and CPU seconds (client + cluster daemons) of each measured step."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.cpu: dict[str, float] = {}
        self.client_cpu: dict[str, float] = {}

    def __call__(self, name: str, fn: object) -> tuple[float, object]:
        before, own = cpu_seconds(self.pids), time.process_time()
        wall, result = timed(fn)
        self.cpu[name] = cpu_seconds(self.pids) - before
        self.client_cpu[name] = time.process_time() - own
        return wall, result


def stream_import(box: Any, tmp: Path, data: pl.DataFrame, files: int) -> float:
    """Seconds of `ess stream` importing `data` cut into `files` files (checked after)."""
    folder = tmp / "sparts"
    folder.mkdir()
    per = -(-data.height // files)
    for f in range(files):
        data.slice(f * per, per).write_csv(folder / f"p_{f:03d}.csv", include_header=False)
    box.run(
        "ess create table sevents s,pkey:word i:count i:t f:price && "
        "ess create vector sprice s,pkey:word f,+add:price && "
        f"ess select local && ess category add sparts '{folder}/p_*'"
    )
    command = "aq_pp -f - -d s:word i:count i:t f:price -imp bench:sevents -imp bench:sprice"
    wall, _ = timed(lambda: box.run(f"ess stream sparts '*' '*' '{command}'", timeout=1800))
    count = box.run("aq_udb -cnt bench:sevents").stdout.decode().splitlines()[-1]
    assert count.split(",")[1] == str(data.height), count
    return wall


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--batch", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stream-files", type=int, default=24)
    parser.add_argument("--stream-rows", type=int, default=2_000_000)
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
    cpu0 = time.process_time()
    t_polars, grouped = timed(
        lambda: data.group_by("word", maintain_order=True).agg(pl.col("count").sum())
    )
    cpu_polars = time.process_time() - cpu0
    import duckdb

    con = duckdb.connect()
    arrow = data.to_arrow()
    con.register("data", arrow)
    cpu0 = time.process_time()
    t_duck, _ = timed(
        lambda: con.execute("select word, sum(count) from data group by word").fetchall()
    )
    cpu_duck = time.process_time() - cpu0
    distinct = grouped.height  # type: ignore[union-attr]

    with (
        tempfile.TemporaryDirectory() as tmp,
        cluster(Path(tmp), workers=args.workers) as box,
        box.inprocess(box.root),
    ):
        from ess.udb import spec
        from ess.udb.client import UdbSession
        from ess.udb.query import parse_argv, run, run_parts
        from ess.workspace import Workspace

        ws = Workspace.from_env()
        # The C helper of ess.aq (float and CSV rendering) is compiled once per machine, on
        # first use, into ESS_CACHE_DIR; the sandbox's cache is new, so build it before timing,
        # as on any machine that has rendered output before.
        with contextlib.suppress(ImportError, AttributeError):
            from ess.aq import native

            native.native_library()
        spec.create_database(ws, "bench", [])
        spec.create_target(ws, "vector", "wc", ["s,pkey:word i,+add:count"])
        spec.create_target(ws, "table", "events", ["s,pkey:word i:t f:price"])
        db = spec.load(ws, "bench")
        meter = Meter(list(box.pids().values()))
        with UdbSession(ws) as s:
            t_vimp, n = meter("vector_import", lambda: s.import_frames(db, "wc", batches))
            # exports are written to a file, as `aq_udb -exp ... -o FILE` writes them
            target = Path(tmp) / "export.csv"

            def export(argv: list[str]) -> None:
                with open(target, "wb") as out:
                    for part in run_parts(ws, parse_argv(argv), session=s):
                        out.write(part)

            t_vexp, _ = meter("vector_export", lambda: export(["-exp", "bench:wc"]))
            vec_lines = target.read_bytes().count(b"\n") - 1
            t_timp, _ = meter("table_import", lambda: s.import_frames(db, "events", batches))
            t_texp, _ = meter("table_export", lambda: export(["-exp", "bench:events"]))
            tab_lines = target.read_bytes().count(b"\n") - 1
            top10 = ["-exp", "bench:wc", "-sort,dec", "count", "-top", "10"]
            t_top, _ = meter("vector_top10", lambda: run(ws, top10, session=s))
        t_stream = stream_import(box, Path(tmp), data.head(args.stream_rows), args.stream_files)
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
        stream_import_s=t_stream,
        stream_import_rows_per_s=min(args.stream_rows, args.rows) / t_stream,
        cpu_s={"polars_group_by": cpu_polars, "duckdb_group_by": cpu_duck, **meter.cpu},
        client_cpu_s=meter.client_cpu,
        vector_import_export_vs_polars_cpu=(meter.cpu["vector_import"] + meter.cpu["vector_export"])
        / cpu_polars,
    )
    # the machine is shared: record how busy it was, so the rates can be read in context
    results.update(load_average_before=load_before, load_average_after=os.getloadavg()[0])
    out_path = HERE / "results" / "udb.json"
    out_path.parent.mkdir(exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2) + "\n")
    cpu = meter.cpu
    rows = args.rows

    def used(step: str) -> str:
        return f"{cpu[step]:.2f} (client {meter.client_cpu[step]:.2f})"

    table = [
        ("load average before / after (2 cores, shared)",
         f"{load_before:.1f} / {os.getloadavg()[0]:.1f}", "", ""),
        ("Polars group_by (1 process, in memory)", f"{t_polars:.2f} s",
         f"{rows / t_polars / 1e6:.1f} M rows/s", f"{cpu_polars:.2f}"),
        ("DuckDB GROUP BY (in memory)", f"{t_duck:.2f} s", f"{rows / t_duck / 1e6:.1f} M rows/s",
         f"{cpu_duck:.2f}"),
        ("UDB vector import (+add)", f"{t_vimp:.2f} s", f"{rows / t_vimp / 1e6:.2f} M rows/s",
         used("vector_import")),
        ("UDB vector export (CSV)", f"{t_vexp:.2f} s", f"{distinct / t_vexp / 1e6:.2f} M rows/s",
         used("vector_export")),
        ("UDB vector import+export vs Polars", f"{(t_vimp + t_vexp) / t_polars:.1f}x", "",
         f"{(cpu['vector_import'] + cpu['vector_export']) / cpu_polars:.1f}x"),
        ("UDB table import", f"{t_timp:.2f} s", f"{rows / t_timp / 1e6:.2f} M rows/s",
         used("table_import")),
        ("UDB table export (CSV)", f"{t_texp:.2f} s", f"{rows / t_texp / 1e6:.2f} M rows/s",
         used("table_export")),
        ("UDB -sort,dec -top 10 of the vector", f"{t_top:.2f} s", "",
         used("vector_top10")),
        (f"ess stream ... aq_pp -imp (table + float +add vector, {args.stream_files} files)",
         f"{t_stream:.2f} s", f"{min(args.stream_rows, rows) / t_stream / 1e6:.2f} M rows/s", ""),
    ]  # fmt: skip
    print(f"| measure ({rows:,} rows, {distinct:,} keys, {args.workers} workers) | time | rate "
          "| CPU s (client + cluster) |")  # fmt: skip
    print("|---|---|---|---|")
    for line in table:
        print("| " + " | ".join(line) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where the CPU of the end-to-end job goes, stage by stage (docs/performance.md).

Runs each stage of the import job of ``bench_e2e.py`` on the benchmark's own files, with the
functions the job runs, and reports CPU milliseconds per file and CPU seconds for the whole
job (48 files): decompress (isal, as the stream's feeder), start + parse + eval (an
``aq_pp`` forked as the warm service forks it, minus the same on an empty input), hash/route
(the cut: row stamps, key hash, split by partition), staged write, commit read, merge (the
in-order fold and the snapshot write, in groups of files as a stream commits), render (the
export of the final vector). One process, sequential: it measures the work, not the overlap
(the job runs on 2 cores).

    .venv/bin/python benchmarks/profile_e2e.py [--data DIR] [--files N]

Writes ``results/profile_e2e.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from readme_section import replace_section

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
PP_ARGS = ["-f,+1", "-", "-d", "s:userid", "i:ts", "i:article", "f:price",
           "-eval", "i:n", "1", "-eval", "f:total", "price"]  # fmt: skip
SPEC = "@PKey:\n  S:userid\n@Vector:agg\n  I,+add:n\n  F,+add:total\n"


class Clock:
    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}

    def run(self, stage: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        start = time.process_time()
        out = fn(*args, **kw)
        self.cpu[stage] = self.cpu.get(stage, 0.0) + time.process_time() - start
        return out

    def add(self, stage: str, seconds: float) -> None:
        self.cpu[stage] = self.cpu.get(stage, 0.0) + seconds


def child_cpu(argv: list[str], data: bytes) -> float:
    """CPU seconds of one aq_pp run as the warm service runs it: forked from this process
    (which has imported what the service preloads) with `data` as its stdin."""
    with tempfile.TemporaryFile() as src:
        src.write(data)
        src.flush()
        src.seek(0)
        pid = os.fork()
        if pid == 0:  # the child: stdin from the data, output discarded, as a warm aq_pp
            code = 1
            try:
                os.dup2(src.fileno(), 0)
                os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
                from ess.cli import aq_pp

                aq_pp.main(argv)
            except SystemExit as done:
                code = int(done.code or 0)
            finally:
                os._exit(code)
        _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"aq_pp {' '.join(argv)} failed")
    return float(usage.ru_utime + usage.ru_stime)


def preload() -> None:
    """What the warm service imports before it forks (ess.warm.server.PRELOAD)."""
    import importlib

    from ess.warm.server import PRELOAD

    for name in PRELOAD:
        importlib.import_module(name)
    sys.modules["ess.aq.native"].native_library()


def profile(files: list[Path]) -> dict[str, Any]:
    import polars as pl
    from isal import igzip

    from ess.udb import merge, server, staging
    from ess.udb.client import cutter
    from ess.udb.commit import COMMIT_GATHER
    from ess.udb.snapshot import Store
    from ess.udb.spec import parse_spec

    spec = parse_spec(SPEC, name="e2e", source="e2e.spec")
    target = spec.require("agg")
    cut, premerged = cutter(spec, "agg")
    clock = Clock()
    root = Path(tempfile.mkdtemp(prefix="ess-profile-"))
    store = Store(root)
    store.ready = True
    header = b"userid,ts,article,price\n"
    # -filt drops every row after the eval: parse and eval without rendering any output
    quiet = [*PP_ARGS, "-filt", "ts < 0"]
    preload()
    empty = child_cpu(quiet, header)
    texts = []
    # every aq_pp is forked before this process runs a Polars query of its own: a fork after
    # one would copy a thread pool's locks into the child (the warm service never queries)
    for path in files:
        text = clock.run("decompress", igzip.decompress, path.read_bytes())
        clock.add("parse + eval (aq_pp)", child_cpu(quiet, text) - empty)
        clock.add("aq_pp start (fork, empty input, exit)", empty)
        texts.append(text)
    base = 0
    group: list[dict[int, Any]] = []
    once, later = Clock(), Clock()
    for i, text in enumerate(texts):
        frame = pl.read_csv(text, schema={"userid": pl.String, "ts": pl.Int64,
                                          "article": pl.Int64, "price": pl.Float64})  # fmt: skip
        frame = frame.select("userid", n=pl.lit(1, pl.Int64), total="price")
        batch = clock.run("conform", merge.conform, frame, spec.pkey, target, ddef=False,
                          where="import")  # fmt: skip
        parts = clock.run("hash/route (cut)", cut, batch, 0)
        staged = root / "stage" / f"{i}.arrow"
        meta = {"spec": SPEC, "db": "e2e", "target": "agg", "premerged": premerged}
        clock.run("staged write", staging.write_batch, staged, parts, meta)
        loaded, _ = clock.run("commit read", staging.load, staged, base)
        base += batch.height
        group.append(loaded)
        if len(group) == COMMIT_GATHER or i == len(texts) - 1:  # as a stream commits
            # the first group makes every key (a group-by, once per job); the others fold
            first = i < COMMIT_GATHER
            (once if first else later).run(MERGE_FIRST if first else MERGE, server.import_into,
                                           store, SPEC, "e2e", "agg", _joined(group))  # fmt: skip
            group = []
    vector = pl.concat([p.vectors["agg"] for p in store.db("e2e").parts.values()])
    once.run("render (export CSV of the final vector, once)",
             vector.sort(merge.K).drop(merge.K).write_csv)  # fmt: skip
    n = len(files)
    stages = {k: {"ms_per_file": v / n * 1000, "seconds_48_files": v / n * 48}
              for k, v in clock.cpu.items()}  # fmt: skip
    rest = max(n - COMMIT_GATHER, 1)  # files merged after the first group
    stages.update({k: {"ms_per_file": v / rest * 1000, "seconds_48_files": v / rest * 44}
                   for k, v in later.cpu.items()})  # fmt: skip
    stages.update({k: {"ms_per_file": None, "seconds_48_files": v} for k, v in once.cpu.items()})
    return {"files": n, "rows_per_file": 400_000, "stages": stages,
            "load_average": os.getloadavg()}  # fmt: skip


MERGE = "merge (fold + snapshot write), in groups of files after the first (as a stream commits)"
MERGE_FIRST = "merge of the first group of files (makes every key; once per job)"


def _joined(group: list[dict[int, Any]]) -> dict[int, Any]:
    """Consecutive files' batches by partition, in order (what ess.udb.staging.groups makes
    of a group commit's staged files)."""
    import pyarrow as pa

    pids = sorted({pid for parts in group for pid in parts})
    return {pid: pa.concat_tables([p[pid] for p in group if pid in p]) for pid in pids}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "ess-bench-e2e-19200000"),
                    help="bench_e2e.py's generated files (run it once first)")  # fmt: skip
    ap.add_argument("--files", type=int, default=24)
    args = ap.parse_args()
    files = sorted(Path(args.data).glob("ev_*.csv.gz"))[: args.files]
    if not files:
        raise SystemExit(f"no ev_*.csv.gz in {args.data}: run benchmarks/bench_e2e.py first")
    res = profile(files)
    (HERE / "results" / "profile_e2e.json").write_text(json.dumps(res, indent=2) + "\n")
    table = render(res)
    print(table)
    replace_section(HERE / "README.md", SECTION, README_TEXT.format(table=table))


SECTION = "end to end: CPU per stage"
README_TEXT = f"""## {SECTION}

`.venv/bin/python benchmarks/profile_e2e.py` (after `bench_e2e.py` made the files; results in
`results/profile_e2e.json`): each stage of the import job above run with the job's own
functions on 24 of its files, one after the other in one process, scaled to 48 files; the
merge in groups of 4 files as a stream commits them. What the stages mean and where the rest
of the job's CPU goes: docs/performance.md, "CPU per stage".

{{table}}
"""


def render(res: dict[str, Any]) -> str:
    lines = ["| stage | CPU ms per file | CPU s, 48 files |", "|---|---|---|"]
    for stage, v in res["stages"].items():
        ms = "" if v["ms_per_file"] is None else f"{v['ms_per_file']:.1f}"
        lines.append(f"| {stage} | {ms} | {v['seconds_48_files']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""Benchmark: ess stream / ess exec on a local 2-worker cluster, beside the tools a user would
otherwise reach for, in the same run.

    .venv/bin/python benchmarks/bench_stream.py [--size 2G] [--tiny 2000] [--data DIR]

1. throughput of ``ess stream CAT '*' '*' 'wc -l'`` over ``--size`` of gzip CSV, beside
   ``ls FILES | xargs -P2 -n1 sh -c 'zcat "$0" | wc -l'``, GNU parallel, and the machine's isal
   limit (Python isal decompression of the same files in 2 processes, output discarded).
   Targets: >= 2x xargs/zcat, within 1.3x of the isal limit.
2. per-file overhead: ``ess stream TINY '*' '*' true`` over ``--tiny`` one-line files (whole
   process, amortized), beside GNU parallel and xargs. Target: <= 10 ms per file.
3. latency of ``ess exec true`` (whole process) on the running cluster: target < 1 s;
   ``ess --help``: target < 0.2 s.

Writes benchmarks/results/stream.json, prints a table and puts it in benchmarks/README.md under
``## stream and exec``. Page cache is warmed before each throughput run so every contender reads
from memory. The cluster is created in a temporary work dir and terminated at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from readme_section import replace_section

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
ESS = str(BIN / "ess")
TEMPLATE_MB = 48  # compressed size of one file


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]?)B?", text.upper())
    if not m:
        raise SystemExit(f"bad --size {text!r}")
    return int(float(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2)])


def make_template(path: Path, compressed_bytes: int) -> None:
    """A gzip CSV of about ``compressed_bytes``: web-log-like rows, isal level 1."""
    from isal import igzip

    rng = random.Random(42)
    rows = []
    for i in range(100_000):
        rows.append(
            f"2014-09-{rng.randint(1, 30):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"
            f":{rng.randint(0, 59):02d},{rng.randint(1, 99999)},{rng.randint(1, 500)},"
            f"{rng.random() * 100:.2f},/shop/item/{rng.randint(1, 5000)}?ref={i % 97},"
            f"Mozilla/5.0 ({rng.choice(['X11', 'Windows NT 10.0', 'Macintosh'])})\r\n"
        )
    block = "".join(rows).encode()
    with igzip.open(path, "wb", compresslevel=1) as f:
        while path.stat().st_size < compressed_bytes:
            f.write(block)
            f.flush()


def make_data(root: Path, size: int, tiny: int) -> tuple[list[Path], list[Path]]:
    big_dir, tiny_dir = root / "big", root / "tiny"
    big_dir.mkdir(parents=True, exist_ok=True)
    tiny_dir.mkdir(parents=True, exist_ok=True)
    per_file = min(TEMPLATE_MB << 20, max(size // 8, 1 << 20))
    count = max(2, round(size / per_file))
    template = root / "template.csv.gz"
    if not template.exists() or abs(template.stat().st_size - per_file) > per_file // 4:
        make_template(template, per_file)
    big = []
    for i in range(count):
        target = big_dir / f"part_{i:04d}.csv.gz"
        if not target.exists() or target.stat().st_size != template.stat().st_size:
            shutil.copyfile(template, target)
        big.append(target)
    for extra in sorted(big_dir.glob("part_*.csv.gz"))[count:]:
        extra.unlink()
    small = []
    for i in range(tiny):
        target = tiny_dir / f"t_{i:05d}.txt"
        if not target.exists():
            target.write_bytes(b"x\n")
        small.append(target)
    return big, small


def warm(files: list[Path]) -> None:
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass


CPU: dict[str, list[float]] = {}  # CPU seconds (user+sys) per contender, all processes


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _daemon_cpu(pids: list[int]) -> float:
    """CPU of the cluster daemons, including the commands they ran (reaped children)."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def run_cpu(
    label: str,
    cmd: list[str] | str,
    env: dict[str, str],
    *,
    shell: bool = False,
    daemons: list[int] = (),
) -> tuple[float, str]:  # type: ignore[assignment]
    """``run`` that also records the CPU seconds everything involved used."""
    before = _children_cpu() + _daemon_cpu(list(daemons))
    elapsed, out = run(cmd, env, shell=shell)
    CPU.setdefault(label, []).append(_children_cpu() + _daemon_cpu(list(daemons)) - before)
    return elapsed, out


def run(cmd: list[str] | str, env: dict[str, str], *, shell: bool = False) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(
        cmd,
        env=env,
        shell=shell,
        capture_output=True,
        text=True,
        executable="/bin/bash" if shell else None,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cmd!r} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def _isal_drain(path: str) -> int:
    from isal import igzip

    n = 0
    buf = bytearray(1 << 20)
    with igzip.open(path, "rb") as f:
        while k := f.readinto(buf):
            n += k
    return n


def _isal_into_wc(path: str) -> int:
    """The least a `wc -l` pipeline can cost: isal decompression written into `wc -l`."""
    import fcntl
    import subprocess

    from isal import igzip

    r, w = os.pipe()
    fcntl.fcntl(w, 1031, 1 << 20)  # F_SETPIPE_SZ
    proc = subprocess.Popen(["wc", "-l"], stdin=r, stdout=subprocess.PIPE)
    os.close(r)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    with igzip.open(path, "rb") as f:
        while k := f.readinto(buf):
            os.write(w, view[:k])
    os.close(w)
    return int(proc.communicate()[0])


def isal_floor(files: list[Path], worker: str, label: str) -> tuple[float, int]:
    code = (
        "import sys\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        f"from bench_stream import {worker} as work\n"
        "with ProcessPoolExecutor(2) as pool:\n"
        "    print(sum(pool.map(work, sys.argv[1:])))\n"
    )
    elapsed, out = run_cpu(label, [sys.executable, "-c", code, *map(str, files)], dict(os.environ))
    return elapsed, int(out)


def isal_limit(files: list[Path]) -> tuple[float, int]:
    """Python isal decompression of ``files`` in 2 processes, output discarded (a child
    process, so its CPU time is counted like everyone else's)."""
    code = (
        "import sys, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        "from bench_stream import _isal_drain\n"
        "files = sys.argv[1:]\n"
        "with ProcessPoolExecutor(2) as pool:\n"
        "    total = sum(pool.map(_isal_drain, files))\n"
        "print(total)\n"
    )
    elapsed, out = run_cpu("isal", [sys.executable, "-c", code, *map(str, files)], dict(os.environ))
    return elapsed, int(out)


def best(times: list[float]) -> float:
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="2G", help="total gzip bytes for the throughput test")
    ap.add_argument("--tiny", type=int, default=2000, help="number of tiny files")
    ap.add_argument(
        "--data",
        help="directory for the generated data, reused between runs "
        "(default: $TMPDIR/ess-bench-stream)",
    )
    ap.add_argument("--repeat", type=int, default=2, help="rounds (best time is kept)")
    ap.add_argument(
        "--readme-only",
        action="store_true",
        help="re-render the README section from results/stream.json",
    )
    args = ap.parse_args()
    if args.readme_only:
        update_readme(render(json.loads((HERE / "results" / "stream.json").read_text())))
        return
    size = parse_size(args.size)

    data_root = Path(args.data) if args.data else Path(tempfile.gettempdir()) / "ess-bench-stream"
    work = Path(tempfile.mkdtemp(prefix="ess-bench-stream-"))
    env = dict(os.environ)
    env.update(
        ESS_WORK_DIR=str(work / ".conf"),
        ESS_CACHE_DIR=str(work / ".ess"),
        ESS_AWS_DIR=str(work / ".aws"),
        LC_ALL="C",
    )
    print(f"generating data in {data_root} ...", file=sys.stderr)
    big, tiny = make_data(data_root, size, args.tiny)
    gz_bytes = sum(f.stat().st_size for f in big)
    results: dict[str, object] = {
        "machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()},
        "files": {"big": len(big), "gzip_bytes": gz_bytes, "tiny": len(tiny)},
    }
    try:
        subprocess.run([ESS, "select", "local"], env=env, check=True, cwd=work)
        for name, files in (("big", big), ("tiny", tiny)):
            subprocess.run(
                [ESS, "category", "add", name, f"{files[0].parent}/*", "--noprobe"],
                env=env,
                check=True,
                cwd=work,
                capture_output=True,
            )
        subprocess.run(
            [ESS, "cluster", "create", "--number", "2"],
            env=env,
            check=True,
            cwd=work,
            capture_output=True,
        )

        # 1. throughput. The machine may be shared: contenders run interleaved, round after
        # round, and each keeps its best time, so a burst of load hits all of them alike.
        warm(big)
        daemons = [int(p.read_text()) for p in (work / ".conf" / "cluster").glob("*.pid")]
        listing = " ".join(str(f) for f in big)
        have_parallel = shutil.which("parallel") is not None
        no_cluster_env = dict(env, ESS_WORK_DIR=str(work / ".conf-nocluster"))
        times: dict[str, list[float]] = {}
        raw_bytes = 0
        out_x = out_e = ""
        for _ in range(args.repeat):
            t, raw_bytes = isal_limit(big)
            times.setdefault("isal", []).append(t)
            t, _ = isal_floor(big, "_isal_into_wc", "isal_wc")
            times.setdefault("isal_wc", []).append(t)
            t, out_e = run_cpu(
                "ess", [ESS, "stream", "big", "*", "*", "wc -l"], env, daemons=daemons
            )
            times.setdefault("ess", []).append(t)
            t, _ = run_cpu("nocluster", [ESS, "stream", "big", "*", "*", "wc -l"], no_cluster_env)
            times.setdefault("nocluster", []).append(t)
            t, out_x = run_cpu(
                "xargs",
                f"ls {listing} | xargs -P2 -n1 sh -c 'zcat \"$0\" | wc -l'",
                env,
                shell=True,
            )
            times.setdefault("xargs", []).append(t)
            if have_parallel:
                t, _ = run_cpu(
                    "parallel", f"parallel -j2 'zcat {{}} | wc -l' ::: {listing}", env, shell=True
                )
                times.setdefault("parallel", []).append(t)
        assert sorted(out_e.split()) == sorted(out_x.split()), "ess and zcat disagree"
        t_isal, t_ess, t_nocluster, t_xargs = (
            best(times[k]) for k in ("isal", "ess", "nocluster", "xargs")
        )
        t_par = best(times["parallel"]) if have_parallel else None
        mb = raw_bytes / 1e6
        results["throughput"] = {
            "uncompressed_MB": round(mb, 1),
            "seconds": {
                "ess_stream_cluster": t_ess,
                "ess_stream_no_cluster": t_nocluster,
                "xargs_zcat": t_xargs,
                "gnu_parallel_zcat": t_par,
                "isal_limit_2proc": t_isal,
            },
            "MB_per_s": {
                "ess_stream_cluster": mb / t_ess,
                "xargs_zcat": mb / t_xargs,
                "isal_limit_2proc": mb / t_isal,
            },
            "speedup_vs_xargs": t_xargs / t_ess,
            "speedup_vs_parallel": (t_par / t_ess) if t_par else None,
            "ratio_to_isal_limit": t_ess / t_isal,
            "isal_into_wc_seconds": best(times["isal_wc"]),
            "ratio_to_isal_into_wc": t_ess / best(times["isal_wc"]),
            "cpu_ratio_to_isal_into_wc": min(CPU["ess"]) / min(CPU["isal_wc"]),
            "cpu_seconds": {k: min(v) for k, v in CPU.items()},
            "cpu_ratio_to_isal": min(CPU["ess"]) / min(CPU["isal"]),
            "all_runs_seconds": times,
        }

        # 2. per-file overhead
        warm(tiny)
        tiny_list = str(tiny[0].parent)
        t_tiny = best(
            [run([ESS, "stream", "tiny", "*", "*", "true"], env)[0] for _ in range(args.repeat)]
        )
        t_xargs_tiny, _ = run(
            f"ls {tiny_list}/* | xargs -P2 -n1 sh -c 'cat \"$0\" | true'", env, shell=True
        )
        t_par_tiny = None
        if have_parallel:
            t_par_tiny, _ = run(
                f"ls {tiny_list}/* | parallel -j2 'cat {{}} | true'", env, shell=True
            )
        results["per_file"] = {
            "files": len(tiny),
            "ms_per_file": {
                "ess_stream_cluster": 1000 * t_tiny / len(tiny),
                "xargs_P2": 1000 * t_xargs_tiny / len(tiny),
                "gnu_parallel_j2": (1000 * t_par_tiny / len(tiny)) if t_par_tiny else None,
            },
        }

        # 3. latency
        run([ESS, "exec", "true"], env)  # warm the import caches
        execs = [run([ESS, "exec", "true"], env)[0] for _ in range(5)]
        helps = [run([ESS, "--help"], env)[0] for _ in range(5)]
        results["latency"] = {
            "ess_exec_true_s": {"median": statistics.median(execs), "best": min(execs)},
            "ess_help_s": {"median": statistics.median(helps), "best": min(helps)},
        }
    finally:
        subprocess.run([ESS, "cluster", "terminate", "-y"], env=env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    results["machine"]["loadavg_end"] = os.getloadavg()  # type: ignore[index]

    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "stream.json").write_text(json.dumps(results, indent=1) + "\n")
    table = render(results)
    print(table)
    update_readme(table)


def render(r: dict) -> str:  # type: ignore[type-arg]
    th, pf, lat = r["throughput"], r["per_file"], r["latency"]
    s, mbps, cpu = th["seconds"], th["MB_per_s"], th["cpu_seconds"]
    files = r["files"]

    def opt(v: float | None, fmt: str) -> str:
        return "n/a (parallel not installed)" if v is None else format(v, fmt)

    lines = [
        f"Machine: {r['machine']['cpus']} CPUs, load average at start "
        f"{r['machine']['loadavg_start'][0]:.2f}. Data: {files['big']} gzip CSV files, "
        f"{files['gzip_bytes'] / 1e9:.2f} GB compressed, {th['uncompressed_MB'] / 1e3:.2f} GB "
        f"raw; {files['tiny']} tiny files.",
        "",
        "| measurement | ess | peer | ratio | target |",
        "|---|---|---|---|---|",
        f"| stream `wc -l` over gzip CSV (2-worker cluster) | {s['ess_stream_cluster']:.2f} s "
        f"({mbps['ess_stream_cluster']:.0f} MB/s) | xargs -P2 zcat: {s['xargs_zcat']:.2f} s "
        f"({mbps['xargs_zcat']:.0f} MB/s) | {th['speedup_vs_xargs']:.2f}x faster | >= 2x |",
        f"| same | | GNU parallel -j2 zcat: {opt(s['gnu_parallel_zcat'], '.2f')} s | "
        f"{opt(th['speedup_vs_parallel'], '.2f')}x faster | |",
        f"| same | | isal limit (2 processes, output discarded): {s['isal_limit_2proc']:.2f} s "
        f"({mbps['isal_limit_2proc']:.0f} MB/s) | {th['ratio_to_isal_limit']:.2f}x the limit "
        "| <= 1.3x |",
        f"| same, no cluster (threads in the ess process) | {s['ess_stream_no_cluster']:.2f} s"
        " | | | |",
        f"| same | | isal into `wc -l` (2 processes: the floor for this command): "
        f"{th['isal_into_wc_seconds']:.2f} s | {th['ratio_to_isal_into_wc']:.2f}x | |",
        f"| CPU seconds, all processes (load-independent) | ess cluster {cpu['ess']:.1f}, no "
        f"cluster {cpu['nocluster']:.1f} | isal limit {cpu['isal']:.1f}; xargs zcat "
        f"{cpu['xargs']:.1f}; isal into wc {cpu['isal_wc']:.1f} | "
        f"{th['cpu_ratio_to_isal']:.2f}x the isal CPU, "
        f"{th['cpu_ratio_to_isal_into_wc']:.2f}x the isal-into-wc CPU | |",
        f"| per-file overhead, `true` on {pf['files']} tiny files (whole process) | "
        f"{pf['ms_per_file']['ess_stream_cluster']:.2f} ms/file | xargs -P2: "
        f"{pf['ms_per_file']['xargs_P2']:.2f} ms/file; GNU parallel -j2: "
        f"{opt(pf['ms_per_file']['gnu_parallel_j2'], '.2f')} ms/file | | <= 10 ms |",
        f"| `ess exec true` on the running cluster (whole process) | "
        f"{lat['ess_exec_true_s']['median']:.3f} s median, {lat['ess_exec_true_s']['best']:.3f}"
        " s best | | | < 1 s |",
        f"| `ess --help` | {lat['ess_help_s']['median']:.3f} s median | | | < 0.2 s |",
    ]
    return "\n".join(lines)


def update_readme(table: str) -> None:
    readme = HERE / "README.md"
    section = (
        "## stream and exec\n\n"
        "`.venv/bin/python benchmarks/bench_stream.py` (results in "
        "`results/stream.json`; `--size 300M` for a quick run).\n\n" + table + "\n\n"
        "The machine is shared with other jobs: wall-clock figures move with their load (the "
        "load average is in the JSON), so contenders run interleaved and keep their best "
        "time, and the CPU seconds of every process involved (daemons and their commands "
        "included) are reported as the load-independent comparison. The isal rows are the "
        "limits: decompression alone, and decompression written into `wc -l` (what any "
        "`localget | wc -l` must pay). Latencies are whole processes; they suffer most from "
        "a busy machine (quiet runs: `ess exec true` about 0.4 s, `ess --help` about 0.14 s).\n"
    )
    replace_section(readme, "stream and exec", section)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# `make bench`: every benchmark, one after another (each writes results/<name>.json and prints
# its table; the latest tables are kept in benchmarks/README.md). Takes a long while: the stream
# and aq_pp benchmarks generate gigabytes of data. The SSH benchmark needs root (it starts sshd).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
for bench in categorize stream aq_pp udb ec2 ssh; do
  echo "== $bench"
  "$PY" "benchmarks/bench_$bench.py"
done

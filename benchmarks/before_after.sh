#!/usr/bin/env bash
# Before/after check of a change: runs the stream/exec, aq_pp and UDB benchmarks (quick sizes)
# once on the sources of REV (default: the first parent of HEAD) and once on the working tree,
# interleaved in one run, and keeps both JSON files in benchmarks/results/before_after/.
# Usage: bash benchmarks/before_after.sh [REV]   (NAMES='stream udb' to run only some)
# Each side runs its own revision's benchmark script (an interface may have changed) with this
# venv's Python; the scripts write results/<name>.json and README sections of their own tree,
# and this script restores the working tree's copies afterwards, so only before_after/ changes.
set -euo pipefail
cd "$(dirname "$0")/.."
REV=${1:-HEAD~1}
OUT=benchmarks/results/before_after
BASE=$(mktemp -d /tmp/ess-base.XXXXXX)
SAVED=$(mktemp -d /tmp/ess-saved.XXXXXX)
# the "after" side rewrites this tree's result files and README tables: keep the working
# tree's copies (uncommitted edits included) and put them back at the end
KEEP=(benchmarks/results/stream.json benchmarks/results/aq_pp.json benchmarks/results/udb.json
  benchmarks/README.md)
for f in "${KEEP[@]}"; do [[ -e $f ]] && cp --parents "$f" "$SAVED/"; done
restore() {
  for f in "${KEEP[@]}"; do [[ -e $SAVED/$f ]] && cp "$SAVED/$f" "$f"; done
  rm -rf "$SAVED"
  git worktree remove --force "$BASE" >/dev/null 2>&1 || true
}
trap restore EXIT
git worktree add --detach "$BASE" "$REV" >/dev/null
mkdir -p "$OUT"
run() {  # run NAME LABEL TREE ARGS...: TREE's benchmark NAME with ess imported from TREE/src
  local name=$1 label=$2 tree=$3; shift 3
  echo "== $name ($label: $tree)"
  PYTHONPATH="$tree/src" .venv/bin/python "$tree/benchmarks/bench_$name.py" "$@" \
    >"$OUT/$name.$label.txt"
  cp "$tree/benchmarks/results/$name.json" "$OUT/$name.$label.json"
}
for name in ${NAMES:-stream aq_pp udb}; do
  case $name in
    stream) args=(--size 300M --tiny 500 --repeat 2) ;;
    aq_pp) args=(--rows 3000000 --repeat 2) ;;
    udb) args=(--rows 2000000) ;;
  esac
  run "$name" before "$BASE" "${args[@]}"
  run "$name" after "$PWD" "${args[@]}"
done
echo "results in $OUT"

#!/usr/bin/env bash
# Runs the whole suite (slow integration tests included). pytest's "no tests" exit 5 is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pytest -q -p no:cacheprovider --durations=30 "$@"
rc=$?
if [[ $rc -eq 5 ]]; then echo "pytest collected no tests" >&2; exit 1; fi
exit $rc

#!/usr/bin/env bash
# Creates (once) the unprivileged system user the test PostgreSQL runs as: initdb and postgres
# refuse to run as root. Idempotent; prints the user's name. Used by tests/integration/pg_harness.py.
set -euo pipefail
user="${1:-esspg}"
if ! id -u "$user" >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "pg-user: user $user does not exist (run as root to create it)" >&2
    exit 1
  fi
  useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
fi
echo "$user"

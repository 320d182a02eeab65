#!/usr/bin/env bash
# Installs the system packages the tests and demo need. Idempotent: installs only what is missing.
set -euo pipefail
need=()
# gcc + libc6-dev: aq_pp builds its C helper (src/ess/aq/_native.c) on first use
# postgresql: `ess redshift` tests run a real server (initdb/pg_ctl in a temporary directory)
# chromium + chromium-driver: the `ess ui` pages are tested in a real headless browser
# zsh: the generated zsh completion script is loaded by a real zsh
for pkg in bzip2 xz-utils zstd parallel mawk openssh-server python3-venv gcc libc6-dev unzip \
  postgresql chromium chromium-driver zsh; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup-system: missing Debian packages: ${need[*]} (run as root to install)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

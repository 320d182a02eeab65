#!/usr/bin/env bash
# `make demo`: the woodworking tutorial of Essentia, unchanged, on this machine (local default).
# State goes to .demo/ so the demo never touches your own ~/.ess or ./.conf.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=$(cd ../shared/acceptance/data/woodworking && pwd)
DEMO=$PWD/.demo
rm -rf "$DEMO" && mkdir -p "$DEMO"
export ESS_CACHE_DIR=$DEMO/.ess ESS_WORK_DIR=$DEMO/.conf ESS_AWS_DIR=$DEMO/.aws TZ=UTC
export PATH=$PWD/.venv/bin:$PATH
cd "$DEMO"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step ess select local
step ess category add browse "$DATA/diy_woodworking/*browse_*"
step ess category change columnspec browse "S:eventDate S:userID I:articleID"
step ess category add purchase "$DATA/diy_woodworking/*purchase_*"
step ess category change columnspec purchase "S:purchaseDate S:userID I:articleID f:price I:refID"
step ess summary
step ess summary browse
# The main job of the tutorial: one `wc -l` per file, in date order, run in parallel.
step ess stream browse 2014-09-01 2014-09-07 'wc -l'
# aq_pp cleans the purchase logs (first rows shown).
printf '\n\033[1m$ %s\033[0m\n' "ess stream purchase '*' '*' \"aq_pp -f,+1,eok - -d %cols -o,notitle -\" | head -5"
ess stream purchase '*' '*' "aq_pp -f,+1,eok - -d %cols -o,notitle -" | head -5

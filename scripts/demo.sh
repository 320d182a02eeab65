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

echo "ess demo: the woodworking tutorial of Essentia on this machine (state in .demo/)"
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

# The UDB part of the tutorial (3-database.sh): purchases imported into an in-memory table
# held by the workers, then the top 10 buyers by total spend.
step ess server reset
step ess create database wood
step ess create table allsales s,pkey:userid i,tkey:ptime i:articleid f:price i:refid
step ess create vector usersales s,pkey:userid i,+last:articleid f,+add:total
step ess udbd restart
step ess stream purchase 2014-09-01 2014-09-30 "aq_pp -f,+1,eok,qui - -d %cols \
-eval i:ptime 'DateToTime(purchaseDate,\"Y.m.d.H.M.S\")' -imp wood:allsales"
step ess exec "aq_udb -cnt wood:allsales"
step ess exec "aq_udb -exp wood:allsales -o,notitle - | \
aq_pp -f - -d s:userid X i:articleid f:total X -imp wood:usersales"
step ess exec "aq_udb -exp wood:usersales -sort,dec total -top 10"
step ess udbd stop

cat <<'NEXT'

Done. What to try next (state is in .demo/; run from there with the same environment):
  cd .demo && export ESS_CACHE_DIR=$PWD/.ess ESS_WORK_DIR=$PWD/.conf PATH=$PWD/../.venv/bin:$PATH
  ess stream browse 2014-09-01 2014-09-30 "aq_pp -f,+1,eok - -d %cols -filt 'articleID==5' -o -"
  ess cluster create --number=2     # a 2-worker local cluster; stream and the UDB use it
  ess --help, ess stream --help, aq_pp --help, aq_udb --help
  The Essentia tutorial scripts run unchanged: ../shared/acceptance/scripts/ (see README.md).
NEXT

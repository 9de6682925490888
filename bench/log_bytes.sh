#!/usr/bin/env bash
# What one call of each of the demo's routes costs the log, in bytes the store writes: the
# growth of the embedded store's journal (`<data>/store/*.jnl`, its written part) over N calls by one user that
# already has PRELOAD activities, divided by N. The journal holds every write as it is
# committed (before fjall compacts it into tables), so this is the same measure for any build.
# Snapshots are off, so that no call pays for one.
#
#   bench/log_bytes.sh                                  # this build, the demo's routes
#   RECORDED=1 bench/log_bytes.sh                       # the GETs without `read_only`
#   BINARY=/path/to/old/revenant RECORDED=1 bench/log_bytes.sh   # another build (one that
#                                                       # predates `read_only` needs RECORDED=1)
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-100}
# 500: past ~700 activities a build before issue 12 cannot answer the list at all (503).
PRELOAD=${PRELOAD:-500}

source bench/common.sh

config="$work/revenant.yaml"
{
  printf 'limits:\n  snapshot_every_invocations: 0\n'
  if [ -n "${RECORDED:-}" ]; then
    sed -e '/read_only: true/d' -e "s#\.\./\.\./target#$PWD/target#" examples/user-activity/revenant.yaml
  else
    sed -e "s#\.\./\.\./target#$PWD/target#" examples/user-activity/revenant.yaml
  fi
} >"$config"

serve data "$config"

post() {
  curl -sf -o /dev/null -X POST -H 'content-type: application/json' \
    -d "{\"kind\":\"run\",\"detail\":\"activity $1 with a little text to make it realistic\"}" \
    "$url/user/bench/activities"
}

for i in $(seq "$PRELOAD"); do post "$i"; done
list_bytes=$(curl -sf "$url/user/bench/activities" | wc -c)

# measure NAME COMMAND...: journal growth over N runs of COMMAND, per run.
measure() {
  local name=$1; shift
  local before after
  before=$(journal_bytes data)
  for i in $(seq "$N"); do "$@" "$i"; done
  after=$(journal_bytes data)
  echo "| $name | $(( (after - before) / N )) |"
}
get() { curl -sf -o /dev/null "$url$1"; }
get_list() { get /user/bench/activities; }
get_count() { get /user/bench/count; }

echo "| route (one user with $PRELOAD activities; the list is $list_bytes bytes of JSON) | log bytes per call |"
echo "|---|---|"
measure "POST /user/{id}/activities" post
measure "GET /user/{id}/activities" get_list
measure "GET /user/{id}/count" get_count
kind="as the demo declares them"
if [ -n "${RECORDED:-}" ]; then kind="recorded (no read_only)"; fi
echo "binary: $BINARY; GETs $kind; $N calls each"

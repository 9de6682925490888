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
PRELOAD=${PRELOAD:-1000}
BINARY=${BINARY:-target/release/revenant}

rustup target add wasm32-wasip2 >/dev/null 2>&1
cargo build --locked -q -p user-activity --target wasm32-wasip2 --profile guest
if [ "$BINARY" = target/release/revenant ]; then
  cargo build --locked -q --release -p revenant-cli
fi

work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

config="$work/revenant.yaml"
{
  printf 'limits:\n  snapshot_every_invocations: 0\n'
  if [ -n "${RECORDED:-}" ]; then
    sed -e '/read_only: true/d' -e "s#\.\./\.\./target#$PWD/target#" examples/user-activity/revenant.yaml
  else
    sed -e "s#\.\./\.\./target#$PWD/target#" examples/user-activity/revenant.yaml
  fi
} >"$config"

REVENANT_LOG=warn "$BINARY" serve --config "$config" --data "$work/data" --listen 127.0.0.1:0 \
  >"$work/out" 2>"$work/err" &
pid=$!
url=""
for _ in $(seq 600); do
  url=$(sed -n 's/.*listening on //p' "$work/out" | head -1)
  if [ -n "$url" ]; then break; fi
  sleep 0.1
done
if [ -z "$url" ]; then echo "server did not start: $(cat "$work/err")" >&2; exit 1; fi

# fjall preallocates its journal with zeros: what is written ends at the last non-zero byte.
journal() {
  python3 -c 'import sys; print(sum(len(open(f, "rb").read().rstrip(b"\0")) for f in sys.argv[1:]))' \
    "$work"/data/store/*.jnl
}
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
  before=$(journal)
  for i in $(seq "$N"); do "$@" "$i"; done
  after=$(journal)
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

#!/usr/bin/env bash
# Reads with and without `read_only`, same binary, same machine, one run each:
#   recorded   GET /user/{id}/count as a durable call (the route without `read_only`): it
#              appends an invocation and waits for an fdatasync, like a write
#   read-only  the demo's route (`read_only: true`): in the worker's turn, nothing written
# Each run: 1,000 users that each have 3 activities, closed model, 64 connections. Also prints
# the store's journal before and after each run's reads (log bytes the reads cost).
#
#   bench/reads.sh                       # 2 s warm-up, 10 s measured
#   DURATION=20 CONNECTIONS=128 bench/reads.sh
#   BINARY=/path/to/old/revenant ONLY=recorded bench/reads.sh   # another build's recorded reads
#                                        # (one that predates `read_only` has no other kind)
set -euo pipefail
cd "$(dirname "$0")/.."

ONLY=${ONLY:-}
CONNECTIONS=${CONNECTIONS:-64}
USERS=${USERS:-1000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}

source bench/common.sh

# run NAME CONFIG: a fresh server on CONFIG; fill the users, then measure GET count.
run() {
  local name=$1 config=$2
  if [ -n "$ONLY" ] && [ "$ONLY" != "$name" ]; then return; fi
  serve "$name" "$config"
  # Three activities per user (closed model, one request in flight per user at most).
  target/release/revenant loadtest --quiet --name fill --url "$url" --method POST \
    --path '/user/{user}/activities' --body '{"kind":"k","detail":"{tag}"}' --users "$USERS" \
    --connections "$CONNECTIONS" --warmup-secs 0 --duration-secs 3 >/dev/null
  local before after
  before=$(journal_bytes "$name")
  target/release/revenant loadtest --quiet --name "$name" --url "$url" --path '/user/{user}/count' \
    --users "$USERS" --connections "$CONNECTIONS" --warmup-secs "$WARMUP" \
    --duration-secs "$DURATION" | grep '^RESULT' | tee -a "$work/results"
  after=$(journal_bytes "$name")
  echo "$name journal bytes: before reads $before, after $after" | tee -a "$work/sizes"
  stop
}

demo=examples/user-activity/revenant.yaml
recorded="$work/recorded.yaml"
# The demo without `read_only`, its component path made absolute.
sed -e '/read_only: true/d' -e "s#\.\./\.\./target#$PWD/target#" "$demo" >"$recorded"
run recorded "$recorded"
run read-only "$demo"

echo
echo "| GET /user/{id}/count | req/s | p50 ms | p99 ms | errors |"
echo "|---|---|---|---|---|"
awk '{ printf "| %s | %s | %s | %s | %s |\n", $2, $3, $4, $5, $6 }' "$work/results"
cat "$work/sizes"
echo "binary: $BINARY; machine: $(nproc) cores; $USERS users, $CONNECTIONS connections, ${DURATION}s after ${WARMUP}s"

#!/usr/bin/env bash
# Reads with and without `read_only`, same binary, same machine, one run each:
#   recorded   GET /user/{id}/count as a durable call (the route without `read_only`): it
#              appends an invocation and waits for an fdatasync, like a write
#   read-only  the demo's route (`read_only: true`): in the worker's turn, nothing written
# Each run: 1,000 users that each have 3 activities, closed model, 64 connections. Also prints
# the store's size after each run's reads (log bytes the reads cost).
#
#   bench/reads.sh                       # 2 s warm-up, 10 s measured
#   DURATION=20 CONNECTIONS=128 bench/reads.sh
#   BINARY=/path/to/old/revenant ONLY=recorded bench/reads.sh   # another build's recorded reads
#                                        # (one that predates `read_only` has no other kind)
set -euo pipefail
cd "$(dirname "$0")/.."

BINARY=${BINARY:-target/release/revenant}
ONLY=${ONLY:-}
CONNECTIONS=${CONNECTIONS:-64}
USERS=${USERS:-1000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}

rustup target add wasm32-wasip2 >/dev/null 2>&1
cargo build --locked -q -p user-activity --target wasm32-wasip2 --profile guest
cargo build --locked -q --release -p revenant-cli

work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# run NAME CONFIG: a fresh server on CONFIG; fill the users, then measure GET count.
run() {
  local name=$1 config=$2
  if [ -n "$ONLY" ] && [ "$ONLY" != "$name" ]; then return; fi
  REVENANT_LOG=warn "$BINARY" serve --config "$config" --data "$work/$name" \
    --listen 127.0.0.1:0 >"$work/$name.out" 2>"$work/$name.err" &
  pid=$!
  local url=""
  for _ in $(seq 600); do
    url=$(sed -n 's/.*listening on //p' "$work/$name.out" | head -1)
    if [ -n "$url" ]; then break; fi
    sleep 0.1
  done
  if [ -z "$url" ]; then echo "server did not start: $(cat "$work/$name.err")" >&2; exit 1; fi
  # Three activities per user (closed model, one request in flight per user at most).
  target/release/revenant loadtest --quiet --name fill --url "$url" --method POST \
    --path '/user/{user}/activities' --body '{"kind":"k","detail":"{tag}"}' --users "$USERS" \
    --connections "$CONNECTIONS" --warmup-secs 0 --duration-secs 3 >/dev/null
  local before after
  before=$(du -sb "$work/$name/store" | cut -f1)
  target/release/revenant loadtest --quiet --name "$name" --url "$url" --path '/user/{user}/count' \
    --users "$USERS" --connections "$CONNECTIONS" --warmup-secs "$WARMUP" \
    --duration-secs "$DURATION" | grep '^RESULT' | tee -a "$work/results"
  after=$(du -sb "$work/$name/store" | cut -f1)
  echo "$name store bytes: before reads $before, after $after" | tee -a "$work/sizes"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
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

#!/usr/bin/env bash
# The headline numbers, side by side, in one run (on this machine, load generator included):
#   (a) hyper hello-world, closed model at saturation        — the ceiling of the HTTP stack
#   (b) a non-durable gateway route (`durable: false`: fresh instance, nothing recorded)
#   (c) durable `add-activity`, 10,000 users, closed model at saturation, every user verified
#   (d) durable `add-activity`, 10,000 users, open model at 10,000 req/s offered, verified
#   (e) the same at RATE_LOW (5,000/s), a rate this machine sustains, for latency without queueing
# Prints one table and the ratios (c)/(a) and (b)/(a).
# 10,000 users exceed the default cap of 8,000 workers in memory (runtime/src/limits.rs), so
# (c)-(e) include evictions and re-activations (replay) of the least recently used workers.
#
#   bench/suite.sh                                   # 64 connections, 2 s warm-up, 10 s each
#   CONNECTIONS=128 DURATION=20 RATE=8000 bench/suite.sh
#   REPORTS=/tmp/reports bench/suite.sh              # also JSON and HTML reports per run
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${CONNECTIONS:-64}
USERS=${USERS:-10000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
RATE=${RATE:-10000}
RATE_LOW=${RATE_LOW:-5000}
began=$(date +%s)

rustup target add wasm32-wasip2 >/dev/null 2>&1
cargo build --locked -q -p user-activity --target wasm32-wasip2 --profile guest
cargo build --locked -q --release -p revenant-cli -p revenant-bench

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Starts a server in the background and waits (bounded) for its "listening on URL" line;
# sets $url and $pid. Not called in a subshell, so the cleanup trap sees every PID.
start() {
  local out="$work/$1.out"; shift
  "$@" >"$out" 2>"$out.err" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 600); do
    url=$(sed -n 's/.*listening on //p' "$out" | head -1)
    if [ -n "$url" ]; then return; fi
    sleep 0.1
  done
  echo "server did not start: $(cat "$out.err")" >&2; exit 1
}

# load NAME ARGS...: one run; its RESULT line goes to $work/results.
load() {
  local name=$1; shift
  local reports=()
  if [ -n "${REPORTS:-}" ]; then
    mkdir -p "$REPORTS"
    reports=(--json "$REPORTS/$name.json" --html "$REPORTS/$name.html")
  fi
  target/release/revenant loadtest --quiet --name "$name" --warmup-secs "$WARMUP" \
    --duration-secs "$DURATION" "${reports[@]}" "$@" | tee "$work/$name.txt"
  grep '^RESULT' "$work/$name.txt" >>"$work/results"
}

add='{"kind":"bench","detail":"{tag}"}'

start hello target/release/hello-server --listen 127.0.0.1:0
load a-hello-world --url "$url" --path / --users "$USERS" --connections "$CONNECTIONS"
kill "$pid"

start revenant env REVENANT_LOG=warn target/release/revenant serve \
  --config examples/user-activity/revenant.yaml --data "$work/data" --listen 127.0.0.1:0
load b-non-durable-route --url "$url" --method POST --path /preview/activities --body "$add" \
  --users "$USERS" --connections "$CONNECTIONS"
load c-durable-closed --url "$url" --method POST --path '/user/{user}/activities' --body "$add" \
  --users "$USERS" --user-prefix c --connections "$CONNECTIONS" --verify-count '/user/{user}/count'
load d-durable-open --url "$url" --method POST --path '/user/{user}/activities' --body "$add" \
  --users "$USERS" --user-prefix d --rate "$RATE" --verify-count '/user/{user}/count'
load e-durable-open-low --url "$url" --method POST --path '/user/{user}/activities' --body "$add" \
  --users "$USERS" --user-prefix e --rate "$RATE_LOW" --verify-count '/user/{user}/count'

echo
echo "| run | model | ok req/s | offered/s | p50 ms | p99 ms | errors | late starts |"
echo "|---|---|---|---|---|---|---|---|"
awk -v c="$CONNECTIONS" '{
  model = ($2 ~ /open/) ? "open, " $7 "/s offered" : "closed, " c " conn";
  offered = ($2 ~ /open/) ? $7 : "-";
  late = ($2 ~ /open/) ? $8 : "-";
  printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", $2, model, $3, offered, $4, $5, $6, late
}' "$work/results"
awk '$2 ~ /^a-/ {a=$3} $2 ~ /^b-/ {b=$3} $2 ~ /^c-/ {c=$3}
  END { if (a > 0) printf "\n(c)/(a) durable / hello-world: %.3f\n(b)/(a) non-durable route / hello-world: %.3f\n", c / a, b / a }' \
  "$work/results"
echo "machine: $(nproc) cores, $(uname -r); users $USERS, ${DURATION}s measured after ${WARMUP}s; $(( $(date +%s) - began ))s in all"

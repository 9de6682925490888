#!/usr/bin/env bash
# Durable `add-activity` over HTTP with 1,000 users, against a trivial hyper hello-world server
# on the same machine, closed model at saturation. Prints one table and the ratio.
#
#   bench/http.sh                       # 64 connections, 2 s warm-up, 10 s measured
#   CONNECTIONS=128 DURATION=20 bench/http.sh
#
# The load generator runs on the same 2 cores as the server: the figures are for the pair.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${CONNECTIONS:-64}
USERS=${USERS:-1000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}

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
    url=$(sed -n 's/.*listening on //p' "$out")
    if [ -n "$url" ]; then return; fi
    sleep 0.1
  done
  echo "server did not start: $(cat "$out.err")" >&2; exit 1
}

load() {
  target/release/revenant loadtest --users "$USERS" --connections "$CONNECTIONS" \
    --warmup-secs "$WARMUP" --duration-secs "$DURATION" "$@"
}

start hello target/release/hello-server --listen 127.0.0.1:0
load --name hello --url "$url" --path / | tee "$work/hello.txt"
kill "$pid"

start revenant env REVENANT_LOG=warn target/release/revenant serve \
  --config examples/user-activity/revenant.yaml --data "$work/data" --listen 127.0.0.1:0
load --name durable-add-activity --url "$url" --method POST \
  --path '/user/{user}/activities' --body '{"kind":"bench","detail":"call {n}"}' \
  --user-prefix u --verify-count '/user/{user}/count' | tee "$work/durable.txt"

echo
echo "| server | ok req/s | p50 ms | p99 ms | errors |"
echo "|---|---|---|---|---|"
cat "$work/hello.txt" "$work/durable.txt" | awk '/^RESULT/ {printf "| %s | %s | %s | %s | %s |\n", $2, $3, $4, $5, $6}'
awk '/^RESULT hello/ {h=$3} /^RESULT durable/ {d=$3} END {if (h > 0) printf "\ndurable / hello-world throughput: %.3f\n", d / h}' \
  "$work/hello.txt" "$work/durable.txt"
echo "machine: $(nproc) cores, $(uname -r); connections $CONNECTIONS, users $USERS, ${DURATION}s measured"

#!/usr/bin/env bash
# The headline numbers, side by side, in one run, each throughput figure measured twice: with
# wrk (an external generator in C that takes little of the two cores) and with our own
# `revenant loadtest`. Ratios are to hello-world measured by the same generator in this run.
#   (a) hyper hello-world, closed model at saturation: the ceiling of the HTTP stack
#   (b) the non-durable route (`durable: false`)
#   (c) durable `add-activity` over USERS (10,000) users, closed model at saturation
#   (d) the same in the open model at 70 % of (c)'s loadtest rate (latency counted from
#       intended start times), on a fresh server whose warm-up creates the workers
#   (e) one hot worker, one connection: the latency of a durable call on a quiet machine
# Every durable run is verified: the loadtest checks every user's count; a wrk run is checked
# by bench/wrk/verify.py (no worker counts more calls than were sent to it; together they
# count at least every call answered 200). Also printed: this disk's fsync p50, measured now.
#
# The live-worker cap must cover USERS or the runs measure evictions: the demo's config is used
# with `active_workers_max: USERS + 2,000`, which needs vm.max_map_count above Linux's default
# (runtime/src/limits.rs); as root the script raises it for the run and sets it back after.
#
#   bench/suite.sh                        # 64 connections, 2 s warm-up, 10 s each
#   CONNECTIONS=128 DURATION=20 USERS=20000 bench/suite.sh
#   BINARY=/tmp/old/revenant bench/suite.sh   # another build's server (A/B), this load tester
#   CAP=default bench/suite.sh            # the server's default live-worker cap (evictions)
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${CONNECTIONS:-64}
USERS=${USERS:-10000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
BINARY=${BINARY:-target/release/revenant}
began=$(date +%s)

# wrk and python3 (the verifier) from Debian if missing.
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (Debian packages)" >&2
  apt-get install -y "${missing[@]}" >/dev/null
fi

rustup target add wasm32-wasip2 >/dev/null 2>&1
cargo build --locked -q -p user-activity --target wasm32-wasip2 --profile guest
cargo build --locked -q --release -p revenant-cli -p revenant-bench

work=$(mktemp -d)
pids=()
old_map_count=$(cat /proc/sys/vm/max_map_count)
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ "$(cat /proc/sys/vm/max_map_count)" != "$old_map_count" ]; then
    sysctl -qw vm.max_map_count="$old_map_count" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

cap=$((USERS + 2000))
# 8 mappings per live worker covers both this build's pool (6 per slot, for the cap and the
# 1,026 slots beyond it: runtime/src/limits.rs) and builds from before it (8 per worker), for A/B.
need=$((cap * 8 + 2000))
if [ "${CAP:-}" = default ]; then
  # The server's own default cap (and builds from before the cap followed the sysctl).
  cap=""
elif [ "$old_map_count" -lt "$need" ]; then
  if sysctl -qw vm.max_map_count="$need" 2>/dev/null; then
    echo "vm.max_map_count raised from $old_map_count to $need for the run" >&2
  else
    cap=""
    echo "cannot raise vm.max_map_count (not root?): the durable runs include evictions" >&2
  fi
fi
sed -e "s|\.\./\.\./target|$PWD/target|" examples/user-activity/revenant.yaml >"$work/revenant.yaml"
if [ -n "$cap" ]; then
  sed -i "s|^routes:|limits:\n  active_workers_max: $cap\nroutes:|" "$work/revenant.yaml"
fi

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

serve() {
  start "$1" env REVENANT_LOG=warn "$BINARY" serve --config "$work/revenant.yaml" \
    --data "$work/$1" --listen 127.0.0.1:0
}

# wrk_run NAME CONNECTIONS SCRIPT [ENV...]: a warm-up, then the measured run; its WRK line goes
# to $work/results. The script's SENT files are $work/NAME.warm.sent and $work/NAME.sent.
wrk_run() {
  local name=$1 conns=$2 script=$3; shift 3
  local threads=2
  if [ "$conns" -lt 2 ]; then threads=1; fi
  # The warm-up calls the same workers (so that they are live when measured); the verifier
  # counts its calls too.
  env "$@" PREFIX="$name" NAME=warm SENT="$work/$name.warm.sent" \
    wrk -t$threads -c"$conns" -d"${WARMUP}s" --timeout 10s -s "$script" "$url" >/dev/null
  env "$@" PREFIX="$name" NAME="$name" SENT="$work/$name.sent" \
    wrk -t$threads -c"$conns" -d"${DURATION}s" --timeout 10s -s "$script" "$url" | tee "$work/$name.wrk" | grep '^WRK'
  grep '^WRK' "$work/$name.wrk" >>"$work/results"
}

# load NAME ARGS...: one `revenant loadtest` run; its RESULT line goes to $work/results.
load() {
  local name=$1; shift
  if ! target/release/revenant loadtest --quiet --name "$name" --warmup-secs "$WARMUP" \
    --duration-secs "$DURATION" "$@" >"$work/$name.txt"; then
    cat "$work/$name.txt"; echo "loadtest $name failed" >&2; exit 1
  fi
  grep -E '^(RESULT|verif)' "$work/$name.txt" || true
  grep '^RESULT' "$work/$name.txt" >>"$work/results"
}

add='{"kind":"bench","detail":"{tag}"}'
verify() { python3 bench/wrk/verify.py "$url" "$work/$1.warm.sent" "$work/$1.sent"; }

fsync=$(target/release/fsync-bench --dir "$work")
echo "$fsync"

start hello target/release/hello-server --listen 127.0.0.1:0
wrk_run a-hello-world "$CONNECTIONS" bench/wrk/report.lua
load a-hello-world --url "$url" --path / --users "$USERS" --connections "$CONNECTIONS"
kill "$pid"

serve b
wrk_run b-non-durable-route "$CONNECTIONS" bench/wrk/activity.lua USERS=1 PREVIEW=1
load b-non-durable-route --url "$url" --method POST --path /preview/activities --body "$add" \
  --users "$USERS" --connections "$CONNECTIONS"
kill "$pid"

serve c
wrk_run c-durable-closed "$CONNECTIONS" bench/wrk/activity.lua USERS="$USERS"
verify c-durable-closed
load c-durable-closed --url "$url" --method POST --path '/user/{user}/activities' --body "$add" \
  --users "$USERS" --user-prefix lc --connections "$CONNECTIONS" --verify-count '/user/{user}/count'
kill "$pid"

# A fresh server, so that its live workers are these users only; the warm-up creates them.
serve d
# 70 % of what this generator reached in the closed model: wrk's rate is out of reach for a
# generator that shares the two cores with the server (an open-model run at it only queues).
rate=$(awk '$1 == "RESULT" && $2 == "c-durable-closed" { printf "%d", $3 * 0.7 }' "$work/results")
WARMUP=$((WARMUP + 3)) load d-durable-open-70pct --url "$url" --method POST \
  --path '/user/{user}/activities' --body "$add" --users "$USERS" --user-prefix ld --rate "$rate" \
  --verify-count '/user/{user}/count'
kill "$pid"

serve e
wrk_run e-hot-worker 1 bench/wrk/activity.lua USERS=1
verify e-hot-worker
load e-hot-worker --url "$url" --method POST --path '/user/{user}/activities' --body "$add" \
  --users 1 --user-prefix le --connections 1 --verify-count '/user/{user}/count'
kill "$pid"

echo
echo "| run | generator | model | ok req/s | p50 ms | p99 ms | max ms | errors | × hello (same generator) |"
echo "|---|---|---|---|---|---|---|---|---|"
awk -v c="$CONNECTIONS" '
  $1 == "WRK" { gen = "wrk"; rps = $3; p50 = $4; p99 = $5; max = $6; err = $7 + $8; model = "closed" }
  $1 == "RESULT" { gen = "loadtest"; rps = $3; p50 = $4; p99 = $5; max = "-"; err = $6;
                   model = ($2 ~ /open/) ? "open, " $7 "/s offered, " $8 " late" : "closed" }
  { if ($2 ~ /^a-/) hello[gen] = rps
    conns = ($2 ~ /^e-/) ? 1 : c
    if (model == "closed") model = "closed, " conns " conn"
    ratio = (hello[gen] > 0) ? sprintf("%.3f", rps / hello[gen]) : "-"
    printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $2, gen, model, rps, p50, p99, max, err, ratio }
' "$work/results"
read -r _ p50 p99 n <<<"$fsync"
echo
echo "fsync (4 KiB + fdatasync, $n times, this disk): p50 $p50 ms, p99 $p99 ms"
echo "machine: $(nproc) cores, $(uname -r); users $USERS, live-worker cap ${cap:-default}; ${DURATION}s measured after ${WARMUP}s; $(( $(date +%s) - began ))s in all"

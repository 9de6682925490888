#!/usr/bin/env bash
# Recovery costs.
# 1. recovery-bench: time to first answer after restart for a worker with long history (with
#    and without snapshots), and memory with many workers and a cap on those in memory. Extra
#    arguments go to it (e.g. --history 20000 --workers 10000 --cap 1000).
# 2. bench/restart.py: the server killed with SIGKILL under load (wrk, 1,000 users), then
#    started again on the same data: time from exec to the first answered durable call, five
#    rounds. BINARY=path measures another build's server (A/B); RESTART_ROUNDS, LOAD_SECS.
set -euo pipefail
cd "$(dirname "$0")/.."
BINARY=${BINARY:-target/release/revenant}
command -v wrk >/dev/null && command -v python3 >/dev/null || apt-get install -y wrk python3 >/dev/null
rustup target add wasm32-wasip2 >/dev/null 2>&1
cargo build --locked -q -p user-activity --target wasm32-wasip2 --profile guest
cargo build --locked -q --release -p revenant-bench --bin recovery-bench -p revenant-cli
target/release/recovery-bench "$@"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed -e "s|\.\./\.\./target|$PWD/target|" examples/user-activity/revenant.yaml >"$work/revenant.yaml"
python3 bench/restart.py "$BINARY" "$work/revenant.yaml" "$work/data" \
  --rounds "${RESTART_ROUNDS:-5}" --load-secs "${LOAD_SECS:-20}"

#!/usr/bin/env bash
# Recovery costs: time to first answer after restart for a worker with long history (with and
# without snapshots), and memory with many workers and a cap on those in memory.
# Extra arguments go to recovery-bench (e.g. --history 20000 --workers 10000 --cap 1000).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >/dev/null 2>&1
cargo build --locked -q -p user-activity --target wasm32-wasip2 --profile guest
cargo build --locked -q --release -p revenant-bench --bin recovery-bench
exec target/release/recovery-bench "$@"

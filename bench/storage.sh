#!/usr/bin/env bash
# Storage benchmarks of the embedded store: durable appends with 1, 64 and 1,024 concurrent
# writers, and replay read throughput. Extra arguments go to storage-bench (e.g. --seconds 10).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked -q --release -p revenant-bench --bin storage-bench
exec target/release/storage-bench "$@"

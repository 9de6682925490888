#!/usr/bin/env bash
# The demo: builds the example component and the release binary, then serves the demo routes
# on the embedded store (examples/user-activity/data). Extra arguments go to `revenant serve`,
# e.g. `scripts/demo.sh --listen 127.0.0.1:9090`.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2
cargo build --locked -p user-activity --target wasm32-wasip2 --profile guest
cargo build --locked --release -p revenant-cli
exec target/release/revenant serve --config examples/user-activity/revenant.yaml "$@"

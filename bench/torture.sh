#!/usr/bin/env bash
# Crash torture, longer than CI's 20 kills: the per-user counter through the real server at a
# fixed rate, SIGKILLed at random moments KILLS times (default 100) and restarted, clients
# retrying with idempotency keys; then every acknowledged increment is checked (cli/tests/
# torture.rs). Prints `TORTURE kills=... calls=... recovery_p50_ms=... recovery_p99_ms=...`.
# Needs the example component (scripts/test.sh or scripts/demo.sh builds it).
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS=${KILLS:-100}
REVENANT_TORTURE_KILLS=$KILLS cargo test --locked -q -p revenant-cli --test torture -- --nocapture 2>&1 |
  grep -E "TORTURE|test result|panicked|assert"

#!/usr/bin/env bash
# Runs every fuzz target (fuzz/: cargo-fuzz and libFuzzer, on a nightly toolchain) for SECONDS
# each, one after another: 20 by default, the smoke run scripts/test.sh makes in CI; give 600
# or more for a real run. Each starts from its committed seeds (fuzz/corpus/<target>, read
# only); what it finds new goes to target/fuzz-corpus/<target>, and a crash, with the input
# that caused it, to fuzz/libfuzzer/artifacts/<target> (a crash fails the script).
#   scripts/fuzz.sh            # 20 s each
#   scripts/fuzz.sh 600 jwt    # one target for 10 minutes
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
only=${2:-}

# A nightly toolchain (libFuzzer's coverage instrumentation needs it) and cargo-fuzz, pinned,
# installed once into target/tools.
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
if [ ! -x target/tools/cargo-fuzz/bin/cargo-fuzz ]; then
  cargo install --locked --root target/tools/cargo-fuzz cargo-fuzz --version 0.13.1
fi
export PATH="$PWD/target/tools/cargo-fuzz/bin:$PATH"

# No sanitizer: the targets are safe Rust; what is looked for is panics, failed checks,
# endless loops and stack or memory exhaustion, which libFuzzer reports by itself. Debug
# assertions (overflow checks included) stay on.
flags=(--sanitizer none --release --debug-assertions --fuzz-dir fuzz/libfuzzer)
targets=$(cd fuzz/libfuzzer && ls fuzz_targets | sed 's/\.rs$//')
[ -n "$only" ] && targets=$only
for t in $targets; do cargo +nightly fuzz build "${flags[@]}" "$t"; done
for t in $targets; do
  mkdir -p "target/fuzz-corpus/$t"
  echo "fuzzing $t for ${seconds}s"
  cargo +nightly fuzz run "${flags[@]}" "$t" "target/fuzz-corpus/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=65536 -print_final_stats=1 \
    2>&1 | grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)|ERROR|panicked|SUMMARY|Test unit written' || true
  # libFuzzer leaves the input of a crash under fuzz/libfuzzer/artifacts.
  if compgen -G "fuzz/libfuzzer/artifacts/$t/*" >/dev/null; then
    echo "fuzz target $t found a crash: fuzz/libfuzzer/artifacts/$t" >&2
    exit 1
  fi
done

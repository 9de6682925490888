#!/usr/bin/env bash
# The one test command (README.md, and .ci/run calls exactly this). On a fresh Debian machine
# with only the Rust toolchain it installs what the tests need, builds the example component,
# then runs format, lint and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2
rustup component add rustfmt clippy
# Formatting first: it needs no build, so a misformatted tree fails in seconds.
cargo fmt --all -- --check

# Debian packages: libclang for the FoundationDB bindings (cargo feature `foundationdb`, linted
# with --all-features, runs bindgen at build time); Python with venv for the OpenAPI validator;
# Chromium for the load-test report; PostgreSQL for its backend's tests.
missing=()
dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
python3 -m venv --help >/dev/null 2>&1 || missing+=(python3 python3-venv)
# Headless Chromium opens the load tester's HTML report (loadtest/tests/report_in_chromium.rs),
# and, driven through chromedriver, the admin console (cli/tests/console.rs).
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
# PostgreSQL's server programs: the tests start private servers of their own (initdb, pg_ctl,
# as the postgres user when run as root) for the PostgreSQL backend's conformance suite.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
fi

# openapi-spec-validator (PyPI), which checks the generated OpenAPI document against the
# OpenAPI 3.1 schema in cli/tests/openapi.rs. Pinned; installed once into target/tools.
validator=target/tools/openapi/bin/openapi-spec-validator
if [ ! -x "$validator" ]; then
  python3 -m venv target/tools/openapi
  target/tools/openapi/bin/pip install -q --disable-pip-version-check openapi-spec-validator==0.9.0
fi

# The example components that the runtime, gateway and end-to-end tests run.
cargo build --locked -p user-activity -p stress --target wasm32-wasip2 --profile guest
# A changed version of user-activity, for the divergence test (its own target folder, so it does
# not replace the demo's component).
cargo build --locked -p user-activity --features diverge --target wasm32-wasip2 --profile guest \
  --target-dir target/variants
# A compatible new version (one more export), for the deploy test (its own target folder too).
cargo build --locked -p user-activity --features v2 --target wasm32-wasip2 --profile guest \
  --target-dir target/variants-v2

# A server build that loses updates on purpose (cargo feature `fault-injection`), for the load
# tester's verification test; copied aside so the normal build can take its place.
cargo build --locked -p revenant-cli --features fault-injection
mkdir -p target/faulty
cp target/debug/revenant target/faulty/revenant

# --all-features lints the FoundationDB backend too (storage's `foundationdb` feature): it
# compiles without the C client. (A second pass on storage alone re-checked its dependencies
# with other features for 2.5 minutes and linted nothing more.)
cargo clippy --locked --all-targets --all-features -- -D warnings
cargo test --locked

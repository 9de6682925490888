# Sourced by the bench scripts that run `revenant serve` (not run on its own). It builds the
# demo component and this build's server (whose load tester the scripts use), makes $work
# (removed at exit, the server still running ended by its PID), and defines:
#   serve NAME CONFIG [ARGS...]
#                       starts "$BINARY" (default: this build) on a fresh data folder
#                       $work/NAME, more serve ARGS after, waits (bounded) until it listens;
#                       sets $url, $pid, and $admin (the admin API's URL, if it listens)
#   stop                ends the server started last
#   journal_bytes NAME  bytes written so far to the embedded store's journal of $work/NAME
BINARY=${BINARY:-target/release/revenant}

rustup target add wasm32-wasip2 >/dev/null 2>&1
cargo build --locked -q -p user-activity --target wasm32-wasip2 --profile guest
cargo build --locked -q --release -p revenant-cli

work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

serve() {
  local name=$1 config=$2
  shift 2
  REVENANT_LOG=warn "$BINARY" serve --config "$config" --data "$work/$name" \
    --listen 127.0.0.1:0 "$@" >"$work/$name.out" 2>"$work/$name.err" &
  pid=$!
  url=""
  for _ in $(seq 600); do
    url=$(sed -n 's/^revenant listening on //p' "$work/$name.out" | head -1)
    if [ -n "$url" ]; then
      admin=$(sed -n 's/^revenant admin listening on \([^;]*\);.*/\1/p' "$work/$name.out" | head -1)
      return
    fi
    sleep 0.1
  done
  echo "server did not start: $(cat "$work/$name.err")" >&2
  exit 1
}

stop() {
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
}

# fjall preallocates its journal with zeros: what is written ends at the last non-zero byte.
journal_bytes() {
  python3 -c 'import sys; print(sum(len(open(f, "rb").read().rstrip(b"\0")) for f in sys.argv[1:]))' \
    "$work/$1"/store/*.jnl
}

#!/usr/bin/env bash
# Several nodes on one shared PostgreSQL, on this machine (load generator included):
#   (a) durable add-activity through 1 node on PostgreSQL, closed model, every user verified
#   (b) the same through 3 nodes (the load tester's URLs in turn: two calls in three are
#       forwarded), every user verified
#   (c) forwarding: durable add-activity for 8 users whose shards one node holds, sent to that
#       node, then the same sent to another node (every call forwarded)
#   (d) failover: under load on 3 nodes, one is SIGKILLed; the time until a worker it held
#       answers through another node
# PostgreSQL runs privately (initdb in a temporary folder, as the `postgres` user when run as
# root) with its default durability (fsync on): a call is acknowledged once its commit is on disk.
#
#   bench/cluster.sh
#   CONNECTIONS=128 DURATION=20 LEASE_MS=2000 bench/cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${CONNECTIONS:-64}
USERS=${USERS:-2000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
LEASE_MS=${LEASE_MS:-5000}
SECRET=bench-cluster-secret-0123456789

rustup target add wasm32-wasip2 >/dev/null 2>&1
cargo build --locked -q -p user-activity --target wasm32-wasip2 --profile guest
cargo build --locked -q --release -p revenant-cli
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
[ -x "$pg_bin/initdb" ] || { echo "PostgreSQL is not installed (apt-get install -y postgresql)" >&2; exit 1; }

work=$(mktemp -d)
chmod 755 "$work"
pids=()
pg_up=""
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$pg_up" ]; then as_pg "$pg_bin/pg_ctl" -D "$work/pg/data" -m immediate -w stop >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A fresh database per run: the nodes of one run share it.
pg_port=$(free_port)
mkdir -p "$work/pg"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$work/pg"
as_pg "$pg_bin/initdb" -D "$work/pg/data" -U postgres --auth=trust >/dev/null
as_pg "$pg_bin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w \
  -o "-p $pg_port -c listen_addresses=127.0.0.1 -k $work/pg -c max_connections=200" start >/dev/null
pg_up=1
database() {
  as_pg "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -qc "CREATE DATABASE $1" >/dev/null
  store="postgres://postgres@127.0.0.1:$pg_port/$1"
}

config="$work/revenant.yaml"
component=$(pwd)/target/wasm32-wasip2/guest/user_activity.wasm
sed "s#../../target/wasm32-wasip2/guest/user_activity.wasm#$component#" \
  examples/user-activity/revenant.yaml >"$config.routes"
printf 'cluster:\n  lease_ms: %s\n' "$LEASE_MS" | cat - "$config.routes" >"$config"

# node NAME: starts a node on $store; sets $url, $admin, $pid.
node() {
  local name=$1 out="$work/$1.out"
  REVENANT_LOG=warn REVENANT_CLUSTER_SECRET=$SECRET target/release/revenant serve --config "$config" \
    --data "$work/$name" --store "$store" --node-id "$name" --listen 127.0.0.1:0 \
    --cluster-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 >"$out" 2>"$out.err" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 600); do
    url=$(sed -n 's/^revenant listening on //p' "$out" | head -1)
    admin=$(sed -n 's/^revenant admin listening on \([^;]*\);.*/\1/p' "$out" | head -1)
    if [ -n "$url" ] && [ -n "$admin" ]; then return; fi
    sleep 0.1
  done
  echo "node $name did not start: $(cat "$out.err")" >&2; exit 1
}

# holders ADMIN DATA: the cluster's leases as `shard holder` lines.
holders() {
  curl -s -H "Authorization: Bearer $(cat "$2/admin.token")" "$1/cluster" |
    python3 -c 'import json,sys; [print(l["shard"], l["holder"]) for l in json.load(sys.stdin)["leases"]]'
}

# settled ADMIN DATA N: waits until N nodes hold every shard.
settled() {
  for _ in $(seq 600); do
    if [ "$(holders "$1" "$2" | awk '$2 != "" {print $2}' | sort -u | wc -l)" = "$3" ] &&
       ! holders "$1" "$2" | awk '{print $2}' | grep -qx ''; then return; fi
    sleep 0.1
  done
  echo "the cluster did not settle" >&2; exit 1
}

# users_on ADMIN DATA NODE COUNT [FROM]: a user-key prefix (the first from FROM on) whose users
# 0..COUNT-1 all live on NODE's shards (storage/src/layout/shard.rs, computed here independently).
users_on() {
  holders "$1" "$2" | python3 -c '
import hashlib, sys
node, count = sys.argv[1], int(sys.argv[2])
leases = dict(l.split(" ", 1) if " " in l.strip() else (l.strip(), "") for l in sys.stdin.read().splitlines())
mine = {int(s) for s, h in leases.items() if h.strip() == node}
shards = len(leases)
def pack(*strings):
    return b"".join(b"\x02" + s.encode().replace(b"\x00", b"\x00\xff") + b"\x00" for s in strings)
def shard(name):
    return int.from_bytes(hashlib.sha256(pack("user-activity", name)).digest()[:8], "big") % shards
for p in range(int(sys.argv[3]), 10_000_000):
    prefix = f"f{p}x"
    if all(shard(f"user-{prefix}{i}") in mine for i in range(count)):
        print(prefix); break
' "$3" "$4" "${5:-0}"
}

results="$work/results"
load() {
  local name=$1; shift
  target/release/revenant loadtest --quiet --name "$name" --warmup-secs "$WARMUP" \
    --duration-secs "$DURATION" "$@" | tee "$work/$name.txt"
  grep '^RESULT' "$work/$name.txt" >>"$results"
}
add='{"kind":"bench","detail":"{tag}"}'

# (a) one node
database one
node n1
load a-1-node --url "$url" --method POST --path '/user/{user}/activities' --body "$add" \
  --users "$USERS" --user-prefix a --connections "$CONNECTIONS" --verify-count '/user/{user}/count'
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

# (b) three nodes on a fresh database
database three
node n1; url1=$url; admin1=$admin
node n2; url2=$url
node n3; url3=$url; pid3=$pid
settled "$admin1" "$work/n1" 3
load b-3-nodes --url "$url1,$url2,$url3" --method POST --path '/user/{user}/activities' --body "$add" \
  --users "$USERS" --user-prefix b --connections "$CONNECTIONS" --verify-count '/user/{user}/count'

# (c) forwarding: 8 users held by n1, sent to n1 and then to n2
prefix=$(users_on "$admin1" "$work/n1" n1 8)
load c-holder --url "$url1" --method POST --path '/user/{user}/activities' --body "$add" \
  --users 8 --user-prefix "$prefix" --connections 8 --verify-count '/user/{user}/count'
other=$(users_on "$admin1" "$work/n1" n1 8 $(( ${prefix//[!0-9]/} + 1 )))
load c-forwarded --url "$url2" --method POST --path '/user/{user}/activities' --body "$add" \
  --users 8 --user-prefix "$other" --connections 8 --verify-count '/user/{user}/count'

# (d) failover: load through n1 and n2 while n3 is SIGKILLed; a worker of n3's answers through
# n1 after this long
victim_user="$(users_on "$admin1" "$work/n1" n3 1)0"
curl -sf -X POST -H 'content-type: application/json' -d '{"kind":"k","detail":"d"}' \
  "$url3/user/$victim_user/activities" >/dev/null
target/release/revenant loadtest --quiet --name d-load --warmup-secs 0 --duration-secs $((DURATION + 5)) \
  --url "$url1,$url2" --method POST --path '/user/{user}/activities' --body "$add" --users "$USERS" \
  --user-prefix d --connections "$CONNECTIONS" --verify-count '/user/{user}/count' >"$work/d.txt" &
loader=$!
sleep 3
failover=$(python3 - "$pid3" "$url1/user/$victim_user/activities" <<'EOF'
import os, signal, sys, time, urllib.request
pid, url = int(sys.argv[1]), sys.argv[2]
t0 = time.monotonic()
os.kill(pid, signal.SIGKILL)
while True:
    request = urllib.request.Request(url, data=b'{"kind":"k","detail":"failover"}',
        headers={"content-type": "application/json", "idempotency-key": "failover-probe"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            if r.status == 200:
                break
    except Exception:
        time.sleep(0.01)
print(int((time.monotonic() - t0) * 1000))
EOF
)
wait "$loader" || { cat "$work/d.txt"; echo "the load during the failover failed verification" >&2; exit 1; }
grep '^RESULT' "$work/d.txt" >>"$results"

echo
echo "run            calls/s   p50 ms   p99 ms   errors"
awk '{printf "%-14s %8.0f %8.2f %8.2f %8d\n", $2, $3, $4, $5, $6}' "$results"
echo "failover (lease $LEASE_MS ms): a worker of the killed node answered through another after $failover ms"

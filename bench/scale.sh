#!/usr/bin/env bash
# Scale: WORKERS (1,000,000) workers known on disk, made by a load run, and LIVE (100,000) of
# them held in memory by one server with the demo component (live-worker cap LIVE).
#   1. live: the load tester calls each of users u0..u(LIVE-1) once (`--sequential
#      --iterations`), then verifies each user's count. Resident memory and memory mappings
#      before and after give the cost of one live idle worker.
#   2. known: it calls each of the next WORKERS - LIVE users once, the cap evicting the least
#      recently used as it goes, then verifies every one of them, which activates each evicted
#      worker again from its log: eviction must not show in any answer.
#   3. the admin API lists the component's workers, page by page: WORKERS of them.
#   4. activation: one connection reads ACTIVATIONS evicted workers (each rebuilt from its log,
#      and another evicted to make room), then as many live ones, for the latency of each.
#   5. restart: SIGKILL under load, then exec to the first answer, with WORKERS on disk.
# Each load run's per-user verification must pass (0 lost, 0 duplicated) or the script fails.
#
# LIVE workers need (LIVE + 1,026) * 6 + 2,000 memory mappings (the instance pool's slots:
# runtime/src/limits.rs); the script asks for LIVE * 8 + 2,000, which also covers builds from
# before the pool (8 per worker). As root it raises vm.max_map_count for the run and sets it
# back after.
#
#   bench/scale.sh                             # 1,000,000 known, 100,000 live: ~10 minutes
#   WORKERS=200000 LIVE=50000 bench/scale.sh   # smaller
set -euo pipefail
cd "$(dirname "$0")/.."

WORKERS=${WORKERS:-1000000}
LIVE=${LIVE:-100000}
CONNECTIONS=${CONNECTIONS:-64}
ACTIVATIONS=${ACTIVATIONS:-2000}
began=$(date +%s)
if [ "$LIVE" -ge "$WORKERS" ]; then echo "LIVE must be below WORKERS" >&2; exit 2; fi

source bench/common.sh
command -v python3 >/dev/null || apt-get install -y python3 >/dev/null

old_map_count=$(cat /proc/sys/vm/max_map_count)
need=$((LIVE * 8 + 2000))
restore() {
  if [ "$(cat /proc/sys/vm/max_map_count)" != "$old_map_count" ]; then
    sysctl -qw vm.max_map_count="$old_map_count" || true
  fi
  cleanup
}
trap restore EXIT
if [ "$old_map_count" -lt "$need" ]; then
  if ! sysctl -qw vm.max_map_count="$need"; then
    echo "LIVE=$LIVE needs vm.max_map_count >= $need (it is $old_map_count); run as root" >&2
    exit 1
  fi
  echo "vm.max_map_count raised from $old_map_count to $need for the run" >&2
fi

sed -e "s|\.\./\.\./target|$PWD/target|" -e "s|^routes:|limits:\n  active_workers_max: $LIVE\nroutes:|" \
  examples/user-activity/revenant.yaml >"$work/revenant.yaml"

# VmRSS in KiB and the number of mappings of the server.
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$pid/status"; }
maps() { wc -l <"/proc/$pid/maps"; }

# load NAME ARGS...: one `revenant loadtest` run that must pass its verification; prints its
# RESULT line (name, ok/s, p50, p99, errors, ...) and verification line.
load() {
  local name=$1; shift
  if ! target/release/revenant loadtest --quiet --name "$name" --warmup-secs 0 "$@" \
    >"$work/$name.txt"; then
    cat "$work/$name.txt"; echo "loadtest $name failed" >&2; exit 1
  fi
  grep -E '^(RESULT|verif)' "$work/$name.txt"
}
add='{"kind":"scale","detail":"{tag}"}'
long=3000 # seconds: the runs end with their iterations

serve store "$work/revenant.yaml" --admin-listen 127.0.0.1:0

map_count=$(cat /proc/sys/vm/max_map_count)
rss0=$(rss); maps0=$(maps)
echo "started: RSS $((rss0 / 1024)) MiB, $maps0 mappings"

echo "1. $LIVE workers, each called once, all live"
load 1-live --url "$url" --method POST --path '/user/{user}/activities' --body "$add" \
  --user-prefix u --users "$LIVE" --sequential --iterations "$LIVE" \
  --connections "$CONNECTIONS" --duration-secs "$long" --verify-count '/user/{user}/count'
rss1=$(rss); maps1=$(maps)
echo "   RSS $((rss1 / 1024)) MiB, $maps1 mappings"

echo "2. $((WORKERS - LIVE)) more workers, each called once, evicting the least recently used"
load 2-known --url "$url" --method POST --path '/user/{user}/activities' --body "$add" \
  --user-prefix u --first-user "$LIVE" --users "$((WORKERS - LIVE))" --sequential \
  --iterations "$((WORKERS - LIVE))" --connections "$CONNECTIONS" --duration-secs "$long" \
  --verify-count '/user/{user}/count'
rss2=$(rss); maps2=$(maps)
echo "   RSS $((rss2 / 1024)) MiB, $maps2 mappings"

echo "3. workers the admin API lists"
known=$(python3 - "$admin" "$work/store/admin.token" <<'EOF'
import json, sys, urllib.parse, urllib.request
admin, token = sys.argv[1], open(sys.argv[2]).read().strip()
count, after = 0, None
while True:
    q = {"limit": "1000"} | ({"after": after} if after else {})
    req = urllib.request.Request(f"{admin}/workers/user-activity?{urllib.parse.urlencode(q)}",
                                 headers={"Authorization": f"Bearer {token}"})
    page = json.load(urllib.request.urlopen(req))
    if not page:
        break
    count += len(page)
    after = page[-1]["name"]
print(count)
EOF
)
echo "   $known workers known"
[ "$known" -ge "$WORKERS" ] || { echo "expected $WORKERS workers listed" >&2; exit 1; }

echo "4. activation: $ACTIVATIONS evicted workers read on one connection, then $ACTIVATIONS live ones"
load 4-evicted --url "$url" --path '/user/{user}/count' --user-prefix u --users "$ACTIVATIONS" \
  --sequential --iterations "$ACTIVATIONS" --connections 1 --duration-secs "$long"
load 4-live --url "$url" --path '/user/{user}/count' --user-prefix u \
  --first-user "$((WORKERS - ACTIVATIONS))" --users "$ACTIVATIONS" --sequential \
  --iterations "$ACTIVATIONS" --connections 1 --duration-secs "$long"

echo "5. restart after kill -9 under load (5 s of wrk) with $known workers on disk"
stop
disk=$(du -sm "$work/store" | cut -f1)
command -v wrk >/dev/null || apt-get install -y wrk >/dev/null
restart=$(python3 bench/restart.py "$BINARY" "$work/revenant.yaml" "$work/store" --rounds 1 \
  --load-secs 5 | awk '$1 == "RESTART" { print $2 }')
echo "   first answer ${restart} ms after exec"

per_worker=$(( (rss1 - rss0) * 1024 / LIVE ))
echo
echo "| measure | value |"
echo "|---|---|"
echo "| workers known on disk (admin list) | $known ($disk MiB store) |"
echo "| live-worker cap | $LIVE (needs vm.max_map_count >= $need, 8 mappings per live worker; it was $map_count) |"
echo "| RSS at start / $LIVE live / after $WORKERS | $((rss0 / 1024)) / $((rss1 / 1024)) / $((rss2 / 1024)) MiB |"
echo "| RSS per live idle worker | $((per_worker / 1024)) KiB ($per_worker bytes) |"
echo "| mappings per live worker | $(python3 -c "print(round(($maps1 - $maps0) / $LIVE, 2))") |"
awk '$1 == "RESULT" { printf "| %s: ok/s, p50, p99 ms | %s, %s, %s |\n", $2, $3, $4, $5 }' \
  "$work"/1-live.txt "$work"/2-known.txt "$work"/4-evicted.txt "$work"/4-live.txt
echo "| restart after kill -9, exec to first answer | $restart ms |"
echo "machine: $(nproc) cores, $(uname -r); $(( $(date +%s) - began ))s in all"

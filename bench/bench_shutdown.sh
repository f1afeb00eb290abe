#!/usr/bin/env bash
# bench_shutdown.sh: how long gencached takes to stop (SIGTERM to exit) when its memory holds N
# write-back entries that no disk copy has yet, so that the close writes them all to disk.
# PUTs N entries of SIZE bytes into the image_latent layer (write-back) over one keep-alive
# connection, sends SIGTERM, times until the process has exited, then restarts the daemon on the
# same data directory and checks that the disk tier holds all N entries.
# With BASE_GENCACHED set (another build of gencached, e.g. one before group commits), the same
# run times it too, in the same layout, and prints the ratio.
#
# usage: bench/bench_shutdown.sh [BUILD_DIR]     (default: build)
# environment: N (default 20000), SIZE (default 4096), ROUNDS (default 1), SERVER_CPUS (default
#   0), CLIENT_CPUS (default 1), BASE_GENCACHED (optional).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
N=${N:-20000}
SIZE=${SIZE:-4096}
ROUNDS=${ROUNDS:-1}
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
[ "$(nproc)" -ge 2 ] || CLIENT_CPUS=0

tmp=$(mktemp -d /tmp/bench-shutdown.XXXXXX)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

# Starts $1 on $tmp/data; sets pid and base.
start() {
    : >"$tmp/log"
    taskset -c "$SERVER_CPUS" "$1" --listen 127.0.0.1:0 --data-dir "$tmp/data" --max-memory 2G \
        --log-level info >"$tmp/log" 2>&1 &
    pid=$!
    local port=
    for _ in $(seq 200); do
        port=$(sed -n 's/.*(port \([0-9]*\)).*/\1/p' "$tmp/log" 2>/dev/null | head -1 || true)
        [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
        port=
        sleep 0.1
    done
    [ -n "$port" ] || { echo "bench_shutdown: $1 did not start" >&2; cat "$tmp/log" >&2; exit 1; }
    base=127.0.0.1:$port
}

# Seconds from SIGTERM to the exit of a daemon holding N fresh write-back entries.
one_round() {
    rm -rf "$tmp/data"
    start "$1"
    taskset -c "$CLIENT_CPUS" /usr/bin/python3 - "$base" "$N" "$SIZE" <<'PY'
import http.client, os, sys
host, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
conn = http.client.HTTPConnection(host)
body = os.urandom(size)
for i in range(n):
    conn.request("PUT", "/v1/entries/image_latent/%064x" % i, body=body)
    r = conn.getresponse()
    r.read()
    if r.status // 100 != 2:
        sys.exit("PUT %d: %d" % (i, r.status))
PY
    local t0 t1
    t0=$(date +%s.%N)
    kill -TERM "$pid"
    wait "$pid" || true
    t1=$(date +%s.%N)
    pid=
    # Everything must be on disk after the stop.
    start "$1"
    local entries
    entries=$(curl -sf "http://$base/v1/stats" | /usr/bin/python3 -c '
import json, sys
s = json.load(sys.stdin)
print(s["tiers"].get("disk", {}).get("entries", 0))')
    kill -TERM "$pid"
    wait "$pid" || true
    pid=
    [ "$entries" -ge "$N" ] || { echo "bench_shutdown: only $entries of $N on disk" >&2; exit 1; }
    echo "$t0 $t1" | awk '{printf "%.2f\n", $2 - $1}'
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

echo "gencached stop with $N write-back entries of $SIZE bytes in memory; server CPUs $SERVER_CPUS," \
    "client CPUs $CLIENT_CPUS; medians of $ROUNDS; data on $tmp"
new=()
old=()
for _ in $(seq "$ROUNDS"); do
    [ -n "${BASE_GENCACHED:-}" ] && old+=("$(one_round "$BASE_GENCACHED")")
    new+=("$(one_round "$build/bin/gencached")")
done
m_new=$(printf '%s\n' "${new[@]}" | median)
echo "  $build/bin/gencached: SIGTERM to exit ${m_new} s"
if [ -n "${BASE_GENCACHED:-}" ]; then
    m_old=$(printf '%s\n' "${old[@]}" | median)
    echo "  $BASE_GENCACHED: SIGTERM to exit ${m_old} s"
    awk -v o="$m_old" -v n="$m_new" 'BEGIN {printf "  ratio: %.1fx faster\n", o / n}'
fi

#!/usr/bin/env bash
# bench_service.sh: gencached hits under load against redis-server GET of the same sizes, in the
# same run and the same CPU layout. wrk (16 connections, keep-alive) drives gencached:
#   - GET /v1/entries/result/<hex> of a 1.5 MiB entry and of a 4 KiB entry,
#   - POST /v1/generate hits on a 1.5 MiB result (the proxy path: parse, key, lookup);
# redis-benchmark (16 connections) drives redis-server GET of 1.5 MiB and 4 KiB values.
# Rounds alternate between the servers; the medians and the ratios are printed at the end.
#
# usage: bench/bench_service.sh [BUILD_DIR]     (default: build)
# environment: DURATION (s per wrk run, default 8), ROUNDS (default 3), CONNS (default 16),
#   SERVER_CPUS (default 0), CLIENT_CPUS (default 1; with 2+ CPUs the client never shares the
#   servers' CPU), N_BIG / N_SMALL (redis-benchmark requests per run, default 4000 / 200000).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
gencached=$build/bin/gencached
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-16}
N_BIG=${N_BIG:-4000}
N_SMALL=${N_SMALL:-200000}
BIG=1572864
SMALL=4096
ncpu=$(nproc)
if [ "$ncpu" -ge 2 ]; then
    SERVER_CPUS=${SERVER_CPUS:-0}
    CLIENT_CPUS=${CLIENT_CPUS:-1}
else
    SERVER_CPUS=${SERVER_CPUS:-0}
    CLIENT_CPUS=${CLIENT_CPUS:-0}
fi
server_threads=$(taskset -c "$SERVER_CPUS" nproc)

for tool in wrk redis-server redis-benchmark redis-cli curl taskset; do
    command -v "$tool" >/dev/null || { echo "bench_service: $tool is missing (scripts/deps.txt)" >&2; exit 2; }
done
[ -x "$gencached" ] || { echo "bench_service: no $gencached (build first)" >&2; exit 2; }

tmp=$(mktemp -d /tmp/bench-service.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---- servers ---------------------------------------------------------------------------------
rport=$(free_port)
taskset -c "$SERVER_CPUS" redis-server --port "$rport" --bind 127.0.0.1 --save '' \
    --appendonly no --proto-max-bulk-len 64mb --client-output-buffer-limit "normal 0 0 0" \
    >"$tmp/redis.log" 2>&1 &
pids+=($!)
taskset -c "$SERVER_CPUS" "$gencached" --listen 127.0.0.1:0 --data-dir "$tmp/data" \
    --threads "$server_threads" --max-memory 1G --log-level info >"$tmp/gencached.log" 2>&1 &
pids+=($!)
gport=
for _ in $(seq 100); do
    gport=$(sed -n 's/.*(port \([0-9]*\)).*/\1/p' "$tmp/gencached.log" 2>/dev/null | head -1 || true)
    [ -n "$gport" ] && curl -sf "http://127.0.0.1:$gport/healthz" >/dev/null 2>&1 && break
    gport=
    sleep 0.1
done
[ -n "$gport" ] || { echo "bench_service: gencached did not start" >&2; cat "$tmp/gencached.log" >&2; exit 1; }
for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done

base=http://127.0.0.1:$gport
head -c $BIG /dev/urandom >"$tmp/big"
head -c $SMALL /dev/urandom >"$tmp/small"
hex_big=$(printf big | sha256sum | cut -c1-64)
hex_small=$(printf small | sha256sum | cut -c1-64)
curl -sf -X PUT --data-binary @"$tmp/big" -H 'X-Gencache-Cost-Ms: 30000' \
    "$base/v1/entries/result/$hex_big" >/dev/null
curl -sf -X PUT --data-binary @"$tmp/small" "$base/v1/entries/result/$hex_small" >/dev/null
request='{"model":"bench","prompt":"a lighthouse at dusk","seed":1,"steps":30}'
gen_key=$(curl -sf -X POST --data-binary "$request" "$base/v1/keys" |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["keys"]["result"])')
curl -sf -X PUT --data-binary @"$tmp/big" -H 'X-Gencache-Cost-Ms: 30000' \
    "$base/v1/entries/$gen_key" >/dev/null
[ "$(curl -sf -o /dev/null -D - -X POST --data-binary "$request" "$base/v1/generate" |
    tr -d '\r' | sed -n 's/^X-Gencache: //Ip')" = hit ] || { echo "bench_service: generate is not a hit" >&2; exit 1; }
cat >"$tmp/generate.lua" <<EOF
wrk.method = "POST"
wrk.body = '$request'
wrk.headers["Content-Type"] = "application/json"
EOF

echo "CPUs: $ncpu; servers on CPU $SERVER_CPUS (gencached --threads $server_threads, redis-server)," \
    "clients on CPU $CLIENT_CPUS; $CONNS connections; $ROUNDS rounds of ${DURATION}s"
echo "taskset: gencached $(taskset -cp "${pids[1]}" | sed 's/.*: //'), redis-server" \
    "$(taskset -cp "${pids[0]}" | sed 's/.*: //'); load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- measuring -------------------------------------------------------------------------------
results=$tmp/results # lines: case ops/s MB/s p50_ms p99_ms

to_ms() { # "1.23ms" / "850.00us" / "1.02s" -> milliseconds
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0;
                   else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}

run_wrk() { # case size url [lua]
    local name=$1 size=$2 url=$3 lua=${4:-}
    local out
    out=$(taskset -c "$CLIENT_CPUS" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency \
        ${lua:+-s "$lua"} "$url")
    local rps p50 p99 errors
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
    errors=$(awk '/Non-2xx|Socket errors/ { print }' <<<"$out")
    [ -z "$errors" ] || { echo "bench_service: $name: $errors" >&2; exit 1; }
    echo "$name $rps $(awk -v r="$rps" -v s="$size" 'BEGIN { printf "%.1f", r * s / 1e6 }') $p50 $p99" >>"$results"
}

run_redis() { # case size file n
    local name=$1 size=$2 file=$3 n=$4
    redis-cli -p "$rport" -x set 'key:__rand_int__' <"$file" >/dev/null
    local line
    line=$(taskset -c "$CLIENT_CPUS" redis-benchmark -p "$rport" -c "$CONNS" -n "$n" -t get \
        --csv 2>/dev/null | grep '^"GET"')
    # "GET","rps","avg","min","p50","p95","p99","max" (milliseconds)
    local rps p50 p99
    rps=$(cut -d, -f2 <<<"$line" | tr -d '"')
    p50=$(cut -d, -f5 <<<"$line" | tr -d '"')
    p99=$(cut -d, -f7 <<<"$line" | tr -d '"')
    echo "$name $rps $(awk -v r="$rps" -v s="$size" 'BEGIN { printf "%.1f", r * s / 1e6 }') $p50 $p99" >>"$results"
}

for round in $(seq "$ROUNDS"); do
    echo "round $round/$ROUNDS ..." >&2
    run_wrk gencached_entry_1.5M $BIG "$base/v1/entries/result/$hex_big"
    run_redis redis_get_1.5M $BIG "$tmp/big" "$N_BIG"
    run_wrk gencached_generate_hit_1.5M $BIG "$base/v1/generate" "$tmp/generate.lua"
    run_wrk gencached_entry_4K $SMALL "$base/v1/entries/result/$hex_small"
    run_redis redis_get_4K $SMALL "$tmp/small" "$N_SMALL"
done

# ---- summary: medians per case, then the ratios ----------------------------------------------
median() { # case column
    awk -v c="$1" -v k="$2" '$1 == c { print $k }' "$results" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
printf '\n%-30s %12s %10s %10s %10s\n' case ops/s MB/s p50_ms p99_ms
for c in gencached_entry_1.5M gencached_generate_hit_1.5M redis_get_1.5M gencached_entry_4K redis_get_4K; do
    printf '%-30s %12s %10s %10s %10s\n' "$c" "$(median $c 2)" "$(median $c 3)" "$(median $c 4)" "$(median $c 5)"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
echo
echo "1.5 MiB entry GET   MB/s vs Redis: $(ratio "$(median gencached_entry_1.5M 3)" "$(median redis_get_1.5M 3)")x (goal >= 1.2x)"
echo "1.5 MiB generate hit MB/s vs Redis: $(ratio "$(median gencached_generate_hit_1.5M 3)" "$(median redis_get_1.5M 3)")x"
echo "4 KiB entry GET     ops/s vs Redis: $(ratio "$(median gencached_entry_4K 2)" "$(median redis_get_4K 2)")x (goal >= 0.5x)"

#!/bin/bash
# run_all.sh: every benchmark of bench/ in one go, each with a short setting, then one table of
# their headline figures: benchmark, figure, baseline, ratio, layout. `make bench` runs it.
#
# usage: bench/run_all.sh [BUILD_DIR]        (default: build; the programs are in BUILD_DIR/bench)
# environment: BENCH_TIMEOUT  seconds one benchmark may run (default 150)
#              BENCH_ONLY     an extended regex: run only the benchmarks whose name matches
#
# Each benchmark measures its own baseline in the same run (see docs/BENCHMARKS.md); this script
# only runs them and picks lines out of their output. A benchmark that exits non-zero or runs
# past BENCH_TIMEOUT shows FAIL and the others still run. Full outputs are kept in
# BUILD_DIR/bench-logs/NAME.log. The short settings make the figures noisier than the longer
# runs quoted in docs/BENCHMARKS.md.
#
# Adding a benchmark: one line in BENCHES (name|layout|command) and, to pick its figures, a
# function pick_NAME that reads its output and prints rows "figure<TAB>baseline<TAB>ratio".
# Without one, the lines of the output that carry a ratio (1.23x) are shown as they are.
set -u

BUILD=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
B=$BUILD/bench
PY=/usr/bin/python3
TIMEOUT=${BENCH_TIMEOUT:-150}
ONLY=${BENCH_ONLY:-}
LOGS=$BUILD/bench-logs
mkdir -p "$LOGS"

# name | layout | command (run from the repository root)
BENCHES=(
  "bench_mem|in-process, 1 and 2 threads|$B/bench_mem 5"
  "bench_key|in-process, 1 thread|$B/bench_key 5"
  "bench_image|in-process, 1 thread; Python reference in a child process|$B/bench_image 11"
  "bench_tensor|in-process, 1 thread|$B/bench_tensor 9"
  "bench_disk|in-process, files under /tmp|$B/bench_disk"
  "bench_redis|in-process client, redis-server on loopback (unpinned)|$B/bench_redis"
  "bench_writeback|in-process, disk tier under /tmp|$B/bench_writeback 3"
  "bench_daemon|servers on CPU 0, client on CPU 1 (taskset)|$B/bench_daemon --rounds 3"
  "bench_service|servers on CPU 0, wrk/redis-benchmark on CPU 1|env DURATION=2 ROUNDS=1 $HERE/bench_service.sh $BUILD"
  "bench_python|in-process (ctypes), redis-server on loopback|env PYTHONPATH=$ROOT/bindings/python GENCACHE_LIB=$BUILD/src/libgencache.so $PY $HERE/bench_python.py --rounds 3"
  "bench_key_jsonl|one CLI process vs Python in-process|$PY $HERE/bench_key_jsonl.py --bin $BUILD/bin --lines 5000 --rounds 2 --per-process 50"
  "trace_key_repeats|CLI over the real trace|$PY $HERE/trace_key_repeats.py --bin $BUILD/bin"
  "bench_generate_hung_redis|daemon + hung Redis listener, unpinned|env GENCACHE_BIN_DIR=$BUILD/bin DURATION_S=3 $PY $HERE/bench_generate_hung_redis.py"
  "bench_policy|CLI replay of the real trace, pinned to CPU 0|$PY $HERE/bench_policy.py $BUILD"
  "bench_cluster|redis-servers on CPU 0, client on CPU 1|$B/bench_cluster $ROOT/../shared/traces/sd-discord-dream-2.tsv"
  "bench_reuse|in-process, 1 thread, 200,000 stored images|$B/bench_reuse 200000 5000"
  "reuse_recall|daemon on loopback, Python client|env PYTHONPATH=$ROOT/bindings/python GENCACHE_LIB=$BUILD/src/libgencache.so $PY $HERE/reuse_recall.py --no-icons"
  "trace_any_seed|daemon on loopback, first 10,000 requests of the trace|env PYTHONPATH=$ROOT/bindings/python GENCACHE_LIB=$BUILD/src/libgencache.so $PY $HERE/trace_any_seed.py 10000"
  "bench_trajectory|in-process, 1 thread searching, 20,000 trace-proxy 768-d embeddings|$B/bench_trajectory 20000 50"
  "disk_flushes|in-process, files under /tmp, counted by strace|$HERE/disk_flushes.sh $BUILD"
  "bench_traj_restart|in-process, 1 thread, 20,000 stored 768-d checkpoints, disk tier under /tmp|$B/bench_traj_restart 20000 3 768"
  "bench_reuse_net|in-process, two caches on one redis-server on loopback (unpinned)|$B/bench_reuse_net 20000 100"
  "bench_ghost|in-process replay of the real trace, 1 thread|$B/bench_ghost $ROOT/../shared/traces/sd-discord-dream-2.tsv 7"
)

# --- pickers: output on stdin, rows "figure<TAB>baseline<TAB>ratio" on stdout -----------------

# The first number followed by x in a line ("ratio 13.6x (goal >= 20x)" -> 13.6x).
first_ratio() { grep -oE '[0-9]+(\.[0-9]+)?x' | head -1; }

# The first match of an extended regex in a string, in awk (mawk and gawk alike).
AWK_FIRST='function first(s, re) { return match(s, re) ? substr(s, RSTART, RLENGTH) : "" }'

pick_bench_mem() {
    awk -F': *' "$AWK_FIRST"'
        /^get .*hit \(zero-copy/ { sub(/^median /, "", $2); fig = $1 ": " $2 }
        /^memcpy .*baseline/ { sub(/^median /, "", $2); base = $2 }
        /^ratio memcpy\/get/ { print fig "\tmemcpy " base "\t" $2 " faster than a copy" }
        /^get hit, +[0-9]+ entries/ {
            n = $1; sub(/^get hit, +/, "", n)
            print "get hit, " n ": " first($2, "gencache +[0-9.]+ ns") "\t" \
                  first($2, "baseline +[0-9.]+ ns") " (minimal C cache)\t" first($2, "[0-9.]+x") }
        /^4 KB put\/get.*thread/ {
            t = $1; sub(/^4 KB put\/get \(30% put\), /, "", t)
            print "4 KB mixed put/get, " t ": " first($2, "gencache +[0-9]+ ops/s") "\t" \
                  first($2, "baseline +[0-9]+ ops/s") " (minimal C cache)\t" first($2, "[0-9.]+x") }'
}

pick_bench_key() {
    awk "$AWK_FIRST"'
        /^parse \+ keys, all layers/ { pk = first($0, "[0-9.]+ us") }
        /^SHA-256 of/ { base = first($0, "[0-9.]+ us") }
        /^Python json.loads/ { py = first($0, "[0-9.]+ us") }
        /^parse \+ keys vs the SHA-256 floor/ {
            print "parse + keys of all layers: " pk "\tSHA-256 of the documents: " base "\t" \
                  first($0, "[0-9.]+x") " the floor" }
        /^parse \+ keys vs Python/ {
            print "parse + keys of all layers: " pk "\tPython json.loads + hashlib: " py "\t" \
                  first($0, "[0-9.]+x") " Python" }'
}

pick_bench_image() {
    awk '
        /each path/ { p = $0; sub(/.*fastest\): */, "", p); sub(/; hashes.*/, "", p)
                      print "pHash-64 1024x1024 per path: " p "\t-\t-" }
        /Python reference/ {
            g = $0; sub(/.*gencache /, "", g); sub(/,.*/, "", g)
            py = $0; sub(/.*Python reference /, "", py); sub(/ \(.*/, "", py)
            r = $0; sub(/.*medians\), ratio /, "", r); sub(/;.*/, "", r)
            h = ($0 ~ /hashes agree/) ? "" : " HASHES DIFFER"
            print "pHash-64 1024x1024: " g h "\tPython (Pillow + scipy): " py "\t" r " faster" }
        /^digest of/ { d = $0; sub(/:.*/, "", d); r = $0; sub(/.*ratio /, "", r); sub(/ .*/, "", r)
                       print d "\tOpenSSL SHA-256 of the same bytes\t" r }
        /^near-duplicate/ { q = $0; sub(/^[^:]*: index /, "", q); sub(/ median.*/, "", q)
                            s = $0; sub(/.*scan /, "", s); sub(/,.*/, "", s)
                            r = $0; sub(/.*ratio /, "", r); sub(/ .*/, "", r)
                            print "near-duplicate query, 10^6 hashes: " q "\tlinear popcount scan: " s "\t" r }'
}

pick_bench_tensor() {
    awk '
        /^level / { lv = $2; sub(/:$/, "", lv); sz = $5 " " $6 }
        /^memcpy \(baseline\) \[best/ { m = $0; sub(/.*\] */, "", m); sub(/ *ms.*/, " ms", m) }
        /^widen f16 and scale \(arithmetic floor\)/ { r = $0; sub(/.*<= /, "", r); sub(/ memcpy.*/, "", r)
                       print "per-tensor quantization floor, " lv ": read pass + widen and scale\tmemcpy of " sz "\t" r }
        /\[best\]/ && /x memcpy/ { f = $0; sub(/ +[0-9.]+ ms.*/, "", f); t = $0; sub(/.*\] +/, "", t)
                       sub(/ +[0-9.]+ GB\/s.*/, "", t); r = $0; sub(/.*GB\/s +/, "", r)
                       print f ", " lv ": " t "\tmemcpy of " sz ": " m "\t" r }
        /^dispatched kernels slower than AVX2/ { v = $0; sub(/^[^:]*: */, "", v)
                       print "dispatched kernels slower than AVX2 (block, L3, DRAM): " v "\tthe AVX2 kernels\t-" }'
}

pick_bench_disk() {
    awk "$AWK_FIRST"'
        /ratios: get speed vs plain read\(\)/ {
            print $1 " GET (value in LMDB)\topen+read of a file\t" first(first($0, "inline [0-9.]+x"), "[0-9.]+x") }
        /durable put throughput vs write\+fdatasync/ {
            print $1 " durable PUT\twrite+fdatasync of a file\t" first(first($0, "tier [0-9.]+x"), "[0-9.]+x") }
        /durable put phases: the tier/ {
            w = first($0, "plain write -?[0-9.]+ us"); sub(/plain write /, "", w)
            c = first($0, "value [0-9.]+ us"); sub(/value /, "", c)
            f = first($0, "file.s -?[0-9.]+ us"); sub(/file.s /, "", f)
            print $1 " durable PUT, beyond write+fdatasync: work " (w ~ /^-/ ? "" : "+") w \
                  " (one memcpy " c "), flush " (f ~ /^-/ ? "" : "+") f "\twrite+fdatasync of a file\t-" }
        /bare LMDB durable put vs write\+fdatasync/ {
            print $1 " bare LMDB durable PUT with MDB_WRITEMAP, fallocated\twrite+fdatasync of a file (LMDB as the tier writes: " \
                  first(first($0, "copy [0-9.]+x"), "[0-9.]+x") ")\t" first(first($0, "fallocated [0-9.]+x"), "[0-9.]+x") }
        /^recovery/ { r = $0; sub(/.*median /, "", r); sub(/ over.*/, "", r)
                      print "open a tier of 100,000 entries: " r "\t-\t-" }'
}

pick_bench_redis() {
    awk -F'[:|]' '/^redis/ { name = $1; sub(/ \(.*/, "", name); t = $2; sub(/^ *tier */, "", t)
                             b = $3; sub(/^ */, "", b); o = $4; sub(/^ */, "", o)
                             print name " via the tier: " t " us\t" b " us\t" o }'
}

pick_bench_writeback() {
    awk '
        /write\+fdatasync of the value/ { f = $(NF-1) " us" }
        /put, no disk tier|write-back put|write-through put/ {
            x = $0; sub(/^ +/, "", x); name = x; sub(/  +.*/, "", name)
            t = x; sub(/^[^0-9]*\) */, "", t); sub(/^[^0-9]+/, "", t); sub(/ us.*/, " us", t)
            if (x ~ /fdatasync/) { r = x; sub(/.*, /, "", r); sub(/ memcpy\+fdatasync/, "", r)
                                   print name ": " t "\tmemcpy + write+fdatasync (" f ")\t" r }
            else { r = x; sub(/.* us +/, "", r); sub(/ memcpy/, "", r); print name ": " t "\tmemcpy\t" r } }'
}

pick_disk_flushes() {
    awk -F'  +' '
        $2 == "tier" && $3 !~ /other/ { t[$1] = t[$1] (t[$1] == "" ? "" : ", ") $4 " " $3 }
        $2 == "write+fdatasync" { b[$1] = $4 " " $3 }
        /^writes: [^,]+, tier: index / { z = $0; sub(/^writes: /, "", z); sz = z; sub(/,.*/, "", sz)
                                         sub(/.*index /, "", z); sub(/ per put/, "", z); w[sz] = z }
        END { n = split("4KiB 1.5MiB 16MiB", s, " ")
              for (i = 1; i <= n; i++) if (s[i] in t)
                  print s[i] " durable PUT, flushes per put: " t[s[i]] \
                        (s[i] in w ? "; writes to the index per put: " w[s[i]] : "") \
                        "\twrite+fdatasync: " b[s[i]] "\t-" }'
}

pick_bench_daemon() {
    awk "$AWK_FIRST"'
        /^[0-9]+-byte values, [0-9]+ connection/ {
            n = $1; sub(/-byte/, "", n)
            n += 0
            size = (n >= 1048576) ? sprintf("%.1f MiB", n / 1048576) : sprintf("%d KiB", n / 1024)
            c = $0; sub(/^[0-9]+-byte values, /, "", c); sub(/ \(.*/, "", c) }
        /^ratio gencached\/memcached ops\/s/ {
            p99 = first(first($0, "p99 gencached/redis [0-9.]+x"), "[0-9.]+x")
            print size " GET, " c ": ops/s vs memcached (p99 vs Redis " p99 ")\tmemcached, Redis, " \
                  "plain TCP in the same layout\t" first($0, "[0-9.]+x") }'
}

pick_bench_service() {
    awk '
        $1 ~ /^gencached_entry_1.5M|^gencached_generate_hit_1.5M/ { g[$1] = $3 " MB/s, p99 " $5 " ms" }
        $1 == "redis_get_1.5M" { r15 = $3 " MB/s, p99 " $5 " ms" }
        $1 == "gencached_entry_4K" { g4 = $2 " ops/s, p99 " $5 " ms" }
        $1 == "redis_get_4K" { r4 = $2 " ops/s, p99 " $5 " ms" }
        /vs Redis:/ { r = $0; sub(/.*vs Redis: /, "", r); sub(/ .*/, "", r)
                      if ($0 ~ /1.5 MiB entry/) print "1.5 MiB entry GET: " g["gencached_entry_1.5M"] "\tredis-server GET: " r15 "\t" r
                      else if ($0 ~ /generate hit/) print "1.5 MiB generate hit: " g["gencached_generate_hit_1.5M"] "\tredis-server GET: " r15 "\t" r
                      else if ($0 ~ /4 KiB/) print "4 KiB entry GET: " g4 "\tredis-server GET: " r4 "\t" r }'
}

pick_bench_python() {
    awk '
        /^gencache get_tensor \(numpy view\)/ { h = $(NF-2) " " $(NF-1) }
        /^numpy.load|^redis-py GET/ { n = $0; sub(/ +[0-9.]+ us.*/, "", n)
            print "get_tensor hit, numpy view: " h "\t" n ": " $(NF-2) " " $(NF-1) "\t" $NF " faster" }'
}

pick_bench_key_jsonl() {
    awk '
        /^gencache key --jsonl/ { c = $(NF-1) }
        /^Python json\+hashlib|^gencache key, one process/ { n = $0; sub(/  +.*/, "", n)
            print "gencache key --jsonl: " c " requests/s\t" n ": " $(NF-1) " requests/s\t" $NF }'
}

pick_trace_key_repeats() {
    awk '/^(exact|safe|clip|aggressive) / { print "normalization " $1 ": text_embedding keys repeat " $4 \
                                                  "%, result keys " $9 "%\t-\t-" }'
}

pick_bench_policy() {
    awk '
        /^(result|text_embedding|condition) +(0\.1|1)% / && NF == 11 {
            print "GPU-seconds saved, " $1 " at " $2 " of its working set: GDSF " $5 \
                  "\tLRU " $3 ", S3-FIFO " $7 "\t" $9 "x (GDSF/LRU)" }
        /requests\/s +\(/ { print "replay, text_embedding at 1%: " $1 " " $2 " requests/s" \
                                  "\tgoal 200,000 requests/s\t" substr($4, 2) }
        /^[a-z_]+ +[a-z0-9]+ +1% +0\.0625 / {
            e = $8; sub(/[+-]/, "", e); sub(/%/, "", e); if (e + 0 > worst + 0) worst = e }
        END { if (worst != "") print "miss-ratio curve at the default rate (1/16), 2x and 4x:" \
                                     " worst hit-ratio error " worst "%\treplay at 2x and 4x\t-" }'
}

pick_bench_ghost() {
    awk '$3 == 65536 && NF == 11 {
        print "sampled ghost hits (1 in 16), " $1 " at " $2 " entries, default list: median " $6 \
              "\texact list " $4 ", replay of a tier larger by the list " $5 \
              "\trms error " $9 " (sqrt(15/N) " $10 ")" }'
}

pick_bench_cluster() {
    awk '
        /^3 +[0-9]+ / { print "hit throughput, 3 nodes on a 3-primary cluster: " $5 " gets/s" \
                              "\t3 nodes on one redis-server: " $2 " gets/s\t" \
                              sprintf("%.2fx", $5 / $2) }
        /^invalidation propagation/ { w = ($0 ~ /cluster/) ? "cluster" : "one redis-server"
                                      m = $0; sub(/.*: /, "", m)
                                      print "invalidation reaches another node (" w "): " m "\t-\t-" }
        /^bloom filter on the trace/ { k = $0; sub(/.*trace \([0-9]+ requests, /, "", k)
                                       sub(/ keys.*/, "", k); s = $0
                                       sub(/.*round trips saved /, "", s); sub(/;.*/, "", s)
                                       print "Bloom filter, " k " keys: round trips saved " s ")" \
                                             "\tone round trip per get\t-" }'
}

pick_reuse_recall() {
    awk '
        /^recall goal (q70|half|bright) / { k = $3; r = $0; sub(/^recall goal [a-z0-9]+ +/, "", r)
                        sub(/ \(.*/, "", r)
                        print "perceptual recall on benign variants, " k ": " r "\tgoal 95%\t-" }
        /^false matches between distinct pictures/ {
                           f = $0; sub(/^false matches between distinct pictures: /, "", f)
                           print "false matches between distinct pictures: " f "\tgoal 0\t-" }'
}

pick_trace_any_seed() {
    awk '
        /^any_seed/ { a = $0; sub(/^any_seed \(seed-free\): +/, "", a); sub(/ of requests.*/, "", a) }
        /^infinite-cache ceiling/ { c = $0; sub(/^infinite-cache ceiling: +/, "", c)
                                    sub(/ of requests.*/, "", c) }
        /^served \/ ceiling/ { print "any_seed served: " a "\tinfinite-cache ceiling: " c \
                                     "\t" $4 " of the ceiling" }'
}

pick_bench_trajectory() {
    awk '
        /^trajectory index:/ { n = $0; sub(/.*N=/, "", n); sub(/ .*/, "", n)
                               d = $0; sub(/.*dim=/, "", d); sub(/ .*/, "", d) }
        /^  exact:/ { ex = $3 " " $4 }
        /^  approximate ef=/ { ap = $4 " " $5; r = $13; rec = $NF }
        END { if (ap != "") print "nearest trajectory, HNSW, " n " x " d "-d: median " ap \
                                  " (recall@1 " rec ")\texact search: " ex "\t" r "x" }'
}

pick_bench_generate_hung_redis() {
    awk '
        /misses answered/ { m = $0; sub(/^[^:]*: /, "", m); sub(/ answered [0-9]+/, "", m); sub(/;.*/, "", m)
                            l = $0; sub(/.*latency /, "", l); sub(/;.*/, "", l)
                            print "misses with Redis hung: " m ", " l "\t-\t-" }
        /hits meanwhile/ { h = $0; sub(/.*: /, "", h); print "hits meanwhile: " h "\t-\t-" }'
}

pick_bench_traj_restart() {
    awk '
        /baseline\): median/ { b = $0; sub(/.*median +/, "", b); sub(/ us.*/, " us", b) }
        /load the index from traj.idx/ { l = $0; sub(/.*median +/, "", l); sub(/ us.*/, " us", l)
                                         r = $0; sub(/.*\(/, "", r); sub(/x the.*/, "x", r)
                                         print "load the trajectory index from traj.idx: " l \
                                               "\tread traj.idx with stdio: " b "\t" r }
        /rebuild it from the disk tier/ { m = $0; sub(/.*median +/, "", m); sub(/ us.*/, " us", m)
                                          r = $0; sub(/.*\(/, "", r); sub(/x the baseline.*/, "x", r)
                                          print "rebuild the trajectory index from the disk tier: " m \
                                                "\tread traj.idx with stdio: " b "\t" r }'
}

pick_bench_reuse_net() {
    awk '
        /^store \(/ { s = $0; sub(/.*shared layer median /, "", s); sub(/ us.*/, " us", s)
                      b = $0; sub(/.*\(baseline\) median /, "", b); sub(/ us.*/, " us", b)
                      r = $0; sub(/.*ratio /, "", r)
                      print "store a reuse record of a shared layer: " s "\tnot shared: " b "\t" r }
        /^propagation/ { p = $0; sub(/.*matches: /, "", p); print "record seen by another node: " p "\t-\t-" }
        /^catch-up/ { c = $0; sub(/^catch-up: /, "", c); sub(/;.*/, ")", c); print "catch-up: " c "\t-\t-" }'
}

# The default: lines that carry a ratio, as they are (at most 4).
pick_generic() {
    grep -E '[0-9]+(\.[0-9]+)?x\b' | head -4 | while IFS= read -r line; do
        r=$(printf '%s\n' "$line" | first_ratio)
        printf '%s\t-\t%s\n' "$(printf '%s' "$line" | sed 's/^ *//' | cut -c1-110)" "$r"
    done
}

# --- run -------------------------------------------------------------------------------------

ROWS=()
START=$(date +%s)
cd "$ROOT" || exit 1
for entry in "${BENCHES[@]}"; do
    IFS='|' read -r name layout cmd <<<"$entry"
    if [ -n "$ONLY" ] && ! [[ $name =~ $ONLY ]]; then
        continue
    fi
    log=$LOGS/$name.log
    printf '%-28s ' "$name" >&2
    t0=$(date +%s)
    # shellcheck disable=SC2086  # the command is a word list on purpose
    timeout --kill-after=10 "$TIMEOUT" $cmd >"$log" 2>&1
    rc=$?
    dt=$(($(date +%s) - t0))
    if [ $rc -ne 0 ]; then
        why="exit status $rc"
        [ $rc -eq 124 ] || [ $rc -eq 137 ] && why="timed out after ${TIMEOUT} s"
        echo "FAIL ($why, ${dt} s)" >&2
        ROWS+=("$name	FAIL: $why (see $log)	-	-	$layout")
        continue
    fi
    echo "ok (${dt} s)" >&2
    if declare -F "pick_$name" >/dev/null; then
        picked=$("pick_$name" <"$log" 2>/dev/null)
    else
        picked=""
    fi
    [ -z "$picked" ] && picked=$(pick_generic <"$log")
    [ -z "$picked" ] && picked="ran; no figure recognised (see $log)	-	-"
    while IFS= read -r row; do
        ROWS+=("$name	$row	$layout")
    done <<<"$picked"
done

echo
echo "| benchmark | figure | baseline | ratio | layout |"
echo "|---|---|---|---|---|"
for row in "${ROWS[@]}"; do
    IFS='	' read -r n f b r l <<<"$row"
    echo "| $n | $f | ${b:--} | ${r:--} | $l |"
done
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg);" \
    "total $(($(date +%s) - START)) s; logs in $LOGS"

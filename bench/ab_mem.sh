#!/bin/bash
# ab_mem.sh: two builds of bench_mem taking turns, for a change whose effect on the one-thread
# mixed loop is near this machine's run-to-run noise. Each run prints its own ratio against the
# minimal C cache (measured in the same run); this script pairs the runs of the two builds,
# before then after, and prints every pair, both medians, how many pairs the second build was
# ahead, even or behind in, and the mean difference of the ratio with its standard error.
#
# usage: bench/ab_mem.sh BEFORE AFTER PAIRS [bench_mem arguments]
#        (default arguments: 5 --only mixed --cpu)
# example: bench/ab_mem.sh /tmp/base/build/bench/bench_mem build/bench/bench_mem 31
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: $0 BEFORE AFTER PAIRS [bench_mem arguments]" >&2
    exit 2
fi
before=$1 after=$2 pairs=$3
shift 3
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(5 --only mixed --cpu)

# The one-thread ratio a run prints ("..., 1 thread: ... ratio 0.78x").
ratio() {
    "$@" | sed -n 's/.*1 thread:.*ratio \([0-9.]*\)x.*/\1/p' | head -n 1
}

echo "before: $before"
echo "after:  $after"
echo "arguments: ${args[*]}; $pairs pairs, $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
results=()
for ((i = 1; i <= pairs; i++)); do
    b=$(ratio "$before" "${args[@]}")
    a=$(ratio "$after" "${args[@]}")
    if [ -z "$b" ] || [ -z "$a" ]; then
        echo "pair $i: no ratio in the output" >&2
        exit 1
    fi
    echo "pair $i: before ${b}x, after ${a}x"
    results+=("$b $a")
done
printf '%s\n' "${results[@]}" | awk '
    { b[NR] = $1; a[NR] = $2; d = $2 - $1; s += d; ss += d * d
      if (d > 0) ahead++; else if (d < 0) behind++; else even++ }
    function median(v, n,    i, j, t, w) {
        for (i = 1; i <= n; i++) w[i] = v[i]
        for (i = 2; i <= n; i++)
            for (j = i; j > 1 && w[j - 1] > w[j]; j--) { t = w[j]; w[j] = w[j - 1]; w[j - 1] = t }
        return n % 2 ? w[(n + 1) / 2] : (w[n / 2] + w[n / 2 + 1]) / 2
    }
    END {
        n = NR; m = s / n
        se = n > 1 ? sqrt((ss - n * m * m) / (n - 1) / n) : 0
        printf "medians: before %.3fx, after %.3fx\n", median(b, n), median(a, n)
        printf "after ahead in %d, even in %d, behind in %d of %d pairs\n", ahead, even, behind, n
        printf "mean difference of the ratio (after - before): %+.4f, standard error %.4f\n", m, se
    }'
uptime

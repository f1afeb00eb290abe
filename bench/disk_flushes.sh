#!/usr/bin/env bash
# disk_flushes.sh: how many flushes a durable put of the disk tier makes, as the kernel sees them.
# Runs section 2 of bench_disk (durable puts of 4 KiB, 1.5 MiB and 16 MiB: the tier, the tier
# with LMDB's two flushes per commit, and write+fdatasync of a plain file) under strace, and
# counts per put, for each of the three and each size: fsync/fdatasync/msync/sync_file_range
# calls, by the file they flush (the index data.mdb, a value file, a directory, the plain file),
# and writes through a descriptor opened O_DSYNC or O_SYNC (LMDB writes its meta page so when it
# flushes it separately); then every write (write, writev, pwrite, pwritev, pwritev2) by file:
# how many separate ranges and how many bytes the flush has to carry. The tiers' open and close
# are counted too (a share of a flush per put).
#
# usage: bench/disk_flushes.sh [BUILD_DIR]     (default: build; needs strace)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
command -v strace >/dev/null || { echo "disk_flushes.sh: strace is not installed" >&2; exit 1; }
tmp=$(mktemp -d /tmp/bench-disk-flushes.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

strace -f -y -qq -e trace=fsync,fdatasync,msync,sync_file_range,syncfs,openat,pwrite64,pwritev,pwritev2,write,writev \
    -o "$tmp/trace" "$build/bench/bench_disk" --only durable "$tmp/data" >"$tmp/out"

# Which descriptors were opened O_DSYNC/O_SYNC (by path); then every flush, and every write to a
# file the tiers or the baseline use, each attributed to its variant (durable-, strict-,
# plain-durable-) and size by the path. A write through an O_DSYNC/O_SYNC descriptor is also
# counted on its own, as a flush.
awk -v root="$tmp/data/" '
    function variant(p) {
        if (index(p, root "plain-durable-")) return "write+fdatasync"
        if (index(p, root "strict-")) return "tier, two flushes"
        if (index(p, root "durable-")) return "tier"
        return ""
    }
    function size(p,   s) {
        s = p; sub(".*(plain-durable-|strict-|durable-)", "", s); sub("/.*", "", s); return s
    }
    function what(p) {
        if (p ~ /data\.mdb$/) return "index"
        if (p ~ /\/values\/[0-9a-f][0-9a-f]\/[0-9a-f]+$/) return "value file"
        if (p ~ /\/values(\/[0-9a-f][0-9a-f])?$/) return "directory"
        if (p ~ /plain-durable-[^/]*\/[0-9]+$/) return "plain file"
        return "other"
    }
    # The path strace -y shows for the first descriptor argument, and that descriptor with it.
    function path_of(line,   p) {
        p = line; sub(/^[0-9]+ +[a-z0-9_]+\([0-9]+</, "", p); sub(/>.*/, "", p); return p
    }
    function fd_of(line,   d) {
        d = line; sub(/^[0-9]+ +[a-z0-9_]+\(/, "", d); sub(/<.*/, "", d); return d " " path_of(line)
    }
    / openat\(/ && /O_DSYNC|O_SYNC/ && /= [0-9]+</ {
        p = $0; sub(/.*= /, "", p); d = p; sub(/<.*/, "", d); sub(/^[0-9]+</, "", p); sub(/>.*/, "", p)
        dsync[d " " p] = 1; next
    }
    / (fsync|fdatasync|msync|sync_file_range|syncfs)\(/ {
        p = path_of($0); v = variant(p); if (v == "") next
        call = $2; sub(/\(.*/, "", call)
        n[v SUBSEP size(p) SUBSEP call " of the " what(p)]++
        next
    }
    / (pwrite64|pwritev2?|writev?)\(/ {
        p = path_of($0); v = variant(p); if (v == "" || what(p) == "other") next
        b = $0; if (b !~ /\) = [0-9]+$/) next
        sub(/.*\) = /, "", b)
        w = v SUBSEP size(p) SUBSEP what(p); wn[w]++; wb[w] += b
        if (fd_of($0) in dsync) n[v SUBSEP size(p) SUBSEP "O_DSYNC write of the " what(p)]++
    }
    END { for (k in n) { split(k, f, SUBSEP); print f[1] "\t" f[2] "\t" f[3] "\t" n[k] }
          for (k in wn) { split(k, f, SUBSEP); print f[1] "\t" f[2] "\t" f[3] "\t" wn[k] "\t" wb[k] > writes } }
' writes="$tmp/writes" "$tmp/trace" >"$tmp/counts"

# Rounds per size, counted ones and warm-up ones together: "... (median us over N rounds, after W
# not counted) ...".
awk '/durable put \(median us over/ { r = $0; sub(/.*over /, "", r); sub(/ rounds.*/, "", r)
                                      w = 0; if ($0 ~ /after [0-9]+ not counted/) {
                                          w = $0; sub(/.*after /, "", w); sub(/ not counted.*/, "", w) }
                                      print $1 "\t" r + w }' "$tmp/out" >"$tmp/rounds"

echo "disk_flushes: flushes per durable put (strace of bench_disk --only durable; the tiers' open"
echo "and close are counted too and spread over the rounds, so a count a little above a whole"
echo "number is the open's or close's share)"
printf '%-8s %-18s %-36s %s\n' size variant "flush" "per put"
awk -F'\t' 'NR == FNR { rounds[$1] = $2; next }
            { printf "%-8s %-18s %-36s %.2f\n", $2, $1, $3, $4 / rounds[$2] }' \
    "$tmp/rounds" "$tmp/counts" | sort -k1,1 -k2,2

# What the flushes carry: each write system call is one range of the file (LMDB writes
# contiguous pages with one call), so for the index it counts the separate places a commit
# writes: the value's pages, each B-tree page it touched, the meta page of the commit before.
echo
echo "disk_flushes: writes per durable put (system calls, each one range of a file, and KiB)"
awk -F'\t' 'NR == FNR { rounds[$1] = $2; next }
            { printf "writes: %s, %s: %s %.2f writes, %.0f KiB per put\n", $2, $1, $3,
                     $4 / rounds[$2], $5 / rounds[$2] / 1024 }' \
    "$tmp/rounds" "$tmp/writes" | sort -t, -k1,1 -k2,2

#!/usr/bin/env bash
# Every dynamic symbol that libgencache.so defines must be public API: gencache_ followed by a
# letter. Internals (gencache__*) and anything else must stay hidden.
set -euo pipefail
lib=$1
syms=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sed 's/@.*//')
[ -n "$syms" ] || { echo "no exported symbols in $lib"; exit 1; }
bad=$(printf '%s\n' $syms | grep -v -E '^gencache_[a-z]' || true)
if [ -n "$bad" ]; then
    echo "symbols exported beyond the public API:"; printf '  %s\n' $bad; exit 1
fi
for required in gencache_open gencache_close gencache_get gencache_put gencache_strerror; do
    printf '%s\n' $syms | grep -qx "$required" || { echo "missing export: $required"; exit 1; }
done
echo "$(printf '%s\n' $syms | wc -l) exported symbols, all gencache_*"

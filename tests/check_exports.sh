#!/usr/bin/env bash
# Every dynamic symbol that libgencache.so defines must be public API: gencache_ followed by a
# letter. Internals (gencache__*) and anything else must stay hidden.
set -euo pipefail
lib=$1
syms=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sed 's/@.*//')
[ -n "$syms" ] || { echo "no exported symbols in $lib"; exit 1; }
# Here-strings, not pipes: with pipefail, "grep -q" closing a pipe early would make printf's
# SIGPIPE fail the check at random.
bad=$(grep -v -E '^gencache_[a-z]' <<< "$syms" || true)
if [ -n "$bad" ]; then
    echo "symbols exported beyond the public API:"; printf '  %s\n' $bad; exit 1
fi
for required in gencache_open gencache_close gencache_get gencache_put gencache_strerror; do
    grep -qx "$required" <<< "$syms" || { echo "missing export: $required"; exit 1; }
done
echo "$(wc -l <<< "$syms") exported symbols, all gencache_*"

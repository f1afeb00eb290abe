#!/usr/bin/env bash
# Builds every libFuzzer target in tests/fuzz/ with clang (ASan+UBSan, coverage on the library
# too) and runs each for a bounded time on a copy of its committed corpus.
#   scripts/fuzz.sh [SECONDS] [RUNS]   (defaults: 20 s and 200,000 inputs per target, whichever
#                                      comes first; the seed is fixed so a run can be repeated)
# A crash leaves its input in build-fuzz/crashes/<target>/ and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-20}
RUNS=${2:-200000}
B=build-fuzz
cmake -S . -B "$B" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" \
  -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize=vptr,function -fno-sanitize-recover=undefined" \
  -DGENCACHE_BUILD_TESTS=OFF -DGENCACHE_BUILD_BENCH=OFF >/dev/null
cmake --build "$B" -j "$(nproc)" --target gencache_static >/dev/null
LIBS="$(pkg-config --libs libcrypto jansson libutf8proc libxxhash libpng libjpeg libwebp hiredis \
  lmdb yaml-0.1 simdjson) -lstdc++"
failed=0
for src in tests/fuzz/fuzz_*.c; do
  name=$(basename "$src" .c)
  extra=()
  # The daemon's socket-free readers (routes, headers, filters, JSON lines, ?as=).
  [ "$name" = fuzz_http ] && extra=(-Itools/gencached tools/gencached/route.c tools/gencached/parse.c)
  [ "$name" = fuzz_fastget ] && extra=(-Itools/gencached tools/gencached/fastparse.c)
  clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Iinclude -Isrc "$src" "${extra[@]}" "$B/src/libgencache.a" $LIBS -lpthread -lm -o "$B/$name"
  work="$B/corpus/$name"
  crashes="$B/crashes/$name"
  rm -rf "$work" && mkdir -p "$work" "$crashes"
  cp tests/fuzz/corpus/"$name"/* "$work"/
  if "$B/$name" -seed=1 -runs="$RUNS" -max_total_time="$SECONDS_PER_TARGET" \
      -artifact_prefix="$crashes/" "$work" >"$B/$name.log" 2>&1; then
    echo "fuzz $name: $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$B/$name.log" || echo ok)"
  else
    echo "fuzz $name: FAILED (see $B/$name.log, input in $crashes/)"
    tail -n 30 "$B/$name.log"
    failed=1
  fi
done
exit $failed

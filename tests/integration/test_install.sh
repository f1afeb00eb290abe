#!/usr/bin/env bash
# cmake --install into a temporary prefix, then use what it installed as a user would: compile
# and run a C program through `pkg-config --cflags --libs gencache` (shared library, and the
# static one through --static), run the installed tools, and check that gencache.pc and the
# systemd unit name the prefix of this install, not the one the build was configured with.
set -euo pipefail
build=${GENCACHE_BUILD_DIR:?GENCACHE_BUILD_DIR names the build directory}
tmp=$(mktemp -d /tmp/gencache-install-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; fail "cmake --install"; }

pc=$(find "$prefix" -name gencache.pc -path '*/pkgconfig/*')
[ -n "$pc" ] || fail "no gencache.pc installed"
libdir=$(dirname "$(dirname "$pc")")
export PKG_CONFIG_PATH=$(dirname "$pc")
got=$(pkg-config --variable=prefix gencache)
[ "$got" = "$prefix" ] || fail "gencache.pc prefix is '$got', expected '$prefix'"
got=$(pkg-config --variable=libdir gencache)
[ "$got" = "$libdir" ] || fail "gencache.pc libdir is '$got', expected '$libdir'"
for f in "$libdir/libgencache.so" "$libdir/libgencache.a" "$prefix/include/gencache.h" \
         "$prefix/include/gencache/keys.h" "$prefix/bin/gencache" "$prefix/bin/gencached" \
         "$prefix/share/bash-completion/completions/gencache" \
         "$prefix/share/zsh/vendor-completions/_gencache"; do
    [ -e "$f" ] || fail "$f not installed"
done

cat >"$tmp/prog.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <gencache.h>

int main(void)
{
    gencache *c = NULL;
    if (gencache_open(&c, NULL) != GENCACHE_OK)
        return 1;
    gencache_meta m;
    gencache_meta_init(&m);
    const char *key = "result/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    if (gencache_put(c, key, "video", 5, &m) != GENCACHE_OK)
        return 2;
    gencache_handle *h = NULL;
    if (gencache_get(c, key, &h) != GENCACHE_OK)
        return 3;
    int same = gencache_handle_size(h) == 5 && memcmp(gencache_handle_data(h), "video", 5) == 0;
    gencache_handle_release(h);
    gencache_close(c);
    printf("gencache %s %s\n", gencache_version(), same ? "round trip ok" : "bytes differ");
    return same ? 0 : 4;
}
C
cc=${GENCACHE_CC:-cc}
# In a sanitizer build the library is instrumented, so the program must be too.
read -ra san <<<"${GENCACHE_SANITIZE_FLAGS:-}"
# shellcheck disable=SC2046 # pkg-config output is a list of words by design
"$cc" "${san[@]}" -o "$tmp/prog" "$tmp/prog.c" $(pkg-config --cflags --libs gencache) \
    -Wl,-rpath,"$(pkg-config --variable=libdir gencache)" || fail "compile against the shared library"
out=$("$tmp/prog") || fail "the program failed: $out"
echo "$out" | grep -q "round trip ok" || fail "program output: $out"
ldd "$tmp/prog" | grep -F "$libdir/libgencache.so" >/dev/null ||
    fail "the program does not load the installed library: $(ldd "$tmp/prog" | grep gencache)"

# The static library: Requires.private and Libs.private must name everything it needs.
# shellcheck disable=SC2046
"$cc" "${san[@]}" -o "$tmp/prog_static" "$tmp/prog.c" $(pkg-config --cflags gencache) \
    "$libdir/libgencache.a" $(pkg-config --static --libs-only-L --libs-only-l gencache | sed 's/-lgencache //') ||
    fail "compile against the static library"
out=$("$tmp/prog_static") || fail "the static program failed: $out"
ldd "$tmp/prog_static" | grep -q libgencache && fail "the static program loads libgencache.so"

# The installed tools run (the library is found through the prefix; no rpath in installed files).
LD_LIBRARY_PATH=$libdir "$prefix/bin/gencache" --version | grep -q "^gencache " ||
    fail "installed gencache --version"
LD_LIBRARY_PATH=$libdir "$prefix/bin/gencached" --help >/dev/null || fail "installed gencached --help"

# The systemd unit runs the gencached this install put in place.
unit=$prefix/lib/systemd/system/gencached.service
[ -f "$unit" ] || fail "no systemd unit at $unit"
grep -qx "ExecStart=$prefix/bin/gencached --config \${CREDENTIALS_DIRECTORY}/gencache.yaml --data-dir /var/lib/gencache" "$unit" ||
    fail "ExecStart of the unit: $(grep ExecStart= "$unit")"
grep -Eq '@[A-Z_]+@' "$unit" && fail "unsubstituted @VAR@ in the unit: $(grep -E '@[A-Z_]+@' "$unit")"
grep -qF "file://$prefix/share/doc/gencache/config.md" "$unit" || fail "Documentation= of the unit"
[ -f "$prefix/share/doc/gencache/config.md" ] || fail "docs not installed"
# The man pages, when the build made them (scdoc installed).
for page in gencache.1 gencached.8 gencache.yaml.5; do
    if [ -f "$build/man/$page" ]; then
        [ -f "$prefix/share/man/man${page##*.}/$page" ] || fail "man page $page not installed"
    else
        echo "$page not built (no scdoc): not checked"
    fi
done
echo "all passed"

"""Runs the Python package's test suite (bindings/python/tests) with Debian's pytest, as one
CTest test. The exit status is pytest's, except that "no tests collected" (5) is a failure too:
a suite that silently found nothing must not pass.

In a sanitizer build ($GENCACHE_LIB linked with libasan), the interpreter is not instrumented,
so the ASan runtime is preloaded (it must come first) and leak detection is left off: CPython,
numpy and torch keep allocations for the life of the process by design. Memory errors in
libgencache are still fatal.
"""
import os
import re
import subprocess
import sys

SOURCE_DIR = os.environ.get("GENCACHE_SOURCE_DIR") or os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
TESTS = os.path.join(SOURCE_DIR, "bindings", "python", "tests")

env = dict(os.environ)
pkg = os.path.join(SOURCE_DIR, "bindings", "python")
env["PYTHONPATH"] = pkg + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
env.setdefault("GENCACHE_SOURCE_DIR", SOURCE_DIR)


def sanitizer_runtimes(lib):
    """Paths of the sanitizer runtimes `lib` links, from ldd (empty for a plain build)."""
    if not lib or not os.path.exists(lib):
        return []
    try:
        out = subprocess.run(["ldd", lib], capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return []
    return re.findall(r"=>\s*(\S*lib(?:asan|ubsan|tsan)\.so[.\d]*)", out)


runtimes = sanitizer_runtimes(env.get("GENCACHE_LIB"))
if any("tsan" in r for r in runtimes):
    # ThreadSanitizer cannot start inside an interpreter that was not built with it.
    print("test_python: $GENCACHE_LIB is a ThreadSanitizer build; the Python suite runs in "
          "the plain and ASan builds", flush=True)
    sys.exit(0)
asan = [r for r in runtimes if "libasan" in r]
if asan:
    env["LD_PRELOAD"] = " ".join(asan + ([env["LD_PRELOAD"]] if env.get("LD_PRELOAD") else []))
    # Later options win: leak detection stays off even under `make test-asan`.
    env["ASAN_OPTIONS"] = ((env["ASAN_OPTIONS"] + ":") if env.get("ASAN_OPTIONS") else "") + \
        "detect_leaks=0"
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
rc = subprocess.call(["/usr/bin/python3", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                      "-p", "no:hypothesispytest",
                      TESTS], cwd=SOURCE_DIR, env=env)
if rc == 5:
    print("test_python: pytest collected no tests in %s" % TESTS, flush=True)
    rc = 1
sys.exit(rc)

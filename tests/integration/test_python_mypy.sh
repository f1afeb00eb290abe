#!/usr/bin/env bash
# The Python package type-checks under mypy --strict (Debian's mypy), with the settings of
# bindings/python/pyproject.toml. The cache lives in the build tree: the first run reads numpy's
# stubs (about a minute on a loaded machine), later ones take seconds.
set -euo pipefail
src=${GENCACHE_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${GENCACHE_BUILD_DIR:-$src/build}
if ! command -v mypy >/dev/null; then
    echo "test_python_mypy: mypy is not installed (Debian: mypy, listed in scripts/deps.txt)" >&2
    exit 1
fi
cd "$src/bindings/python"
# The interpreter whose numpy stubs the package is checked against: Debian's /usr/bin/python3.
mypy --strict --config-file pyproject.toml --python-executable /usr/bin/python3 \
    --cache-dir "$build/mypy-cache" gencache

"""`pip install --no-build-isolation bindings/python` works offline with Debian's setuptools, and
the installed package carries what it needs: the library it was built with, the C extension,
py.typed, and the version the library reports."""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import PKG_ROOT, SOURCE_DIR


def test_pip_install_offline_into_a_venv(tmp_path):
    venv = tmp_path / "venv"
    r = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        pytest.skip("python3 -m venv is not available: " + r.stderr.strip())
    py = str(venv / "bin" / "python")
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # A copy of the package: setuptools writes build/ and *.egg-info beside its sources, and the
    # checkout is shared with tests running at the same time.
    src = tmp_path / "src"
    shutil.copytree(PKG_ROOT, src, ignore=shutil.ignore_patterns(
        "tests", "build", "*.egg-info", "__pycache__", "*.so"))
    # pip from the system interpreter installs into the venv's site-packages (--target), with
    # no index at all and the system's setuptools: the build must not need the network.
    import gencache
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               GENCACHE_INCLUDE_DIR=os.path.join(SOURCE_DIR, "include"),
               GENCACHE_LIB=os.path.abspath(gencache.library_path))
    env.pop("PYTHONPATH", None)
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps",
                        "--no-build-isolation", "--no-cache-dir", "--target", site, str(src)],
                       capture_output=True, text=True, timeout=300, env=env, cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    installed = os.listdir(os.path.join(site, "gencache"))
    assert "libgencache.so" in installed and "py.typed" in installed
    assert "_fast.c" not in installed
    assert any(n.startswith("_fast.") and n.endswith(".so") for n in installed), installed
    env.pop("GENCACHE_LIB", None)
    code = ("import gencache; from gencache import _lib; c = gencache.Cache(); "
            "k = 'result/' + '0' * 64; c.put(k, b'ok'); print(gencache.library_path); "
            "print(_lib.fast_path); print(c.get_bytes(k).decode()); print(gencache.__version__);"
            "c.close()")
    r = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=60, env=env,
                       cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    path, fast, ok, version = r.stdout.split()
    assert path.startswith(site) and fast.startswith(site) and ok == "ok"
    assert version == gencache.version()
    dist = [n for n in os.listdir(site) if n.endswith(".dist-info")]
    assert dist == ["gencache-%s.dist-info" % version]

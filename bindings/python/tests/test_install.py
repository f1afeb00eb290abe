"""`pip install bindings/python` works offline (the in-tree build backend needs nothing from an
index) and the installed package bundles the library it was built with."""
import os
import subprocess
import sys

import pytest

from conftest import PKG_ROOT


def test_pip_install_offline_into_a_venv(tmp_path):
    venv = tmp_path / "venv"
    r = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        pytest.skip("python3 -m venv is not available: " + r.stderr.strip())
    py = str(venv / "bin" / "python")
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # pip from the system interpreter installs into the venv's site-packages (--target),
    # with no index at all: the build must not need the network.
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps",
                        "--no-cache-dir", "--target", site, PKG_ROOT], capture_output=True,
                       text=True, timeout=120, env=env, cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert os.path.exists(os.path.join(site, "gencache", "libgencache.so"))
    env.pop("GENCACHE_LIB", None)
    code = ("import gencache, os; c = gencache.Cache(); k = 'result/' + '0' * 64; "
            "c.put(k, b'ok'); print(gencache.library_path); print(c.get_bytes(k).decode())")
    r = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=60, env=env,
                       cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    path, ok = r.stdout.split()
    assert path.startswith(site) and ok == "ok"

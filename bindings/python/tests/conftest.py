"""Fixtures for the gencache Python tests: the package imported from this checkout, the built
programs ($GENCACHE_BIN_DIR, set by CTest), and a real gencached on a free loopback port that is
always stopped again."""
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import http.client

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_ROOT = os.path.dirname(HERE)                       # bindings/python
SOURCE_DIR = os.environ.get("GENCACHE_SOURCE_DIR") or os.path.dirname(os.path.dirname(PKG_ROOT))
if PKG_ROOT not in sys.path:
    sys.path.insert(0, PKG_ROOT)


def _bin_dir():
    env = os.environ.get("GENCACHE_BIN_DIR")
    if env:
        return env
    lib = os.environ.get("GENCACHE_LIB")
    if lib:  # <build>/src/libgencache.so -> <build>/bin
        return os.path.join(os.path.dirname(os.path.dirname(lib)), "bin")
    for tree in ["build"] + sorted(glob.glob(os.path.join(SOURCE_DIR, "build*"))):
        cand = os.path.join(SOURCE_DIR, tree, "bin")
        if os.path.exists(os.path.join(cand, "gencache")):
            return cand
    return os.path.join(SOURCE_DIR, "build", "bin")


BIN_DIR = _bin_dir()
GENCACHE = os.path.join(BIN_DIR, "gencache")
GENCACHED = os.path.join(BIN_DIR, "gencached")


@pytest.fixture
def cache():
    import gencache
    c = gencache.Cache(mem_max_bytes=64 << 20)
    yield c
    c.close()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """gencached on 127.0.0.1:<free port> with its data in a temporary directory."""

    def __init__(self, *flags):
        self.dir = tempfile.mkdtemp(prefix="gencache-py-")
        self.log_path = os.path.join(self.dir, "gencached.log")
        self.proc = None
        for _ in range(5):  # another process may take the port between the probe and the bind
            self.port = free_port()
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(
                    [GENCACHED, "--listen", "127.0.0.1:%d" % self.port, "--data-dir",
                     os.path.join(self.dir, "data"), "--threads", "2", *flags],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            if self._wait_healthy():
                return
            self.stop(cleanup=False)
        log = self.log()
        self.stop()
        raise RuntimeError("gencached did not become healthy:\n" + log)

    def _wait_healthy(self):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/healthz")
                r = c.getresponse()
                ok = r.status == 200 and r.read().strip() == b"ok"
                c.close()
                if ok:
                    return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, cleanup=True):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if cleanup:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def daemon():
    if not os.path.exists(GENCACHED):
        pytest.fail("gencached not built at %s (set GENCACHE_BIN_DIR)" % GENCACHED)
    d = Daemon()
    try:
        yield d
    finally:
        d.stop()

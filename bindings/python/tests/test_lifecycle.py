"""Client and Cache close what they hold: as context managers, on close(), and when dropped
without either (no ResourceWarning for an unclosed socket at exit)."""
import os
import subprocess
import sys

import gencache
from conftest import PKG_ROOT

SCRIPT = r"""
import gc, sys, threading, warnings
import gencache
url = sys.argv[1]
def use(c):
    assert c.health()
with gencache.Client(url) as c:          # closed by the with block
    use(c)
    t = threading.Thread(target=use, args=(c,)); t.start(); t.join()
dropped = gencache.Client(url)           # dropped without close()
use(dropped)
t = threading.Thread(target=use, args=(dropped,)); t.start(); t.join()
del dropped
gc.collect()
kept = gencache.Client(url)              # still referenced at exit
use(kept)
cache = gencache.Cache()                 # never closed
cache.put("result/" + "0" * 64, b"x")
with gencache.Cache() as c2:
    c2.put("result/" + "0" * 64, b"x")
assert c2.closed
if len(sys.argv) > 2:                    # the control: an unclosed socket must be reported
    import socket
    leak = socket.socket()
    del leak
    gc.collect()
print("done")
"""


def run(url, *extra):
    env = dict(os.environ, PYTHONPATH=PKG_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-c",
                           SCRIPT, url, *extra], capture_output=True, text=True, timeout=60,
                          env=env)


def test_no_unclosed_socket_at_exit(daemon):
    r = run(daemon.url)
    assert r.returncode == 0 and r.stdout.strip() == "done", r.stderr
    assert "ResourceWarning" not in r.stderr, r.stderr


def test_the_check_sees_an_unclosed_socket(daemon):
    r = run(daemon.url, "control")
    assert "ResourceWarning" in r.stderr, r.stderr


def test_client_close_closes_every_threads_connection(daemon):
    import threading
    c = gencache.Client(daemon.url)
    socks = []

    def use():
        assert c.health()
        socks.append(c._local.conn.sock)

    t = threading.Thread(target=use)
    t.start()
    t.join()
    use()
    assert len(socks) == 2 and all(s is not None for s in socks)
    c.close()
    assert all(s.fileno() == -1 for s in socks)
    assert c.health()  # a closed client reconnects on use
    c.close()


def test_cache_is_a_context_manager():
    with gencache.Cache() as c:
        c.put("result/" + "1" * 64, b"v")
        assert not c.closed
    assert c.closed
    c.close()  # twice: nothing


def test_a_dropped_cache_goes_by_reference_counting():
    import gc
    import weakref
    gc.disable()  # nothing may depend on the cycle collector
    try:
        c = gencache.Cache()
        c.put("result/" + "2" * 64, b"v")
        assert c.get_or_compute("result/" + "3" * 64, lambda: b"w") == b"w"
        ref = weakref.ref(c)
        del c
        assert ref() is None
    finally:
        gc.enable()

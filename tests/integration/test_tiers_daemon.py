"""The disk and Redis tiers seen through the real daemon: what survives kill -9, what two
daemons on one Redis share, and what clients see while Redis goes away and comes back.

Each case starts its own daemons (and redis-server on a free loopback port) and stops them.
"""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import shutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import Daemon, Runner, check, check_eq  # noqa: E402


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Redis:
    """A throwaway redis-server on a loopback port: no persistence, killed by stop()."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--loglevel", "warning"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.command(b"PING") == b"+PONG\r\n":
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not start on port %d" % self.port)

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def command(self, *args):
        payload = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(payload)
            return s.recv(65536)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def key(i, layer="result"):
    return "%s/%064x" % (layer, i)


def value(i):
    rnd = random.Random(i)
    return bytes(rnd.getrandbits(8) for _ in range(64)) * (1 + i % 64)


def large_value(i):
    """1.5 MiB and a few bytes, different for every i: an inline value of the disk tier that
    spans hundreds of LMDB overflow pages."""
    return random.Random(i).randbytes(64) * (24 * 1024) + bytes([i % 251]) * (1 + i % 7)


def kill9_stream(value_of, keys, kill_range):
    """PUTs of write-through results for keys 0..keys-1 from two connections, cut by kill -9
    after a number of acknowledgements drawn from kill_range: after a restart every acknowledged
    entry reads back byte-identical and nothing corrupt is ever returned."""
    top = tempfile.mkdtemp(prefix="gencache-kill9-")
    data_dir = os.path.join(top, "data")
    acked = []
    d = Daemon(data_dir=data_dir)
    d2 = None
    try:
        kill_after = random.Random(7).randint(*kill_range)
        stop = threading.Event()

        def writer(start):
            conn = d.connect(timeout=5)
            for i in range(start, keys, 2):
                if stop.is_set():
                    return
                try:
                    status, _, _ = d.request("PUT", "/v1/entries/" + key(i), body=value_of(i),
                                             headers={"X-Gencache-Cost-Ms": "1000"}, conn=conn)
                except OSError:
                    return  # the daemon died under us: this PUT was never acknowledged
                if status == 201:
                    acked.append(i)

        writers = [threading.Thread(target=writer, args=(s,)) for s in (0, 1)]
        for w in writers:
            w.start()
        while len(acked) < kill_after and all(w.is_alive() for w in writers):
            time.sleep(0.005)
        d.proc.send_signal(signal.SIGKILL)  # in the middle of the stream
        d.proc.wait()
        stop.set()
        for w in writers:
            w.join()
        check(len(acked) >= kill_after, "only %d PUTs were acknowledged" % len(acked))

        d2 = Daemon(data_dir=data_dir)
        lost, corrupt = 0, 0
        conn = d2.connect()
        for i in range(keys):
            status, headers, body = d2.request("GET", "/v1/entries/" + key(i), conn=conn)
            if status == 200 and body != value_of(i):
                corrupt += 1
            if i in acked and status != 200:
                lost += 1
        print("acknowledged before kill -9: %d; lost after restart: %d; corrupt: %d"
              % (len(acked), lost, corrupt))
        check_eq(corrupt, 0, "entries returned corrupt")
        check_eq(lost, 0, "acknowledged write-through entries lost")
    finally:
        if d.alive():
            d.proc.kill()
        d.stop()
        if d2:
            d2.stop()
        shutil.rmtree(top, ignore_errors=True)


def test_kill9_during_puts():
    """10,000 small write-through PUTs, cut by kill -9 after 600-1200 acknowledgements."""
    kill9_stream(value, 10000, (600, 1200))


def test_kill9_during_large_puts():
    """400 write-through PUTs of 1.5 MiB (inline in the disk tier), cut by kill -9 after 40-80
    acknowledgements."""
    kill9_stream(large_value, 400, (40, 80))


def test_two_daemons_share_redis():
    """A PUT on one daemon is a hit on the other, from Redis first, then from its memory."""
    r = Redis()
    a = b = None
    try:
        a = Daemon("--redis", r.url)
        b = Daemon("--redis", r.url)
        body = value(4242)
        status, _, _ = a.request("PUT", "/v1/entries/" + key(4242), body=body,
                                 headers={"X-Gencache-Cost-Ms": "8600"})
        check_eq(status, 201, "PUT on the first daemon")
        status, headers, got = b.request("GET", "/v1/entries/" + key(4242))
        check_eq(status, 200, "GET on the second daemon")
        check_eq(got, body, "bytes through Redis")
        check_eq(headers.get("x-gencache-tier"), "redis", "first hit's tier")
        check_eq(headers.get("x-gencache-cost-ms"), "8600", "cost carried through Redis")
        status, headers, got = b.request("GET", "/v1/entries/" + key(4242))
        check_eq(status, 200, "second GET")
        check_eq(headers.get("x-gencache-tier"), "mem", "after promotion")
        check_eq(got, body, "promoted bytes")
        # A delete on one node removes the shared copy too.
        status, _, _ = a.request("DELETE", "/v1/entries/" + key(4242))
        check_eq(status, 204, "DELETE")
        check_eq(r.command(b"DBSIZE").strip(), b":0", "Redis after the delete")
    finally:
        for d in (a, b):
            if d:
                d.stop()
        r.stop()


LAYERS = ("result", "image_latent", "text_embedding", "condition", "session")


def put_every_layer(d, first):
    for n, layer in enumerate(LAYERS):
        status, _, _ = d.request("PUT", "/v1/entries/" + key(first + n, layer),
                                 body=value(first + n), headers={"X-Gencache-Model": "m1"})
        check_eq(status, 201, "PUT %s" % layer)


def test_restart_per_layer():
    """What survives a restart, layer by layer, as docs/tiers.md says: after SIGTERM every layer
    but session (write-back values are written to disk before the daemon exits); after kill -9
    the write-through result layer, and nothing corrupt anywhere."""
    top = tempfile.mkdtemp(prefix="gencache-restart-")
    data_dir = os.path.join(top, "data")
    d = Daemon(data_dir=data_dir)
    d2 = d3 = None
    try:
        put_every_layer(d, 100)
        check_eq(d.stop(), 0, "clean exit on SIGTERM")
        d2 = Daemon(data_dir=data_dir)
        for n, layer in enumerate(LAYERS):
            status, headers, body = d2.request("GET", "/v1/entries/" + key(100 + n, layer))
            if layer == "session":
                check_eq(status, 404, "session state after SIGTERM")
                continue
            check_eq(status, 200, "%s after SIGTERM" % layer)
            check_eq(body, value(100 + n), "%s bytes after SIGTERM" % layer)
            check_eq(headers.get("x-gencache-tier"), "disk", "%s read from disk" % layer)
            check_eq(headers.get("x-gencache-model"), "m1", "%s keeps its model" % layer)
        put_every_layer(d2, 200)
        d2.proc.send_signal(signal.SIGKILL)
        d2.proc.wait()
        d3 = Daemon(data_dir=data_dir)
        for n, layer in enumerate(LAYERS):
            status, _, body = d3.request("GET", "/v1/entries/" + key(200 + n, layer))
            if layer == "result":
                check_eq(status, 200, "write-through result after kill -9")
            elif layer == "session":
                check_eq(status, 404, "session state after kill -9")
            if status == 200:
                check_eq(body, value(200 + n), "%s bytes after kill -9" % layer)
    finally:
        for x in (d, d2, d3):
            if x:
                if x.alive():
                    x.proc.kill()
                x.stop()
        shutil.rmtree(top, ignore_errors=True)


def test_write_back_layers_reach_redis():
    """A write-back layer's PUT on one daemon reaches the other through Redis, in the
    background (within a second), while session state stays local."""
    r = Redis()
    a = b = None
    try:
        a = Daemon("--redis", r.url)
        b = Daemon("--redis", r.url)
        for layer in ("image_latent", "text_embedding", "condition", "session"):
            k = "/v1/entries/" + key(77, layer)
            status, _, _ = a.request("PUT", k, body=value(77))
            check_eq(status, 201, "PUT %s" % layer)
            deadline = time.monotonic() + 2
            status = 404
            while time.monotonic() < deadline and status != 200:
                status, headers, got = b.request("GET", k)
                if status != 200:
                    time.sleep(0.05)
            if layer == "session":
                check_eq(status, 404, "session state is not shared")
                continue
            check_eq(status, 200, "%s through Redis" % layer)
            check_eq(headers.get("x-gencache-tier"), "redis", "%s tier" % layer)
            check_eq(got, value(77), "%s bytes" % layer)
    finally:
        for d in (a, b):
            if d:
                d.stop()
        r.stop()


def test_model_lineage_and_savings():
    """Invalidating a model removes what was derived from it in every layer; a GET that says
    what it would have cost is credited that cost."""
    d = Daemon()
    try:
        for n, layer in enumerate(("result", "image_latent", "text_embedding", "condition")):
            for model in ("m1", "m2"):
                i = 10 * n + (model == "m2")
                status, _, _ = d.request("PUT", "/v1/entries/" + key(i, layer), body=value(i),
                                         headers={"X-Gencache-Model": model,
                                                  "X-Gencache-Cost-Ms": "100"})
                check_eq(status, 201, "PUT %s %s" % (layer, model))
        status, _, body = d.request("POST", "/v1/invalidate", body=b'{"model": "m1"}')
        check_eq(status, 200, "invalidate by model")
        check_eq(json.loads(body)["invalidated"], 4, "entries of m1 across the layers")
        for n, layer in enumerate(("result", "image_latent", "text_embedding", "condition")):
            check_eq(d.request("GET", "/v1/entries/" + key(10 * n, layer))[0], 404,
                     "%s of m1" % layer)
            check_eq(d.request("GET", "/v1/entries/" + key(10 * n + 1, layer))[0], 200,
                     "%s of m2" % layer)
        status, _, _ = d.request("GET", "/v1/entries/" + key(1, "result"),
                                 headers={"X-Gencache-Cost-Ms": "9000"})
        check_eq(status, 200, "GET with the requester's cost")
        status, _, _ = d.request("GET", "/v1/entries/" + key(1, "result"),
                                 headers={"X-Gencache-Cost-Ms": "soon"})
        check_eq(status, 400, "malformed cost")
        status, _, _ = d.request("PUT", "/v1/entries/" + key(99), body=b"x",
                                 headers={"X-Gencache-Model": "m" * 129})
        check_eq(status, 400, "model name too long")
        _, _, metrics = d.request("GET", "/metrics")
        line = [ln for ln in metrics.decode().splitlines()
                if ln.startswith('gencache_compute_seconds_saved_total{layer="result"}')]
        check_eq(len(line), 1, "savings metric")
        # One GET credited 9 s (the requester's cost), the first GET of m2's result 0.1 s.
        check_eq(float(line[0].split()[-1]), 9.1, "seconds saved")
    finally:
        d.stop()


def test_redis_goes_away_and_comes_back():
    """Redis killed under load: clients see no errors and no long stalls, only misses; Redis
    restarted on the same port: the daemons reconnect and shared hits resume."""
    r = Redis()
    port = r.port
    a = b = None
    try:
        a = Daemon("--redis", r.url, "--redis-timeout", "100")
        b = Daemon("--redis", r.url, "--redis-timeout", "100")
        errors, slowest = [], [0.0]
        stop = threading.Event()

        def load(worker):
            conn_a, conn_b = a.connect(timeout=5), b.connect(timeout=5)
            i = worker * 1000000
            while not stop.is_set():
                i += 1
                t0 = time.monotonic()
                try:
                    s1, _, _ = a.request("PUT", "/v1/entries/" + key(i, "result"),
                                         body=b"x" * 2048, conn=conn_a)
                    s2, _, _ = b.request("GET", "/v1/entries/" + key(i, "result"), conn=conn_b)
                except OSError as e:
                    errors.append(repr(e))
                    return
                slowest[0] = max(slowest[0], time.monotonic() - t0)
                if s1 != 201 or s2 not in (200, 404):
                    errors.append("PUT %d, GET %d" % (s1, s2))

        threads = [threading.Thread(target=load, args=(w,)) for w in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        r.stop()  # kill -9 under load
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join()
        print("requests under Redis loss: %d errors, slowest PUT+GET pair %.0f ms"
              % (len(errors), slowest[0] * 1000))
        check_eq(errors[:3], [], "errors seen by clients")
        check(slowest[0] < 1.0, "a request stalled %.3f s" % slowest[0])

        r = Redis(port)  # back on the same port
        t0 = time.monotonic()
        n, resumed = 0, None
        while time.monotonic() - t0 < 5:
            n += 1
            k = key(5000000 + n)
            a.request("PUT", "/v1/entries/" + k, body=b"back")
            status, headers, _ = b.request("GET", "/v1/entries/" + k)
            if status == 200 and headers.get("x-gencache-tier") == "redis":
                resumed = time.monotonic() - t0
                break
            time.sleep(0.02)
        print("shared hits resumed %.0f ms after Redis came back"
              % ((resumed or 99) * 1000))
        check(resumed is not None and resumed <= 1.0,
              "shared hits did not resume within 1 s (%s)" % resumed)
    finally:
        for d in (a, b):
            if d:
                d.stop()
        r.stop()


if __name__ == "__main__":
    runner = Runner()
    runner.run("kill9_during_puts", test_kill9_during_puts)
    runner.run("kill9_during_large_puts", test_kill9_during_large_puts)
    runner.run("two_daemons_share_redis", test_two_daemons_share_redis)
    runner.run("redis_goes_away_and_comes_back", test_redis_goes_away_and_comes_back)
    runner.run("restart_per_layer", test_restart_per_layer)
    runner.run("write_back_layers_reach_redis", test_write_back_layers_reach_redis)
    runner.run("model_lineage_and_savings", test_model_lineage_and_savings)
    runner.finish()

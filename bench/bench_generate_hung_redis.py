#!/usr/bin/python3
"""POST /v1/generate with a Redis tier that hangs: a loopback listener that accepts connections
and never answers stands in for Redis (tiers.redis.timeout_ms = TIMEOUT_MS). The Redis tier's
breaker turns most calls into fast misses, but every backoff one call probes the server and
waits out the whole timeout. For DURATION_S seconds, C clients each send generate requests for
new keys (misses: the upstream, examples/upstream.py, takes 100 ms), and one client asks for a
key already in memory (hits). Prints how many misses were answered and their latency: a probe
that stalls while holding a lock every miss needs shows up as stalls of every request. Compare
two builds by running it against each:

    GENCACHE_BIN_DIR=build/bin /usr/bin/python3 bench/bench_generate_hung_redis.py
"""
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from gencached_fixture import Daemon, Upstream  # noqa: E402

C = int(os.environ.get("C", "8"))
DURATION_S = float(os.environ.get("DURATION_S", "6"))
TIMEOUT_MS = int(os.environ.get("TIMEOUT_MS", "1000"))


def mute_redis():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    conns = []

    def serve():
        while True:
            try:
                conns.append(s.accept()[0])  # kept open, never answered
            except OSError:
                return
    threading.Thread(target=serve, daemon=True).start()
    return s


def gen(d, seed):
    doc = {"model": "sdxl", "prompt": "hung redis", "seed": seed, "steps": 20}
    t0 = time.perf_counter()
    st, h, _ = d.request("POST", "/v1/generate", body=json.dumps(doc).encode(),
                         headers={"Content-Type": "application/json"})
    return st, h.get("x-gencache"), time.perf_counter() - t0


def main():
    redis = mute_redis()
    cfg = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    cfg.write("tiers:\n  redis:\n    url: redis://127.0.0.1:%d\n    timeout_ms: %d\n"
              % (redis.getsockname()[1], TIMEOUT_MS))
    cfg.close()
    up = Upstream("--sleep-ms", "100", "--size-kb", "16")
    d = Daemon("--config", cfg.name, "--upstream", up.url, threads=C + 4)
    try:
        st, outcome, first = gen(d, 0)  # stored in memory (and, write-through, not in Redis)
        st2, outcome2, _ = gen(d, 0)
        print("setup: first %d %s %.0f ms, again %d %s" % (st, outcome, first * 1e3, st2,
                                                           outcome2))
        for seed in range(10**6, 10**6 + 10):  # until the breaker answers misses fast
            if gen(d, seed)[2] < 0.5:
                break
        misses, hits = [], []
        stop = threading.Event()
        seeds = iter(range(1, 10**6))
        lock = threading.Lock()

        def hitter():
            while not stop.is_set():
                hits.append(gen(d, 0))

        def misser():
            while not stop.is_set():
                with lock:
                    seed = next(seeds)
                misses.append(gen(d, seed))
        ts = [threading.Thread(target=hitter)] + [threading.Thread(target=misser)
                                                   for _ in range(C)]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        time.sleep(DURATION_S)
        stop.set()
        for t in ts:
            t.join()
        wall = time.perf_counter() - t0
        ok = sum(1 for st, _, _ in misses if st == 200)
        lat = sorted(x for _, _, x in misses)
        hl = sorted(x for _, o, x in hits if o == "hit")
        print("binary: %s" % os.environ.get("GENCACHE_BIN_DIR", "build/bin"))
        if os.environ.get("VERBOSE"):
            print("slow misses (ms):", [round(x * 1e3) for x in lat if x > 0.5])
        def pct(p):
            return lat[min(len(lat) - 1, int(p * len(lat)))] * 1e3
        print("%d clients, %.1f s, Redis hung (timeout %d ms): %d misses answered 200 (%.1f/s); "
              "latency median %.0f ms, p90 %.0f ms, p99 %.0f ms, max %.0f ms; over 500 ms: %d"
              % (C, wall, TIMEOUT_MS, ok, ok / wall, pct(0.5), pct(0.9), pct(0.99), lat[-1] * 1e3,
                 sum(1 for x in lat if x > 0.5)))
        if hl:
            print("%d hits meanwhile: median %.1f ms, max %.1f ms"
                  % (len(hl), statistics.median(hl) * 1e3, hl[-1] * 1e3))
    finally:
        d.stop()
        up.stop()
        redis.close()
        os.unlink(cfg.name)


if __name__ == "__main__":
    main()

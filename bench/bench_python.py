#!/usr/bin/python3
"""Benchmark: the cost of one call from Python, and fetching a 1.5 MiB latent.

Part 1, per call (median ns per call over batches of calls, rounds interleaved):
  - Cache.get_bytes of 100 B and Cache.get_tensor of a 1.5 MiB f16 latent through the C
    extension (gencache._fast) and through the ctypes fallback (the extension switched off),
  - the baselines of the same run: the two raw ctypes calls a lookup needs (gencache_get +
    gencache_handle_release, no copy) and a Python dict lookup,
with the ratios and the goals (get_bytes <= 1.5 us, get_tensor <= 3 us).

Part 3, the device tier (Cache(device=D, device_bytes=...)): a promotion of a 1.5 MiB and of a
64 MiB tensor (host hit -> resident on D: pinned staging and a non-blocking copy on a side stream
on CUDA) and a device hit, against a plain pinned_tensor.to(D, non_blocking=True) (with copy=True
on the CPU, where .to() of the same device would return the tensor itself), each followed by
torch.cuda.synchronize() on CUDA so a copy is timed to its end. D is --device (default: cuda
when available, else cpu).

Part 2, fetching a latent; measures, in one run, the median time of
  - gencache.Cache.get_tensor() on a hit (in-process: a read-only numpy view, no copy),
  - the same as a torch tensor (kind="torch"),
  - numpy.load() of the same array from an .npy file in the page cache,
  - redis-py GET + numpy.frombuffer() against a redis-server this script starts on a free
    loopback port (redis-server --port P --save '' --appendonly no), when redis-py and
    redis-server are installed,
and prints the ratios of each baseline to the in-process hit.

    PYTHONPATH=bindings/python GENCACHE_LIB=build/src/libgencache.so \\
        /usr/bin/python3 bench/bench_python.py [--iters N] [--rounds R] [--shape 16,4,96,128]

Pin it to one core for steadier figures (taskset -c 1 ...): everything runs in one process.
"""
import argparse
import importlib.util
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

try:
    import gencache
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                    "bindings", "python"))
    import gencache


def median_ns(fn, iters, warmup=20):
    for _ in range(warmup):
        fn()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(iters):
        t0 = clock()
        fn()
        samples.append(clock() - t0)
    return statistics.median(samples)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis():
    exe = shutil.which("redis-server")
    if not exe:
        return None, None
    for _ in range(5):
        port = free_port()
        proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return proc, port
            except OSError:
                time.sleep(0.02)
        proc.kill()
        proc.wait()
    return None, None


def fmt_us(ns):
    return "%10.1f us" % (ns / 1000)


def batch_ns(fn, calls, batches, warmup=200):
    """Median ns per call over `batches` batches of `calls` calls (a per-call clock read would
    cost as much as the calls measured)."""
    for _ in range(warmup):
        fn()
    clock = time.perf_counter_ns
    rng = range(calls)
    samples = []
    for _ in range(batches):
        t0 = clock()
        for _ in rng:
            fn()
        samples.append((clock() - t0) / calls)
    return statistics.median(samples)


def per_call(args, latent):
    """Part 1: one call's cost, extension vs ctypes vs the raw calls and a dict."""
    import ctypes
    from gencache import _lib
    key = "result/" + "ab" * 32
    tkey = "image_latent/" + "5a" * 32
    value = bytes(range(100))
    fast = gencache.Cache(mem_max_bytes=64 << 20)
    slow = gencache.Cache(mem_max_bytes=64 << 20)
    slow._core = None  # the ctypes fallback, as without the extension
    for c in (fast, slow):
        c.put(key, value)
        c.put_tensor(tkey, latent)
    assert fast._core is not None, "gencache._fast is not built: build with cmake first"
    lib = _lib.lib
    c_get, c_release = lib.gencache_get, lib.gencache_handle_release
    ptr, bkey, out = fast._ptr, key.encode(), ctypes.c_void_p()

    def raw():
        c_get(ptr, bkey, out)
        c_release(out.value)

    d = {key: value}
    methods = [
        ("dict.get (100 B)", lambda: d.get(key)),
        ("raw ctypes get+release (100 B)", raw),
        ("get_bytes 100 B, extension", lambda: fast.get_bytes(key)),
        ("get_bytes 100 B, ctypes", lambda: slow.get_bytes(key)),
        ("get_tensor 1.5 MiB, extension", lambda: fast.get_tensor(tkey)),
        ("get_tensor 1.5 MiB, ctypes", lambda: slow.get_tensor(tkey)),
    ]
    if importlib.util.find_spec("torch") is not None:
        methods.append(("get_tensor torch, extension",
                        lambda: fast.get_tensor(tkey, kind="torch")))
        methods.append(("get_tensor torch, ctypes", lambda: slow.get_tensor(tkey, kind="torch")))
    per_round = {name: [] for name, _ in methods}
    for _ in range(args.rounds):
        for name, fn in methods:
            per_round[name].append(batch_ns(fn, 1000, max(args.iters // 1000, 3)))
    res = {name: statistics.median(v) for name, v in per_round.items()}
    fast.close()
    slow.close()
    base = res["raw ctypes get+release (100 B)"]
    print("per call (%d rounds; median ns per call)" % args.rounds)
    print("%-34s %10s %14s %10s" % ("call", "median", "vs raw ctypes", "vs dict"))
    for name, _ in methods:
        print("%-34s %7.0f ns %13.2fx %9.1fx" % (name, res[name], res[name] / base,
                                                  res[name] / res["dict.get (100 B)"]))
    for name, goal in (("get_bytes 100 B, extension", 1500),
                       ("get_bytes 100 B, ctypes", 1500),
                       ("get_tensor 1.5 MiB, extension", 3000),
                       ("get_tensor 1.5 MiB, ctypes", 3000)):
        print("goal %-30s <= %.1f us: %s" % (name, goal / 1000,
                                              "met" if res[name] <= goal else "NOT met"))
    print()


def device_tier(args):
    """Part 3: promotions into the device tier against a plain .to(device) from pinned memory."""
    import torch
    dev = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = torch.device(dev).type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    print("device tier on %s%s (median us over %d rounds)"
          % (dev, "" if cuda else "; no GPU in this run: host memory stands in for the device",
             args.rounds))
    print("%-28s %12s %12s %12s %10s" % ("tensor", "promotion", "device hit", ".to() pinned",
                                        "promo/.to"))
    for label, shape in (("1.5 MiB f16", (16, 4, 96, 128)), ("64 MiB f16", (32, 16, 256, 256))):
        host = torch.randn(shape).to(torch.float16)
        nbytes = host.numel() * 2
        cache = gencache.Cache(mem_max_bytes=4 * nbytes + (64 << 20), device=dev,
                               device_bytes=2 * nbytes)
        key = "image_latent/" + "d1" * 32
        cache.put_tensor(key, host)
        tier = cache.device_tier
        assert torch.equal(cache.get_tensor(key, device=dev).cpu(), host)
        pinned = host.pin_memory() if cuda else host.clone()

        def promote():
            tier.drop(key)  # the next get promotes again
            cache.get_tensor(key, device=dev)
            sync()

        def hit():
            cache.get_tensor(key, device=dev)

        def plain():
            if cuda:
                pinned.to(dev, non_blocking=True)
            else:
                pinned.to(dev, copy=True)
            sync()

        calls = 10 if nbytes > (16 << 20) else 200
        rounds = {"promote": [], "hit": [], "plain": []}
        for _ in range(args.rounds):
            rounds["promote"].append(batch_ns(promote, calls, 3, warmup=3))
            rounds["hit"].append(batch_ns(hit, 1000, 3))
            rounds["plain"].append(batch_ns(plain, calls, 3, warmup=3))
        med = {k: statistics.median(v) / 1000 for k, v in rounds.items()}
        stats = tier.stats()
        assert stats["hits"] > 0 and stats["promotions"] > 0
        cache.close()
        print("%-28s %9.1f us %9.2f us %9.1f us %9.2fx"
              % (label, med["promote"], med["hit"], med["plain"], med["promote"] / med["plain"]))
    print()


def main():
    p = argparse.ArgumentParser(description="get_tensor of a latent vs numpy.load and redis-py")
    p.add_argument("--iters", type=int, default=2000,
                   help="timed gencache calls per round (baselines: a tenth)")
    p.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    p.add_argument("--shape", default="16,4,96,128", help="f16 latent shape (1.5 MiB)")
    p.add_argument("--device", default=None,
                   help="the device tier's torch device (default: cuda if available, else cpu)")
    args = p.parse_args()
    shape = tuple(int(d) for d in args.shape.split(","))
    latent = np.random.default_rng(0).standard_normal(shape).astype(np.float16)
    key = "image_latent/" + "5a" * 32
    print("latent: f16 %s, %d bytes; %d rounds; library %s; extension %s"
          % (list(shape), latent.nbytes, args.rounds, gencache.library_path,
             gencache._lib.fast_path))
    per_call(args, latent)
    if importlib.util.find_spec("torch") is not None:
        device_tier(args)

    methods = []  # (name, fn, calls per round)
    cache = gencache.Cache(mem_max_bytes=256 << 20)
    cache.put_tensor(key, latent, cost_s=0.05)
    got = cache.get_tensor(key)
    assert got.dtype == latent.dtype and np.array_equal(got, latent)
    methods.append(("gencache get_tensor (numpy view)", lambda: cache.get_tensor(key),
                    args.iters))
    if importlib.util.find_spec("torch") is not None:
        methods.append(("gencache get_tensor (torch view)",
                        lambda: cache.get_tensor(key, kind="torch"), args.iters))

    tmp = tempfile.mkdtemp(prefix="bench-python-")
    path = os.path.join(tmp, "latent.npy")
    np.save(path, latent)
    assert np.array_equal(np.load(path), latent)
    methods.append(("numpy.load (page cache)", lambda: np.load(path),
                    max(args.iters // 10, 50)))

    proc = None
    try:
        import redis
    except ImportError:
        redis = None
        print("redis-py not installed (Debian: python3-redis): redis baseline skipped")
    if redis is not None:
        proc, port = start_redis()
        if proc is None:
            print("redis-server not available: redis baseline skipped")
        else:
            r = redis.Redis(host="127.0.0.1", port=port)
            r.set(key, latent.tobytes())

            def redis_get():
                return np.frombuffer(r.get(key), dtype=np.float16).reshape(shape)

            assert np.array_equal(redis_get(), latent)
            methods.append(("redis-py GET + frombuffer", redis_get, max(args.iters // 10, 50)))
    try:
        # Rounds interleave the methods, so a burst of load on a shared machine hits them
        # alike; each figure is the median over rounds of the per-round medians.
        per_round = {name: [] for name, _, _ in methods}
        for _ in range(args.rounds):
            for name, fn, iters in methods:
                per_round[name].append(median_ns(fn, iters))
        results = [(name, statistics.median(per_round[name])) for name, _, _ in methods]
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
        cache.close()
    inproc = results[0][1]

    print("%-36s %13s %12s" % ("method", "median", "vs gencache"))
    for name, ns in results:
        print("%-36s %13s %11.1fx" % (name, fmt_us(ns), ns / inproc))
    redis_row = [ns for name, ns in results if name.startswith("redis")]
    if redis_row:
        ratio = redis_row[0] / inproc
        print("in-process hit is %.0fx faster than redis-py (goal >= 100x): %s"
              % (ratio, "met" if ratio >= 100 else "NOT met"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""GET /metrics against the real daemon: the output passes `promtool check metrics` (Debian
package prometheus; the test fails, never skips, without it), carries every metric name of
DESIGN.md section 5 with HELP and TYPE, and its counters move exactly as the requests made them
move: lookups, hits by tier, compute seconds saved, coalesced requests, upstream outcomes, bytes
and entries, the latency histogram, hits served by several worker threads at once each counted
once. `gencache stats` prints the readable summary."""
import json
import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import GENCACHE, Daemon, Runner, Upstream, check, check_eq  # noqa: E402

PROMTOOL = "/usr/bin/promtool"
NAMES = {
    "gencache_lookups_total": "counter", "gencache_hits_total": "counter",
    "gencache_bytes": "gauge", "gencache_entries": "gauge",
    "gencache_evictions_total": "counter", "gencache_compute_seconds_saved_total": "counter",
    "gencache_request_duration_seconds": "histogram", "gencache_coalesced_total": "counter",
    "gencache_upstream_requests_total": "counter", "gencache_backend_errors_total": "counter",
    "gencache_ghost_hits_total": "counter", "gencache_tier_hits_total": "counter",
    "gencache_memory_pressure_ratio": "gauge", "gencache_memory_pressure_level": "gauge",
    "gencache_memory_pressure_evictions_total": "counter",
}
LINE = re.compile(r'^([a-z_:][a-z0-9_:]*)(\{[^}]*\})? (\S+)$')


def scrape(d):
    st, h, body = d.request("GET", "/metrics")
    check_eq(st, 200, "metrics status")
    check(h.get("content-type", "").startswith("text/plain; version=0.0.4"),
          "content type %r" % h.get("content-type"))
    return body.decode()


def parse(text):
    """{(name, frozenset of label pairs): value}, and {name: type}."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            types[name] = typ
            continue
        if not line or line.startswith("#"):
            continue
        m = LINE.match(line)
        check(m is not None, "malformed sample line %r" % line)
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples, types


def val(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def promtool(text):
    if not os.path.exists(PROMTOOL):
        raise AssertionError("%s is missing: install the Debian package 'prometheus' "
                             "(scripts/install-deps.sh)" % PROMTOOL)
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    check_eq(p.returncode, 0, "promtool check metrics: %s%s" % (p.stdout, p.stderr))


def gen(d, doc):
    return d.request("POST", "/v1/generate", body=json.dumps(doc).encode())


def t_format(d, up):
    text = scrape(d)
    promtool(text)
    samples, types = parse(text)
    for name, typ in NAMES.items():
        check_eq(types.get(name), typ, "TYPE of " + name)
        check("# HELP %s " % name in text, "HELP of " + name)
    for tier in ("mem", "disk"):
        check((("gencache_bytes", frozenset({("tier", tier)})) in samples), "bytes of " + tier)
        for reason in ("capacity", "expired", "corrupt"):
            check(("gencache_evictions_total",
                   frozenset({("tier", tier), ("reason", reason)})) in samples,
                  "evictions %s %s" % (tier, reason))
    for outcome in ("ok", "error", "timeout"):
        check(("gencache_upstream_requests_total", frozenset({("outcome", outcome)}))
              in samples, "upstream outcome " + outcome)
    st, h, body = d.request("HEAD", "/metrics")
    check_eq((st, body), (200, b""), "HEAD /metrics")
    st, h, _ = d.request("POST", "/metrics", body=b"x")
    check_eq(st, 405, "POST /metrics")


def t_counters_move(d, up):
    before, _ = parse(scrape(d))
    doc = {"model": "sdxl", "prompt": "metrics", "seed": 1}
    st, h, _ = gen(d, doc)
    check_eq(h.get("x-gencache"), "miss", "first")
    cost_ms = int(h["x-gencache-cost-ms"])
    for _ in range(2):
        st, h, _ = gen(d, doc)
        check_eq(h.get("x-gencache"), "hit", "hits")
    gen(d, {"model": "sdxl", "prompt": "no seed"})  # bypass: upstream ok, no lookup
    st, _, _ = gen(d, {"model": "sdxl", "prompt": "fails", "seed": 2, "params": {"fail": 500}})
    check_eq(st, 502, "upstream error")
    # Three identical requests while the first is in flight: two coalesced.
    slow = {"model": "sdxl", "prompt": "slow", "seed": 3, "params": {"sleep_ms": 1500}}
    out = []
    barrier = threading.Barrier(3)

    def one():
        barrier.wait()
        out.append(gen(d, slow))

    ts = [threading.Thread(target=one) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(20)
    outcomes = sorted(r[1].get("x-gencache") for r in out)
    check_eq(outcomes, ["coalesced", "coalesced", "miss"], "coalesced outcomes")
    # An entry PUT and read through the entries API.
    k = "result/" + "ab" * 32
    check_eq(d.request("PUT", "/v1/entries/" + k, body=b"x" * 4096)[0], 201, "put")
    check_eq(d.request("GET", "/v1/entries/" + k)[0], 200, "get")

    # The latency histogram records a request when libmicrohttpd reports it complete, which can
    # come just after the client has read the answer: scrape until the last requests are in.
    deadline = time.time() + 5
    while True:
        text = scrape(d)
        after, _ = parse(text)
        count = val(after, "gencache_request_duration_seconds_count", route="entries") - \
            val(before, "gencache_request_duration_seconds_count", route="entries")
        if count >= 2 or time.time() > deadline:
            break
        time.sleep(0.01)
    promtool(text)

    def delta(name, **labels):
        return val(after, name, **labels) - val(before, name, **labels)

    # Lookups: one per cacheable generate request (a bypass has none) and the entry GET.
    # Hits: 2 generate hits and the entry GET; misses: the first, the failing one, the 3 slow.
    check_eq(delta("gencache_lookups_total", layer="result", outcome="hit"), 3, "result hits")
    check_eq(delta("gencache_lookups_total", layer="result", outcome="miss"), 5, "result misses")
    # Every hit the daemon serves is attributed to its tier: 2 generate hits and the entry GET.
    check_eq(delta("gencache_hits_total", layer="result", tier="mem"), 3, "hits served from mem")
    check_eq(delta("gencache_hits_total", layer="result", tier="unknown"), 0, "unattributed hits")
    tiers_sum = sum(v - val(before, n, **dict(l)) for (n, l), v in after.items()
                    if n == "gencache_hits_total" and ("layer", "result") in l)
    check_eq(tiers_sum, 3, "hits by tier add up to the layer's hits")
    # The library's own count per tier agrees with the daemon's per (layer, tier).
    check_eq(delta("gencache_tier_hits_total", tier="mem"), 3, "library's hits answered by mem")
    saved = delta("gencache_compute_seconds_saved_total", layer="result")
    check(abs(saved - 2 * cost_ms / 1000.0) < 0.0015, "seconds saved %.3f for 2 hits of %d ms"
          % (saved, cost_ms))
    check_eq(delta("gencache_coalesced_total"), 2, "coalesced")
    check_eq(delta("gencache_upstream_requests_total", outcome="ok"), 3, "upstream ok")
    check_eq(delta("gencache_upstream_requests_total", outcome="error"), 1, "upstream errors")
    check_eq(delta("gencache_upstream_requests_total", outcome="timeout"), 0, "timeouts")
    check(val(after, "gencache_bytes", tier="mem") >= 2 * 32 * 1024 + 4096, "bytes in mem")
    check_eq(delta("gencache_entries", tier="mem"), 3, "entries in mem")
    n_gen = delta("gencache_request_duration_seconds_count", route="generate")
    check_eq(n_gen, 8, "generate requests in the histogram")
    inf = delta("gencache_request_duration_seconds_bucket", route="generate", le="+Inf")
    check_eq(inf, 8, "+Inf bucket")
    # Five took about the upstream's 50 ms or less, the three slow ones 1.5 s.
    fast = delta("gencache_request_duration_seconds_bucket", route="generate", le="1")
    check_eq(fast, 5, "generate requests under 1 s")
    check(delta("gencache_request_duration_seconds_sum", route="generate") >= 3 * 1.5,
          "latency sum covers the waits")
    check_eq(delta("gencache_request_duration_seconds_count", route="entries"), 2, "entries")


def t_stats_summary(d, up):
    p = subprocess.run([GENCACHE, "stats", "--url", d.url], capture_output=True, text=True,
                       timeout=30)
    check_eq(p.returncode, 0, "stats exit status: " + p.stderr)
    out = p.stdout
    check(re.search(r"hit ratio \d+\.\d%", out), "overall hit ratio in %r" % out)
    check("GPU-seconds saved" in out, "GPU-seconds saved in %r" % out)
    check(re.search(r"^result +\d+ +\d+ +\d+\.\d%", out, re.M), "result layer ratio: %r" % out)
    check(re.search(r"^mem [\d.]+ (B|KiB|MiB)", out, re.M), "mem tier bytes: %r" % out)


def t_concurrent_hits():
    """Hits served by several worker threads at once, the first ones of each (layer, tier) pair
    racing to add it: every hit is counted once, under one label per pair."""
    d = Daemon(threads=4)
    try:
        keys = {"result": "result/" + "ab" * 32, "text_embedding": "text_embedding/" + "cd" * 32}
        for key in keys.values():
            st, _, _ = d.request("PUT", "/v1/entries/" + key, body=b"v" * 4096)
            check_eq(st, 201, "put " + key)
        per_thread, n_threads = 60, 8
        barrier = threading.Barrier(n_threads)
        failures = []

        def worker(i):
            conn = d.connect()
            try:
                barrier.wait()
                for j in range(per_thread):
                    key = keys["result" if (i + j) % 2 == 0 else "text_embedding"]
                    st, _, _ = d.request("GET", "/v1/entries/" + key, conn=conn)
                    if st != 200:
                        failures.append(st)
            finally:
                conn.close()

        ts = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        check_eq(failures, [], "failed GETs")
        text = scrape(d)
        samples, _ = parse(text)
        half = n_threads * per_thread // 2
        for layer in keys:
            check_eq(val(samples, "gencache_hits_total", layer=layer, tier="mem"), half,
                     "%s hits from mem" % layer)
            check_eq(val(samples, "gencache_hits_total", layer=layer, tier="unknown"), 0,
                     "%s hits without a tier" % layer)
        lines = [ln for ln in text.splitlines()
                 if ln.startswith('gencache_hits_total{layer="result",tier="mem"}')]
        check_eq(len(lines), 1, "lines for result/mem")
    finally:
        rc = d.stop()
    check_eq(rc, 0, "exit status")


def main():
    r = Runner()
    r.run("concurrent_hits", t_concurrent_hits)
    up = Upstream("--sleep-ms", "50", "--size-kb", "32")
    try:
        d = Daemon("--upstream", up.url, "--upstream-timeout", "5")
        try:
            r.run("format", t_format, d, up)
            r.run("counters_move", t_counters_move, d, up)
            r.run("stats_summary", t_stats_summary, d, up)
        finally:
            rc = d.stop()
        r.run("clean_exit", lambda: check_eq(rc, 0, "exit status"))
    finally:
        up.stop()
    r.finish()


if __name__ == "__main__":
    main()

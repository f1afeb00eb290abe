#!/usr/bin/python3
"""The daemon's memory stays bounded beyond its tiers' caps (issue 15, item 5): request bodies in
flight share limits.max_inflight_bytes (past it: 503 busy, before the body is read), and one
tenant's unfinished prewarm jobs hold at most limits.prewarm_max_bytes of requests. The daemon's
resident memory is read from /proc/<pid>/status while twelve 48 MiB uploads run at once."""
import json
import os
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import Daemon, Runner, Upstream, check, check_eq  # noqa: E402

MiB = 1 << 20
UPLOAD = 48 * MiB
BUDGET = 128 * MiB
CAP = 64 * MiB

CONFIG = """
limits:
  max_inflight_bytes: 128M
  prewarm_max_bytes: 256K
"""


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class RssSampler:
    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, 0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, rss(self.pid))
            time.sleep(0.005)

    def finish(self):
        self.stop.set()
        self.thread.join(5)
        return self.peak


def read_head(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def upload(d, i, payload, out, expect):
    """PUT payload; out[i] = the final status (with Expect: 100-continue, as curl sends for large
    bodies, a refused body is never sent)."""
    s = socket.create_connection(("127.0.0.1", d.port), timeout=60)
    try:
        head = ("PUT /v1/entries/text_embedding/%064x HTTP/1.1\r\nHost: x\r\n"
                "Content-Type: application/octet-stream\r\nContent-Length: %d\r\n%s\r\n"
                % (i + 1, len(payload), "Expect: 100-continue\r\n" if expect else ""))
        s.sendall(head.encode())
        if expect:
            resp = read_head(s)
            if resp.startswith(b"HTTP/1.1 100"):
                s.sendall(payload)
                resp = resp.split(b"\r\n\r\n", 1)[1] or read_head(s)
        else:
            try:
                s.sendall(payload)
            except OSError:
                pass  # refused early: the answer is waiting
            resp = read_head(s)
        out[i] = int(resp.split()[1]) if resp else "no answer"
    except OSError as e:
        out[i] = repr(e)
    finally:
        s.close()


def burst(d, n, expect):
    payload = os.urandom(UPLOAD)
    out = [None] * n
    ts = [threading.Thread(target=upload, args=(d, i, payload, out, expect)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    return out


def t_uploads_within_budget(d):
    base = rss(d.proc.pid)
    sampler = RssSampler(d.proc.pid)
    out = burst(d, 12, expect=True)
    peak = sampler.finish()
    check(set(out) <= {201, 503}, "statuses %r" % out)
    check(out.count(201) >= 2, "uploads within the budget stored: %r" % out)
    check(out.count(503) >= 1, "uploads beyond the budget refused: %r" % out)
    grown = (peak - base) / MiB
    print("   12 x 48 MiB uploads: %s, RSS %d -> %d MiB (+%.0f)" % (
        {s: out.count(s) for s in set(out)}, base / MiB, peak / MiB, grown))
    # The memory tier's cap, the in-flight budget, and room for one encoded copy in flight.
    check(grown <= (CAP + BUDGET + UPLOAD) / MiB,
          "resident memory grew by %.0f MiB (cap 64 + budget 128 + 48)" % grown)
    # A request's share of the budget returns when the daemon has finished with it, which can be
    # a moment after its client read the answer (slower still under a sanitizer).
    deadline = time.monotonic() + 5
    while True:
        st, _, text = d.request("GET", "/metrics")
        if b"gencache_inflight_body_bytes 0\n" in text or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    check(b"gencache_inflight_body_bytes 0\n" in text, "budget given back after the burst")


def t_uploads_without_expect(d):
    # A client that sends its body at once gets the 503 as well (MHD reads and drops the rest).
    out = burst(d, 6, expect=False)
    check(all(s in (201, 503) or isinstance(s, str) for s in out), "statuses %r" % out)
    check(out.count(201) >= 1, "stored: %r" % out)
    st, _, _ = d.request("GET", "/healthz")
    check_eq(st, 200, "healthz after the burst")


def t_prewarm_bytes_per_tenant(up):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "gencache.yaml")
        with open(path, "w") as f:
            f.write(CONFIG)
        d = Daemon("--config", path, "--upstream", up.url, "--prewarm-concurrency", "1")
        try:
            line = lambda i: json.dumps({"model": "m", "seed": i, "prompt": "p" * 900,
                                         "params": {"sleep_ms": 2000}})
            big = "\n".join(line(i) for i in range(400)).encode()  # ~370 KiB of requests
            st, _, body = d.request("POST", "/v1/prewarm", body=big)
            check_eq((st, json.loads(body)["error"]["code"]), (413, "limit"), "one job too big")
            half = "\n".join(line(i) for i in range(160)).encode()  # ~150 KiB
            st, _, _ = d.request("POST", "/v1/prewarm", body=half)
            check_eq(st, 202, "a job within the limit")
            st, _, body = d.request("POST", "/v1/prewarm", body=half)
            check_eq((st, json.loads(body)["error"]["code"]), (429, "too_many_jobs"),
                     "a second job past the tenant's prewarm bytes")
            st, _, _ = d.request("POST", "/v1/prewarm", body=line(999).encode())
            check_eq(st, 202, "a small job still fits")
        finally:
            d.stop()


def main():
    r = Runner()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "gencache.yaml")
        with open(path, "w") as f:
            f.write(CONFIG)
        d = Daemon("--config", path, "--max-memory", "64M", "--max-body", "64M")
        try:
            r.run("uploads_within_budget", t_uploads_within_budget, d)
            r.run("uploads_without_expect", t_uploads_without_expect, d)
        finally:
            rc = d.stop()
        r.run("clean_exit", lambda: check_eq(rc, 0, "exit status"))
    up = Upstream("--size-kb", "1")
    try:
        r.run("prewarm_bytes_per_tenant", t_prewarm_bytes_per_tenant, up)
    finally:
        up.stop()
    r.finish()


if __name__ == "__main__":
    main()

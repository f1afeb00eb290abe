#!/usr/bin/python3
"""POST /v1/generate, the caching proxy, against the real daemon and examples/upstream.py: miss
then hit with the upstream's bytes, 50 concurrent identical requests that call the upstream once
(with only 2 MHD threads, which stay free for other requests meanwhile), bypass of requests
without a seed or with a sensitive prompt, upstream errors (502) and timeouts (504) that are never
cached, a missing or unreachable upstream, the bound on upstream calls in flight, tenant-scoped
results (the tenant from the token, never the body), and malformed requests of every kind."""
import hashlib
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import Daemon, Runner, Upstream, check, check_eq  # noqa: E402

SLEEP_MS = 100
SIZE_KB = 64


def derive(doc, size):
    """What examples/upstream.py answers for doc."""
    seed = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(8, "little")).digest()
        counter += 1
    return bytes(out[:size])


def gen(d, doc, raw=None, headers=None):
    body = raw if raw is not None else json.dumps(doc).encode()
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return d.request("POST", "/v1/generate", body=body, headers=h)


def expect_error(resp, status, code, what):
    st, hdrs, body = resp
    check_eq(st, status, what + " status")
    check(hdrs.get("content-type", "").startswith("application/json"), what + " content type")
    err = json.loads(body)["error"]
    check_eq(err["code"], code, what + " code")
    check(err["message"], what + ": empty message")
    check("x-gencache" not in hdrs, what + ": an error carries no X-Gencache outcome")
    return err["message"]


def t_miss_then_hit(d, up):
    doc = {"model": "sdxl", "prompt": "a red  cat", "seed": 7, "steps": 20}
    before = up.calls()
    st, h, body = gen(d, doc)
    check_eq(st, 200, "miss status")
    check_eq(h.get("x-gencache"), "miss", "first request")
    check_eq(body, derive(doc, SIZE_KB * 1024), "miss bytes are the upstream's")
    check_eq(h.get("content-type"), "application/octet-stream", "upstream's content type")
    key = h.get("x-gencache-key", "")
    check(key.startswith("result/") and len(key) == 71, "key header %r" % key)
    cost = int(h["x-gencache-cost-ms"])
    check(cost >= SLEEP_MS * 0.8, "miss cost %d ms below the upstream's sleep" % cost)

    # Same request, prompt spelled differently but normalizing the same: a hit.
    doc2 = dict(doc, prompt="a red cat")
    st, h2, body2 = gen(d, doc2)
    check_eq((st, h2.get("x-gencache")), (200, "hit"), "second request")
    check_eq(body2, body, "hit bytes")
    check_eq(h2.get("x-gencache-key"), key, "hit key")
    check_eq(h2.get("x-gencache-tier"), "mem", "hit tier")
    check_eq(int(h2["x-gencache-cost-ms"]), cost, "hit reports the stored cost")
    check_eq(h2.get("content-type"), "application/octet-stream", "stored content type")
    check_eq(up.calls() - before, 1, "upstream calls for a miss and a hit")

    # The entry is an ordinary result entry: readable through the entries API.
    st, h3, body3 = d.request("GET", "/v1/entries/" + key)
    check_eq((st, body3), (200, body), "stored entry")
    check_eq(int(h3["x-gencache-cost-ms"]), cost, "stored cost")
    # A different seed is a different result.
    st, h4, body4 = gen(d, dict(doc, seed=8))
    check_eq((st, h4.get("x-gencache")), (200, "miss"), "other seed")
    check(body4 != body, "other seed, other bytes")


def t_concurrent_identical(d, up):
    doc = {"model": "sdxl", "prompt": "fifty at once", "seed": 50,
           "params": {"sleep_ms": 1500}}
    before = up.calls()
    n = 50
    results = [None] * n
    finished = [None] * n
    barrier = threading.Barrier(n + 1)

    def one(i):
        barrier.wait()
        try:
            results[i] = gen(d, doc)
        except Exception as e:  # reported below
            results[i] = e
        finished[i] = time.monotonic()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    # While 50 requests wait for the upstream, the 2 MHD threads still serve others.
    time.sleep(0.3)
    st, _, body = d.request("GET", "/healthz")
    healthz_done = time.monotonic()
    check_eq((st, body), (200, b"ok"), "healthz during the flight")
    for t in threads:
        t.join(30)
    check(all(f is not None and healthz_done < f for f in finished),
          "healthz answered only after the upstream call: MHD threads were blocked")
    for r in results:
        check(isinstance(r, tuple), "a request failed: %r" % (r,))
    check_eq(up.calls() - before, 1, "upstream calls for 50 identical requests")
    outcomes = [r[1].get("x-gencache") for r in results]
    check_eq(outcomes.count("miss"), 1, "misses among %s" % outcomes)
    check_eq(outcomes.count("coalesced") + outcomes.count("hit"), n - 1, "the others")
    check(outcomes.count("coalesced") >= 10, "coalesced: %d" % outcomes.count("coalesced"))
    want = derive(doc, SIZE_KB * 1024)
    for st, h, body in results:
        check_eq(st, 200, "status")
        check(body == want, "all 50 get the same bytes")
    keys = {r[1].get("x-gencache-key") for r in results}
    check_eq(len(keys), 1, "one key")


def t_bypass(d, up):
    doc = {"model": "sdxl", "prompt": "no seed here"}
    before = up.calls()
    for i in range(2):
        st, h, body = gen(d, doc)
        check_eq((st, h.get("x-gencache")), (200, "bypass"), "no seed, request %d" % i)
        check_eq(body, derive(doc, SIZE_KB * 1024), "bypass bytes")
        check("x-gencache-key" not in h, "a bypass has no key")
    check_eq(up.calls() - before, 2, "a bypass calls the upstream every time")
    # Opting in to reuse without a seed makes it cacheable.
    doc = {"model": "sdxl", "prompt": "any seed will do", "cache": "allow_random"}
    st, h, _ = gen(d, doc)
    check_eq((st, h.get("x-gencache")), (200, "miss"), "allow_random first")
    st, h, _ = gen(d, doc)
    check_eq((st, h.get("x-gencache")), (200, "hit"), "allow_random second")


def t_upstream_error(d, up):
    doc = {"model": "sdxl", "prompt": "will fail", "seed": 1, "params": {"fail": 500}}
    before = up.calls()
    msg = expect_error(gen(d, doc), 502, "upstream_error", "upstream 500")
    check("500" in msg, "the upstream's status in %r" % msg)
    expect_error(gen(d, doc), 502, "upstream_error", "retry")
    check_eq(up.calls() - before, 2, "an error is never cached: the retry calls again")
    doc["params"]["fail"] = 404
    msg = expect_error(gen(d, doc), 502, "upstream_error", "upstream 404")
    check("404" in msg, "status 404 in %r" % msg)


def t_upstream_timeout(d, up):
    doc = {"model": "sdxl", "prompt": "hangs", "seed": 2, "params": {"hang": True}}
    results = []

    def one():
        t0 = time.monotonic()
        results.append((gen(d, doc), time.monotonic() - t0))

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    check_eq(len(results), 3, "answers")
    for resp, elapsed in results:
        expect_error(resp, 504, "upstream_timeout", "hanging upstream")
        check(1.5 <= elapsed < 5, "answered after %.2f s with a 2 s timeout" % elapsed)


def t_bad_requests(d, up):
    before = up.calls()
    cases = [
        (b"{not json", 400, "bad_request", "malformed JSON"),
        (b"", 400, "bad_request", "empty body"),
        (b"[1, 2]", 400, "bad_request", "an array"),
        (b'{"prompt": "x", "seed": "seven"}', 400, "bad_request", "seed of the wrong type"),
        (b'{"prompt": "x", "seed": 1, "steps": -3}', 400, "bad_request", "negative steps"),
        (b'{"prompt": 5, "seed": 1}', 400, "bad_request", "prompt of the wrong type"),
        (b'{"prompt": "x", "prompt": "y", "seed": 1}', 400, "bad_request", "duplicate names"),
        (b'{"prompt": "x", "seed": 1, "image": {"path": "/etc/passwd"}}', 400, "bad_request",
         "image path"),
        (b'{"prompt": "\xff\xfe", "seed": 1}', 400, "bad_request", "invalid UTF-8"),
    ]
    for raw, status, code, what in cases:
        expect_error(gen(d, None, raw=raw), status, code, what)
    # Oversize: refused from the announced length, before the body is sent...
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    try:
        s.sendall(b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Content-Length: %d\r\n\r\n" % ((1 << 20) + 1))
        head = s.recv(65536)
        check(head.startswith(b"HTTP/1.1 413"), "announced oversize body: %r" % head[:40])
        check(b"body_too_large" in head or b"body_too_large" in s.recv(65536), "413 code")
    finally:
        s.close()
    # ...and when only a chunked stream reveals it.
    c = d.connect()
    try:
        c.putrequest("POST", "/v1/generate")
        c.putheader("Transfer-Encoding", "chunked")
        c.endheaders()
        piece = b'{"prompt": "' + b"a" * 300000
        c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        piece = b"a" * 300000
        for _ in range(3):
            c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        c.send(b"0\r\n\r\n")
        r = c.getresponse()
        check_eq(r.status, 413, "chunked oversize body")
        r.read()
    finally:
        c.close()
    st, h, _ = d.request("GET", "/v1/generate")
    check_eq(st, 405, "GET /v1/generate")
    check_eq(h.get("allow"), "POST", "Allow header")
    check_eq(up.calls() - before, 0, "no bad request reaches the upstream")
    check(d.alive(), "daemon alive")


def t_no_upstream():
    d = Daemon()
    try:
        doc = {"model": "sdxl", "prompt": "nobody generates", "seed": 3}
        expect_error(gen(d, doc), 503, "no_upstream", "miss without upstream")
        # A hit needs no upstream: store the result under its key first.
        st, _, body = d.request("POST", "/v1/keys", body=json.dumps(doc).encode())
        check_eq(st, 200, "keys")
        key = json.loads(body)["keys"]["result"]
        st, _, _ = d.request("PUT", "/v1/entries/" + key, body=b"stored",
                             headers={"Content-Type": "image/png", "X-Gencache-Cost-Ms": "900"})
        check_eq(st, 201, "put")
        st, h, body = gen(d, doc)
        check_eq((st, h.get("x-gencache"), body), (200, "hit", b"stored"), "hit without upstream")
        check_eq(h.get("content-type"), "image/png", "stored content type")
        check_eq(h.get("x-gencache-cost-ms"), "900", "stored cost")
    finally:
        check_eq(d.stop(), 0, "exit status")


def t_unreachable_upstream():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    d = Daemon("--upstream", "http://127.0.0.1:%d/" % port)
    try:
        doc = {"model": "sdxl", "prompt": "nobody home", "seed": 4}
        expect_error(gen(d, doc), 502, "upstream_error", "connection refused")
        expect_error(gen(d, dict(doc, seed=None)), 502, "upstream_error", "bypass refused")
    finally:
        check_eq(d.stop(), 0, "exit status")


def t_upstream_concurrency():
    up = Upstream("--size-kb", "4")  # a fresh one: the earlier one still holds a hung call
    d = Daemon("--upstream", up.url, "--upstream-concurrency", "2")
    try:
        out = []
        docs = [{"model": "sdxl", "prompt": "bounded %d" % i, "seed": i,
                 "params": {"sleep_ms": 300}} for i in range(6)]
        t0 = time.monotonic()
        ts = [threading.Thread(target=lambda dd=dd: out.append(gen(d, dd))) for dd in docs]
        for t in ts:
            t.start()
        for t in ts:
            t.join(20)
        elapsed = time.monotonic() - t0
        check_eq(sorted((r[0], r[1].get("x-gencache")) for r in out), [(200, "miss")] * 6,
                 "all answered")
        c = up.counts()
        check_eq(c["calls"], 6, "upstream calls")
        check_eq(c["max_active"], 2, "at most 2 upstream calls at once")
        check(elapsed >= 0.85, "6 calls of 300 ms, 2 at a time, took only %.2f s" % elapsed)
    finally:
        rc = d.stop()
        up.stop()
    check_eq(rc, 0, "exit status")


def t_shutdown_while_waiting(up):
    """SIGTERM while requests wait (one upstream call running, two queued behind it): every
    waiter is answered 503 shutting_down and the daemon exits 0 promptly."""
    d = Daemon("--upstream", up.url, "--upstream-concurrency", "1")
    out = []

    def one(i):
        doc = {"model": "sdxl", "prompt": "shutdown %d" % i, "seed": 1, "params": {"hang": True}}
        try:
            out.append(gen(d, doc))
        except OSError as e:
            out.append(e)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    try:
        for t in ts:
            t.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        rc = d.stop()
        stopped = time.monotonic() - t0
    finally:
        d.stop()
    for t in ts:
        t.join(10)
    check_eq(rc, 0, "exit status")
    check(stopped < 5, "stopping took %.2f s" % stopped)
    check_eq(len(out), 3, "answers")
    for r in out:
        check(isinstance(r, tuple), "a waiter got no answer: %r" % (r,))
        expect_error(r, 503, "shutting_down", "waiter at shutdown")


CONFIG = """
layers:
  result:
    scope: tenant
tenants:
  - name: ops
    token: "tok-ops-0123456789"
    admin: true
  - name: alice
    token: "tok-alice-0123456789"
  - name: bob
    token: "tok-bob-0123456789"
sensitive:
  - "passport (number|no[.])"
"""


def t_tenants_and_sensitive(up):
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "gencache.yaml")
        with open(path, "w") as f:
            # The upstream from the config file this time, not from the flag.
            f.write(CONFIG + "upstream:\n  url: %s\n  timeout: 5s\n" % up.url)
        d = Daemon("--config", path)
        try:
            alice = {"Authorization": "Bearer tok-alice-0123456789"}
            bob = {"Authorization": "Bearer tok-bob-0123456789"}
            doc = {"model": "sdxl", "prompt": "tenant scoped", "seed": 11}
            before = up.calls()
            st, ha, body_a = gen(d, doc, headers=alice)
            check_eq((st, ha.get("x-gencache")), (200, "miss"), "alice first")
            # The body cannot claim another tenant's namespace.
            st, h, _ = gen(d, dict(doc, tenant="bob"), headers=alice)
            check_eq((st, h.get("x-gencache"), h.get("x-gencache-key")),
                     (200, "hit", ha["x-gencache-key"]), "alice with a body tenant")
            st, hb, body_b = gen(d, doc, headers=bob)
            check_eq((st, hb.get("x-gencache")), (200, "miss"), "bob does not see alice's")
            check(hb["x-gencache-key"] != ha["x-gencache-key"], "tenant keys differ")
            check_eq(body_b, body_a, "same generator answer")
            check_eq(up.calls() - before, 2, "one upstream call per tenant")
            # Any tenant can write bytes under any key through the entries API, but a private
            # layer's key names an entry of the writer's own namespace: alice's stays hers.
            poison = "/v1/entries/" + ha["x-gencache-key"]
            st, _, _ = d.request("PUT", poison, body=b"poison", headers=bob)
            check_eq(st, 201, "bob writes under alice's key (into his own namespace)")
            st, _, body = d.request("GET", poison, headers=bob)
            check_eq(body, b"poison", "bob reads what he wrote")
            st, h, body = gen(d, doc, headers=alice)
            check_eq((st, h.get("x-gencache"), body == body_a), (200, "hit", True),
                     "alice is not served bob's bytes")
            st, h, body = gen(d, doc, headers=alice)
            check_eq((st, h.get("x-gencache"), body == body_a), (200, "hit", True),
                     "alice's own result again")
            expect_error(gen(d, doc), 401, "unauthorized", "no token")
            expect_error(gen(d, doc, headers={"Authorization": "Bearer nope"}), 401,
                         "unauthorized", "unknown token")

            secret = {"model": "sdxl", "prompt": "my Passport Number is 123", "seed": 1}
            before = up.calls()
            for i in range(2):
                st, h, _ = gen(d, secret, headers=alice)
                check_eq((st, h.get("x-gencache")), (200, "bypass"), "sensitive %d" % i)
            neg = {"model": "sdxl", "prompt": "x", "negative_prompt": "passport no. 7",
                   "seed": 1}
            st, h, _ = gen(d, neg, headers=alice)
            check_eq((st, h.get("x-gencache")), (200, "bypass"), "sensitive negative prompt")
            check_eq(up.calls() - before, 3, "sensitive requests always reach the upstream")

            # Metrics cover every tenant: admin only. Jobs are the submitter's.
            st, _, _ = d.request("GET", "/metrics", headers=alice)
            check_eq(st, 403, "metrics for a tenant")
            st, _, _ = d.request("GET", "/metrics",
                                 headers={"Authorization": "Bearer tok-ops-0123456789"})
            check_eq(st, 200, "metrics for the admin")
            st, h, body = d.request("POST", "/v1/prewarm", body=json.dumps(doc).encode(),
                                    headers=alice)
            check_eq(st, 202, "alice's prewarm")
            jid = json.loads(body)["job"]
            check_eq(d.request("GET", "/v1/jobs/" + jid, headers=bob)[0], 404, "bob's view")
            check_eq(d.request("GET", "/v1/jobs/" + jid, headers=alice)[0], 200, "alice's view")
        finally:
            check_eq(d.stop(), 0, "exit status")


FAIR_CONFIG = """
tenants:
  - name: alpha
    token: "tok-alpha-0123456789"
  - name: beta
    token: "tok-beta-0123456789"
upstream:
  concurrency: 4
  timeout: 30s
"""


def t_tenant_fair_share():
    """Eight hanging generates of one tenant take at most three of the four upstream workers:
    another tenant's 50 ms generate is served at once, not after the hung calls time out."""
    import tempfile
    up = Upstream("--size-kb", "4")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "gencache.yaml")
        with open(path, "w") as f:
            f.write(FAIR_CONFIG + "  url: %s\n" % up.url)
        d = Daemon("--config", path)
        beta = {"Authorization": "Bearer tok-beta-0123456789"}
        alpha = {"Authorization": "Bearer tok-alpha-0123456789"}
        out = []

        def hang(i):
            doc = {"model": "sdxl", "prompt": "beta hangs %d" % i, "seed": i,
                   "params": {"hang": True}}
            try:
                out.append(gen(d, doc, headers=beta))
            except OSError as e:
                out.append(e)

        ts = [threading.Thread(target=hang, args=(i,)) for i in range(8)]
        try:
            for t in ts:
                t.start()
            time.sleep(0.5)  # beta's calls reach the workers and its queue
            t0 = time.monotonic()
            st, h, _ = gen(d, {"model": "sdxl", "prompt": "alpha", "seed": 1,
                               "params": {"sleep_ms": 50}}, headers=alpha)
            took = time.monotonic() - t0
            check_eq((st, h.get("x-gencache")), (200, "miss"), "alpha's generate")
            check(took < 1.0, "alpha's 50 ms generate took %.2f s behind beta's hung calls" % took)
            c = up.counts()
            check_eq(c["max_active"], 4, "beta's three hung calls and alpha's")
            check_eq(c["calls"], 4, "beta's other five wait in its queue")
        finally:
            rc = d.stop()
            for t in ts:
                t.join(10)
            up.stop()
        check_eq(rc, 0, "exit status")
        check_eq(len(out), 8, "beta's requests answered at shutdown")


def main():
    r = Runner()
    up = Upstream("--sleep-ms", str(SLEEP_MS), "--size-kb", str(SIZE_KB))
    try:
        d = Daemon("--upstream", up.url, "--upstream-timeout", "2")
        try:
            r.run("miss_then_hit", t_miss_then_hit, d, up)
            r.run("concurrent_identical", t_concurrent_identical, d, up)
            r.run("bypass", t_bypass, d, up)
            r.run("upstream_error", t_upstream_error, d, up)
            r.run("upstream_timeout", t_upstream_timeout, d, up)
            r.run("bad_requests", t_bad_requests, d, up)
        finally:
            rc = d.stop()
        r.run("clean_exit", lambda: check_eq(rc, 0, "exit status"))
        r.run("no_upstream", t_no_upstream)
        r.run("unreachable_upstream", t_unreachable_upstream)
        r.run("tenants_and_sensitive", t_tenants_and_sensitive, up)
        r.run("upstream_concurrency", t_upstream_concurrency)
        r.run("shutdown_while_waiting", t_shutdown_while_waiting, up)
        r.run("tenant_fair_share", t_tenant_fair_share)
    finally:
        up.stop()
    r.finish()


if __name__ == "__main__":
    main()

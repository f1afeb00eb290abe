#!/usr/bin/python3
"""Tenants of gencached: bearer tokens from the config (401 with WWW-Authenticate for a missing,
malformed or unknown token; /healthz open), the tenant taken from the token and never from the
body, tenant-scoped entries invisible to every other tenant (GET, HEAD probe, DELETE, invalidate
and stats all fail exactly like a miss or are refused), global layers shared, per-tenant byte
quotas, memory pressure evicting batch tenants first, listening beyond loopback only with tokens,
and a slow-loris client cut by the connection timeout while the daemon stays up."""
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import GENCACHE, GENCACHED, Daemon, Runner, check, check_eq  # noqa: E402

TOKENS = {"alice": "alice-token-0123456789", "bob": "bob-token-0123456789abc",
          "small": "small-token-0123456789", "bulk": "bulk-token-0123456789x",
          "vip": "vip-token-0123456789xyz", "ops": "ops-token-0123456789xyz",
          "tiny": "tiny-token-0123456789xy"}
TMP = tempfile.mkdtemp(prefix="gencache-tenants-test-")


def config(extra=""):
    lines = ["tenants:"]
    for name, tok in TOKENS.items():
        lines.append("  - name: %s" % name)
        lines.append("    token: %s" % tok)
        if name in ("small", "tiny"):
            lines.append("    quota_bytes: 100K")
        if name == "bulk":
            lines.append("    priority: batch")
        if name == "vip":
            lines.append("    priority: high")
        if name == "ops":
            lines.append("    admin: true")
    p = os.path.join(TMP, "tenants%d.yaml" % len(os.listdir(TMP)))
    with open(p, "w") as f:
        f.write("\n".join(lines) + "\n" + extra)
    return p


def key(name, layer="result"):
    return "%s/%s" % (layer, hashlib.sha256(name.encode()).hexdigest())


def auth(tenant):
    return {"Authorization": "Bearer " + TOKENS[tenant]}


def req(d, tenant, method, path, body=None, headers=None):
    h = dict(auth(tenant)) if tenant else {}
    h.update(headers or {})
    return d.request(method, path, body=body, headers=h)


def error_code(body):
    return json.loads(body)["error"]["code"]


def t_unauthorized(d):
    cases = [None, {"Authorization": "Basic YWxpY2U6cHc="}, {"Authorization": "Bearer "},
             {"Authorization": "Bearer nope-not-a-token-at-all"},
             {"Authorization": "Bearer " + TOKENS["alice"] + "x"},
             {"Authorization": "Bearer " + TOKENS["alice"][:-1]}]
    for h in cases:
        for method, path, body in (("GET", "/v1/stats", None),
                                   ("GET", "/v1/entries/" + key("a"), None),
                                   ("HEAD", "/v1/entries/" + key("a"), None),
                                   ("PUT", "/v1/entries/" + key("a"), b"x" * 100),
                                   ("POST", "/v1/keys", b'{"prompt": "x"}'),
                                   ("POST", "/v1/invalidate", b'{"layer": "result"}'),
                                   ("GET", "/nowhere", None)):
            st, hdrs, rbody = d.request(method, path, body=body, headers=h or {})
            check_eq(st, 401, "%s %s with %r" % (method, path, h))
            check(hdrs.get("www-authenticate", "").startswith("Bearer"),
                  "WWW-Authenticate: %r" % hdrs)
            if method != "HEAD":
                check_eq(error_code(rbody), "unauthorized", "401 code")
    st, _, body = d.request("GET", "/healthz")
    check_eq((st, body), (200, b"ok"), "/healthz needs no token")
    # A PUT with a large announced body is refused before the body is sent.
    c = d.connect()
    try:
        c.putrequest("PUT", "/v1/entries/" + key("big"))
        c.putheader("Content-Length", str(50 << 20))
        c.putheader("Expect", "100-continue")
        c.endheaders()
        r = c.getresponse()
        check_eq(r.status, 401, "unauthenticated PUT refused before its body")
    finally:
        c.close()


def t_isolation(d):
    k = key("alice-secret")
    path = "/v1/entries/" + k
    st, _, _ = req(d, "alice", "PUT", path, body=b"alice's bytes", headers={"X-Gencache-Tags": "t1"})
    check_eq(st, 201, "alice PUT")
    st, _, body = req(d, "alice", "GET", path)
    check_eq((st, body), (200, b"alice's bytes"), "alice reads her entry")
    # Bob: every probe looks exactly like a miss.
    miss_key = key("never-stored")
    st_miss, h_miss, b_miss = req(d, "bob", "GET", "/v1/entries/" + miss_key)
    check_eq(st_miss, 404, "bob miss")
    st, hdrs, body = req(d, "bob", "GET", path)
    check_eq(st, 404, "bob GET of alice's entry")
    check_eq(body.replace(k.encode(), b"K"), b_miss.replace(miss_key.encode(), b"K"),
             "the answer is a miss's")
    check_eq(sorted(set(hdrs) - {"date"}), sorted(set(h_miss) - {"date"}), "same headers")
    st, hdrs, body = req(d, "bob", "HEAD", path)
    check_eq((st, body), (404, b""), "bob HEAD probe")
    st, _, body = req(d, "bob", "GET", path + "?as=f32")
    check_eq(st, 404, "bob GET ?as=")
    st, _, body = req(d, "bob", "DELETE", path)
    check_eq((st, error_code(body)), (404, "not_found"), "bob DELETE")
    # Invalidate by key, layer, tag: removes nothing of alice's.
    for filt in ({"key": k}, {"layer": "result"}, {"tag": "t1"}, {"older_than": "0s", "tag": "t1"}):
        st, _, body = req(d, "bob", "POST", "/v1/invalidate", body=json.dumps(filt))
        check_eq((st, json.loads(body)), (200, {"invalidated": 0}), "bob invalidate %r" % filt)
    st, _, body = req(d, "bob", "POST", "/invalidate?key=" + k)
    check_eq((st, json.loads(body)), (200, {"invalidated": 0}), "bob /invalidate?key=")
    for filt in ({"tenant": "alice"}, {"tenant": "alice", "key": k}, {"tenant": "nobody"}):
        st, _, body = req(d, "bob", "POST", "/v1/invalidate", body=json.dumps(filt))
        check_eq((st, error_code(body)), (403, "forbidden"), "bob names another tenant %r" % filt)
    st, _, body = req(d, "bob", "POST", "/invalidate?tenant=alice")
    check_eq(st, 403, "bob names alice in the query")
    # Bob's stats know nothing of alice.
    st, _, body = req(d, "bob", "GET", "/v1/stats")
    check_eq(st, 200, "bob stats")
    doc = json.loads(body)
    check_eq(doc["tenant"], "bob", "stats tenant")
    check(b"alice" not in body, "bob's stats mention alice: %r" % body)
    check("tiers" not in doc and "invalidated" not in doc, "no global counters: %r" % doc)
    check_eq(doc["layers"]["result"]["hits"], 0, "bob's hits")
    check_eq(doc["layers"]["result"]["misses"], 3, "bob's misses (two GETs and ?as=)")
    check_eq(doc["usage"]["bytes"], 0, "bob's bytes")
    # Alice still has it all, and sees her own counters.
    st, _, body = req(d, "alice", "GET", path)
    check_eq((st, body), (200, b"alice's bytes"), "alice's entry survived")
    st, _, body = req(d, "alice", "GET", "/v1/stats")
    doc = json.loads(body)
    check_eq((doc["tenant"], doc["layers"]["result"]["hits"], doc["layers"]["result"]["puts"]),
             ("alice", 2, 1), "alice's counters")
    check_eq(doc["usage"]["bytes"], len(b"alice's bytes"), "alice's bytes")
    # Her own invalidation and deletion work.
    st, _, body = req(d, "alice", "POST", "/v1/invalidate",
                      body=json.dumps({"tag": "t1", "tenant": "alice"}))
    check_eq((st, json.loads(body)), (200, {"invalidated": 1}), "alice invalidates her tag")
    req(d, "alice", "PUT", path, body=b"again")
    st, _, _ = req(d, "alice", "DELETE", path)
    check_eq(st, 204, "alice DELETE")
    st, _, _ = req(d, "alice", "GET", path)
    check_eq(st, 404, "deleted")


def t_overwrite(d):
    # Bob writing the same key neither reveals nor displaces alice's entry: a private layer's key
    # names an entry of the writer's own namespace.
    path = "/v1/entries/" + key("contested")
    req(d, "alice", "PUT", path, body=b"A")
    st, _, _ = req(d, "bob", "PUT", path, body=b"B")
    check_eq(st, 201, "bob PUT on an existing key of alice's")
    st, _, body = req(d, "bob", "GET", path)
    check_eq((st, body), (200, b"B"), "bob reads his")
    st, _, body = req(d, "alice", "GET", path)
    check_eq((st, body), (200, b"A"), "alice still reads hers")
    st, _, _ = req(d, "bob", "DELETE", path)
    check_eq(st, 204, "bob deletes his")
    st, _, body = req(d, "alice", "GET", path)
    check_eq((st, body), (200, b"A"), "alice's untouched by bob's delete")


def t_global_shared(d):
    path = "/v1/entries/" + key("shared", "text_embedding")
    st, _, _ = req(d, "alice", "PUT", path, body=b"emb")
    check_eq(st, 201, "alice PUT global")
    st, _, body = req(d, "bob", "GET", path)
    check_eq((st, body), (200, b"emb"), "bob reads a global entry")
    st, _, body = req(d, "bob", "HEAD", path)
    check_eq(st, 200, "bob HEAD global")
    st, _, body = req(d, "bob", "DELETE", path)
    check_eq((st, error_code(body)), (403, "forbidden"), "bob deletes alice's shared entry")
    st, _, body = req(d, "bob", "PUT", path, body=b"poison")
    check_eq((st, error_code(body)), (403, "forbidden"), "bob overwrites alice's shared entry")
    st, _, body = req(d, "alice", "GET", path)
    check_eq((st, body), (200, b"emb"), "alice's shared bytes intact")
    st, _, _ = req(d, "alice", "PUT", path, body=b"emb2")
    check_eq(st, 201, "alice replaces what she stored")
    st, _, _ = req(d, "alice", "PUT", path, body=b"emb")
    st, _, body = req(d, "bob", "POST", "/v1/invalidate",
                      body=json.dumps({"layer": "text_embedding"}))
    check_eq(json.loads(body), {"invalidated": 0}, "bob invalidates the shared layer")
    st, _, body = req(d, "bob", "GET", path)
    check_eq(st, 200, "still there")
    st, _, _ = req(d, "alice", "DELETE", path)
    check_eq(st, 204, "alice deletes what she stored")


def t_pin_admin_only(d):
    """A pinned entry is never evicted: only an admin may pin, or one tenant could fill the
    memory tier for good."""
    path = "/v1/entries/" + key("pin-me")
    st, _, body = req(d, "alice", "PUT", path, body=b"p", headers={"X-Gencache-Pinned": "1"})
    check_eq((st, error_code(body)), (403, "forbidden"), "a tenant pins")
    check_eq(req(d, "alice", "GET", path)[0], 404, "nothing stored by the refused PUT")
    st, _, _ = req(d, "ops", "PUT", path, body=b"p", headers={"X-Gencache-Pinned": "1"})
    check_eq(st, 201, "the admin pins")
    st, h, _ = req(d, "ops", "GET", path)
    check_eq((st, h.get("x-gencache-pinned")), (200, "1"), "pinned")
    check_eq(req(d, "ops", "DELETE", path)[0], 204, "unpinned by deletion")


def t_tenant_from_token(d):
    body = {"model": "m", "prompt": "a cat", "seed": 3}
    keys = {}
    for t in ("alice", "bob"):
        st, _, b = req(d, t, "POST", "/v1/keys", body=json.dumps(body))
        check_eq(st, 200, "keys for %s" % t)
        keys[t] = json.loads(b)["keys"]
    check(keys["alice"]["result"] != keys["bob"]["result"], "tenant-scoped keys differ")
    check_eq(keys["alice"]["text_embedding"], keys["bob"]["text_embedding"], "global keys equal")
    st, _, b = req(d, "alice", "POST", "/v1/keys", body=json.dumps(dict(body, tenant="bob")))
    check_eq(json.loads(b)["keys"], keys["alice"], "a body tenant is ignored")
    # PUT headers cannot claim another owner either.
    path = "/v1/entries/" + key("hdr")
    req(d, "alice", "PUT", path, body=b"h", headers={"X-Gencache-Tenant": "bob"})
    st, _, _ = req(d, "bob", "GET", path)
    check_eq(st, 404, "an X-Gencache-Tenant header gives bob nothing")
    st, _, _ = req(d, "alice", "GET", path)
    check_eq(st, 200, "alice owns it")


def t_quota_concurrent(d):
    # 20 concurrent 10,000-byte puts against a 100K quota: exactly 10 fit, never more.
    import threading
    results = []
    lock = threading.Lock()

    def one(i):
        st, _, _ = req(d, "tiny", "PUT", "/v1/entries/" + key("c%d" % i), body=b"c" * 10000)
        with lock:
            results.append(st)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check_eq(sorted(results), [201] * 10 + [507] * 10, "concurrent puts against the quota")
    st, _, body = req(d, "tiny", "GET", "/v1/stats")
    check_eq(json.loads(body)["usage"]["bytes"], 100000, "usage after the race")


def t_admin(d):
    path = "/v1/entries/" + key("admin-view")
    req(d, "alice", "PUT", path, body=b"a", headers={"X-Gencache-Tags": "adm"})
    st, _, body = req(d, "ops", "GET", "/v1/stats")
    doc = json.loads(body)
    check("tiers" in doc and "memory_pressure" in doc, "admin sees the global stats: %r" % doc)
    st, _, _ = req(d, "ops", "GET", path)
    check_eq(st, 404, "admin does not read alice's private entry")
    st, _, _ = req(d, "alice", "GET", "/metrics")
    check_eq(st, 403, "/metrics for a tenant")
    st, _, _ = req(d, "ops", "GET", "/metrics")
    check(st not in (401, 403), "/metrics for the admin: %d" % st)
    st, _, body = req(d, "ops", "POST", "/v1/invalidate",
                      body=json.dumps({"tenant": "alice", "tag": "adm"}))
    check_eq((st, json.loads(body)), (200, {"invalidated": 1}), "admin invalidates alice's")


def t_quota(d):
    a, b, c = ("/v1/entries/" + key("q%d" % i) for i in range(3))
    st, _, _ = req(d, "small", "PUT", a, body=b"x" * 60000)
    check_eq(st, 201, "first 60 KB")
    st, _, body = req(d, "small", "PUT", b, body=b"x" * 60000)
    check_eq((st, error_code(body)), (507, "quota_exceeded"), "second 60 KB over 100K")
    st, _, _ = req(d, "small", "GET", b)
    check_eq(st, 404, "nothing stored")
    st, _, _ = req(d, "small", "PUT", a, body=b"y" * 90000)
    check_eq(st, 201, "replacing a key counts its new size only")
    st, _, _ = req(d, "small", "DELETE", a)
    check_eq(st, 204, "delete")
    st, _, _ = req(d, "small", "PUT", b, body=b"x" * 60000)
    check_eq(st, 201, "room again after the delete")
    st, _, _ = req(d, "small", "POST", "/v1/invalidate", body=json.dumps({"layer": "result"}))
    st, _, _ = req(d, "small", "PUT", c, body=b"x" * 90000)
    check_eq(st, 201, "room again after the invalidation")
    st, _, body = req(d, "small", "GET", "/v1/stats")
    check_eq(json.loads(body)["usage"], {"bytes": 90000, "entries": 1, "quota_bytes": 102400},
             "usage")
    # Other tenants have no quota.
    st, _, _ = req(d, "alice", "PUT", a, body=b"x" * 200000)
    check_eq(st, 201, "alice has no quota")


def t_slow_loris():
    d = Daemon("--config", config(), "--timeout", "1")
    try:
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        t0 = time.monotonic()
        cut = False
        try:
            for ch in b"GET /healthz HTTP/1.1\r\nHost: x\r\n":
                s.sendall(bytes([ch]))
                s.settimeout(1.6)
                try:
                    if s.recv(1024) == b"":
                        cut = True
                        break
                except socket.timeout:
                    pass
        except (ConnectionResetError, BrokenPipeError):
            cut = True
        finally:
            s.close()
        check(cut, "a client sending one byte every 1.6 s was not cut")
        check(time.monotonic() - t0 < 8, "cut late")
        st, _, body = d.request("GET", "/healthz")
        check_eq((st, body), (200, b"ok"), "daemon up after the slow client")
    finally:
        check_eq(d.stop(), 0, "exit status")


def t_listen():
    # Beyond loopback: refused without tokens, allowed with them.
    r = subprocess.run([GENCACHED, "--listen", "0.0.0.0:0", "--data-dir",
                        os.path.join(TMP, "d1")], capture_output=True, timeout=20,
                       stdin=subprocess.DEVNULL)
    check_eq(r.returncode, 2, "0.0.0.0 without tokens")
    check(b"loopback" in r.stderr, "message %r" % r.stderr)
    d = Daemon("--config", config(), "--listen", "0.0.0.0:0")
    try:
        st, _, _ = req(d, "alice", "GET", "/v1/stats")
        check_eq(st, 200, "serving on 0.0.0.0 with tokens")
        st, _, _ = d.request("GET", "/v1/stats")
        check_eq(st, 401, "still needs a token")
    finally:
        check_eq(d.stop(), 0, "exit status")


def t_pressure():
    conf = config("tiers:\n  memory:\n    max_bytes: 4M\n"
                  "memory_pressure:\n  warn_ratio: 0.5\n  shortened_ttl: 30s\n")
    d = Daemon("--config", conf)
    try:
        vip = "/v1/entries/" + key("vip")
        st, _, _ = req(d, "vip", "PUT", vip, body=b"v" * 200000)
        check_eq(st, 201, "vip put")
        # Only the last put crosses the threshold (2 MiB): 1.8 MB before it, 2.2 MB after.
        bulk = ["/v1/entries/" + key("bulk%d" % i) for i in range(5)]
        for p in bulk:
            st, _, _ = req(d, "bulk", "PUT", p, body=b"b" * 400000)
            check_eq(st, 201, "bulk put")
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline and "memory pressure" not in d.log():
            time.sleep(0.1)
        check("memory pressure" in d.log(), "pressure logged: %s" % d.log()[-2000:])
        # Batch entries leave memory, and only memory: the disk tier still serves every one.
        def tier(p):
            st, h, _ = req(d, "bulk", "HEAD", p)
            check_eq(st, 200, "batch entry kept on disk")
            return h.get("x-gencache-tier")
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and any(tier(p) == "mem" for p in bulk):
            time.sleep(0.1)
        for p in bulk:
            check_eq(tier(p), "disk", "batch entry demoted")
            check_eq(req(d, "bulk", "GET", p)[2], b"b" * 400000, "batch entry intact")
        st, h, body = req(d, "vip", "GET", vip)
        check_eq(st, 200, "high-priority entry kept")
        check_eq(h.get("x-gencache-tier"), "mem", "high-priority entry stays in memory")
        check_eq(d.log().count("memory tier is"), 1, "logged once per crossing")
        check("shortening" not in d.log(), "no TTL shortened while the disk tier has room")
    finally:
        check_eq(d.stop(), 0, "exit status")


def t_cli_tokens(d):
    """The CLI's daemon verbs carry the tenant's token (--token or $GENCACHE_TOKEN) and are
    refused without it."""
    k = key("cli-token")
    data = os.path.join(TMP, "cli-token.bin")
    with open(data, "wb") as f:
        f.write(b"tensor" * 100)

    def cli(*args, token=None, env_token=None):
        env = dict(os.environ)
        env.pop("GENCACHE_TOKEN", None)
        if env_token:
            env["GENCACHE_TOKEN"] = env_token
        extra = ["--token", token] if token else []
        return subprocess.run([GENCACHE, args[0], "--url", d.url, *extra, *args[1:]], env=env,
                              capture_output=True, timeout=30)

    r = cli("put", k, data)
    check_eq(r.returncode, 1, "put without a token")
    check(b"token" in r.stderr.lower() or b"unauthorized" in r.stderr.lower(),
          "401 message %r" % r.stderr)
    check_eq(cli("put", k, data, token=TOKENS["alice"]).returncode, 0, "put with --token")
    r = cli("get", k, env_token=TOKENS["alice"])
    check_eq((r.returncode, r.stdout), (0, b"tensor" * 100), "get with $GENCACHE_TOKEN")
    r = cli("get", k, token=TOKENS["bob"])
    check_eq(r.returncode, 1, "another tenant's get")
    check(b"not found" in r.stderr, "a miss to bob: %r" % r.stderr)
    check_eq(cli("stats", "--json", token=TOKENS["alice"]).returncode, 0, "stats with a token")
    check_eq(cli("del", k, token=TOKENS["bob"]).returncode, 1, "bob cannot delete it")
    check_eq(cli("del", k, token=TOKENS["alice"]).returncode, 0, "alice deletes it")
    check_eq(cli("get", k, token="has space").returncode, 2, "malformed token refused")


def main():
    r = Runner()
    d = Daemon("--config", config())
    try:
        r.run("unauthorized", t_unauthorized, d)
        r.run("isolation", t_isolation, d)
        r.run("overwrite", t_overwrite, d)
        r.run("global_shared", t_global_shared, d)
        r.run("tenant_from_token", t_tenant_from_token, d)
        r.run("quota", t_quota, d)
        r.run("quota_concurrent", t_quota_concurrent, d)
        r.run("admin", t_admin, d)
        r.run("cli_tokens", t_cli_tokens, d)
        r.run("pin_admin_only", t_pin_admin_only, d)
        r.run("still_up", lambda: check(d.alive(), "daemon alive"))
    finally:
        rc = d.stop()
    r.run("clean_exit", lambda: check_eq(rc, 0, "exit status"))
    r.run("slow_loris", t_slow_loris)
    r.run("listen", t_listen)
    r.run("pressure", t_pressure)
    import shutil
    shutil.rmtree(TMP, ignore_errors=True)
    r.finish()


if __name__ == "__main__":
    main()

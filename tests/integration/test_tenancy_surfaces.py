#!/usr/bin/python3
"""One isolation and quota scenario, run in-process through Python (gencache.Cache with the
config's tenants, calls made with Cache.as_tenant) and through the daemon (the same config, bearer
tokens): both surfaces are the library's rules, so every step must give the same answer."""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import Daemon, Runner, check_eq  # noqa: E402

import gencache  # noqa: E402

TMP = tempfile.mkdtemp(prefix="gencache-tenancy-surfaces-")
TOKENS = {"alice": "tok-alice-0123456789", "bob": "tok-bob-0123456789",
          "root": "tok-root-0123456789"}
CONFIG = """tiers:
  memory:
    max_bytes: 64M
tenants:
  - {name: alice, token: tok-alice-0123456789, quota_bytes: 3000}
  - {name: bob, token: tok-bob-0123456789, priority: batch}
  - {name: root, token: tok-root-0123456789, admin: true, priority: high}
"""


def key(n, layer="result"):
    return "%s/%064x" % (layer, n)


# The scenario: (tenant, operation, key, body). Every step's outcome is one word.
SCENARIO = [
    ("alice", "put", key(1), b"a" * 1000),
    ("alice", "get", key(1), None),
    ("bob", "get", key(1), None),            # another tenant's private entry: a miss
    ("bob", "put", key(1), b"b" * 10),       # bob's own entry under the same key
    ("alice", "get", key(1), None),          # alice's is untouched
    ("bob", "get", key(1), None),
    ("bob", "delete", key(1), None),         # deletes bob's, not alice's
    ("alice", "get", key(1), None),
    ("bob", "put", key(2, "image_latent"), b"L" * 100),  # a shared entry
    ("alice", "get", key(2, "image_latent"), None),
    ("alice", "put", key(2, "image_latent"), b"x"),       # not alice's to replace
    ("alice", "delete", key(2, "image_latent"), None),    # nor to delete
    ("root", "put", key(2, "image_latent"), b"R"),        # an admin may
    ("alice", "put", key(3), b"a" * 1000),
    ("alice", "put", key(4), b"a" * 1000),   # 3000 bytes: at the quota
    ("alice", "put", key(5), b"a" * 1),      # over it
    ("alice", "put", key(4), b"a" * 500),    # a replacement counts the difference
    ("alice", "put", key(5), b"a" * 500),
    ("alice", "usage", None, None),
    ("alice", "delete", key(3), None),
    ("alice", "usage", None, None),
    ("bob", "invalidate-tenant", "alice", None),  # confined to bob's own entries: 0
    ("alice", "get", key(4), None),
]


def run_python():
    out = []
    with tempfile.TemporaryDirectory(dir=TMP) as d:
        conf = os.path.join(d, "gencache.yaml")
        with open(conf, "w") as f:
            f.write(CONFIG)
        with gencache.Cache(config=conf, data_dir=os.path.join(d, "data")) as c:
            for tenant, op, k, body in SCENARIO:
                t = c.as_tenant(tenant)
                try:
                    if op == "put":
                        t.put(k, body)
                        out.append("stored")
                    elif op == "get":
                        v = t.get_bytes(k)
                        out.append("miss" if v is None else "hit:%s" % v[:1].decode())
                    elif op == "delete":
                        out.append("deleted" if t.delete(k) else "miss")
                    elif op == "usage":
                        out.append("bytes:%d" % t.stats()["usage"]["bytes"])
                    elif op == "invalidate-tenant":
                        out.append("invalidated:%d" % t.invalidate(tenant=k))
                except gencache.QuotaExceeded:
                    out.append("quota")
                except gencache.Forbidden:
                    out.append("forbidden")
    return out


def run_daemon():
    out = []
    conf = os.path.join(TMP, "daemon.yaml")
    with open(conf, "w") as f:
        f.write(CONFIG)
    d = Daemon("--config", conf)
    try:
        for tenant, op, k, body in SCENARIO:
            h = {"Authorization": "Bearer " + TOKENS[tenant]}
            if op == "put":
                st, _, rb = d.request("PUT", "/v1/entries/" + k, body=body, headers=h)
                out.append({201: "stored", 403: "forbidden"}.get(st) or
                           ("quota" if st == 507 else "status:%d %r" % (st, rb)))
            elif op == "get":
                st, _, rb = d.request("GET", "/v1/entries/" + k, headers=h)
                out.append("miss" if st == 404 else "hit:%s" % rb[:1].decode())
            elif op == "delete":
                st, _, rb = d.request("DELETE", "/v1/entries/" + k, headers=h)
                out.append({204: "deleted", 404: "miss", 403: "forbidden"}.get(st, str(st)))
            elif op == "usage":
                st, _, rb = d.request("GET", "/v1/stats", headers=h)
                out.append("bytes:%d" % json.loads(rb)["usage"]["bytes"])
            elif op == "invalidate-tenant":
                st, _, rb = d.request("POST", "/v1/invalidate", headers=h,
                                      body=json.dumps({"tenant": k}).encode())
                # The daemon refuses the request outright; the library answers "nothing of
                # yours matched". Both remove nothing of alice's.
                out.append("invalidated:0" if st in (200, 403) and
                           (st == 403 or json.loads(rb)["invalidated"] == 0) else str(st))
    finally:
        d.stop()
    return out


def t_same_answers():
    py = run_python()
    daemon = run_daemon()
    expected = ["stored", "hit:a", "miss", "stored", "hit:a", "hit:b", "deleted", "hit:a",
                "stored", "hit:L", "forbidden", "forbidden", "stored", "stored", "stored",
                "quota", "stored", "stored", "bytes:3000", "deleted", "bytes:2000",
                "invalidated:0", "hit:a"]
    for i, (step, p, dm) in enumerate(zip(SCENARIO, py, daemon)):
        check_eq(p, dm, "step %d %r: Python and daemon" % (i, step[:3]))
    check_eq(py, expected, "the scenario's answers")


if __name__ == "__main__":
    runner = Runner()
    runner.run("same_answers", t_same_answers)
    runner.finish()

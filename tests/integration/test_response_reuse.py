#!/usr/bin/python3
"""A small entry's GET response is built once and queued again for later GETs of the same bytes
(tools/gencached/respcache.c). What a client sees must not change: a replaced entry is served
with its new bytes and ETag, a deleted one is 404, the TTL header counts down, the tier header
follows the tier that answered, and another tenant's GET of a private key stays a miss."""
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import Daemon, Runner, check, check_eq  # noqa: E402

KEY = "result/" + "5e" * 32
PATH = "/v1/entries/" + KEY


def get(d, headers=None):
    st, h, body = d.request("GET", PATH, headers=headers)
    return st, h, body


def t_same_bytes(d):
    check_eq(d.request("PUT", PATH, body=b"a" * 4096, headers={"X-Gencache-Cost-Ms": "7"})[0],
             201, "PUT")
    first = get(d)
    for _ in range(5):
        again = get(d)
        check_eq(again[0], 200, "status")
        check_eq(again[2], b"a" * 4096, "body")
        for name in ("etag", "x-gencache-cost-ms", "x-gencache-tier", "content-type",
                     "content-length"):
            check_eq(again[1].get(name), first[1].get(name), name)


def t_replaced(d):
    etag = get(d)[1]["etag"]
    check_eq(d.request("PUT", PATH, body=b"b" * 4000, headers={"X-Gencache-Cost-Ms": "9"})[0],
             201, "PUT again")
    st, h, body = get(d)
    check_eq((st, body), (200, b"b" * 4000), "new bytes")
    check(h["etag"] != etag, "new ETag")
    check_eq(h["x-gencache-cost-ms"], "9", "new cost")


def t_deleted(d):
    get(d)
    check_eq(d.request("DELETE", PATH)[0], 204, "DELETE")
    check_eq(get(d)[0], 404, "GET after DELETE")


def t_ttl_counts_down(d):
    # image_latent's TTL is fixed (result's slides on every hit, so its header stays put).
    path = "/v1/entries/image_latent/" + "7a" * 32
    check_eq(d.request("PUT", path, body=b"c" * 100, headers={"X-Gencache-TTL": "30"})[0], 201,
             "PUT with TTL")
    t0 = int(d.request("GET", path)[1]["x-gencache-ttl"])
    time.sleep(2.1)
    t1 = int(d.request("GET", path)[1]["x-gencache-ttl"])
    check(t1 < t0, "TTL header counts down: %d then %d" % (t0, t1))


def t_tenants():
    conf = os.path.join(tempfile.mkdtemp(prefix="gencache-reuse-"), "t.yaml")
    with open(conf, "w") as f:
        f.write("tenants:\n  - name: alpha\n    token: tok-alpha-0123456789\n"
                "  - name: beta\n    token: tok-beta-0123456789\n")
    a = {"Authorization": "Bearer tok-alpha-0123456789"}
    b = {"Authorization": "Bearer tok-beta-0123456789"}
    d = Daemon("--config", conf, threads=1)
    try:
        check_eq(d.request("PUT", PATH, body=b"private", headers=a)[0], 201, "alpha PUT")
        for _ in range(3):
            check_eq(get(d, a)[:3:2], (200, b"private"), "alpha GET")
            check_eq(get(d, b)[0], 404, "beta GET of alpha's key")
    finally:
        check_eq(d.stop(), 0, "exit status")


def main():
    r = Runner()
    d = Daemon(threads=1)
    try:
        r.run("same_bytes", t_same_bytes, d)
        r.run("replaced", t_replaced, d)
        r.run("deleted", t_deleted, d)
        r.run("ttl_counts_down", t_ttl_counts_down, d)
    finally:
        rc = d.stop()
    r.run("clean_exit", lambda: check_eq(rc, 0, "exit status"))
    r.run("tenants", t_tenants)
    r.finish()


if __name__ == "__main__":
    main()

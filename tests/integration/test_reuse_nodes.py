#!/usr/bin/env python3
"""Reuse records across gencached nodes that share a Redis tier (started on loopback here): an
image stored through one node is matched perceptually through another (the image given by its
full signature and by its digest and pHash alone), never across tenants on a tenant-scoped
layer; a delete and an invalidation through one node end the match on the others; a node
started later reads the records Redis holds; a record whose entry has left Redis misses, never
errs. The same across-nodes match on a 3-primary Redis Cluster. Bounded: about 20 s on an idle
machine."""
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import Daemon, Runner, check, check_eq  # noqa: E402
from test_cluster import Cluster, command, free_port  # noqa: E402

import gencache  # noqa: E402
import test_reuse as tr  # noqa: E402

ADMIN = "ops"


def until(what, fn, timeout=3.0):
    """Calls fn until it returns a true value (the records travel by pub/sub, the entries by
    write-back), at most timeout seconds; returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        check(time.monotonic() < deadline, "timed out: " + what)
        time.sleep(0.01)


def matched(d, layer, request, tenant=None):
    """The (key, match header, body) a lookup served, or None on a 404."""
    status, h, body = tr.lookup(d, layer, request, tenant)
    if status == 404:
        return None
    check_eq(status, 200, "lookup: %s" % body[:200])
    return h.get("x-gencache-key"), h.get("x-gencache-match"), body


class Redis:
    """One redis-server on a free loopback port, without persistence."""

    def __init__(self):
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--loglevel", "warning"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        Cluster._wait(lambda: command(self.port, b"PING") == b"+PONG\r\n", "redis-server start")
        self.url = "redis://127.0.0.1:%d" % self.port

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def node(url, cfg):
    return Daemon("--config", cfg, "--redis", url, "--redis-timeout", "500")


def t_match_across_nodes(a, b):
    orig = tr.IM + "wizard.jpg"
    key = tr.store(a, "image_latent", tr.req(orig, "nodes"), b"latent-of-wizard", ADMIN)
    v = tr.variant("wizard.jpg", "q70")
    k, m, body = until("b matches a's image", lambda: matched(b, "image_latent",
                                                               tr.req(v, "nodes"), "globex"))
    check_eq((k, body), (key, b"latent-of-wizard"), "served by b")
    check(m.startswith("perceptual; distance=") and
          m.endswith("; of=" + gencache.image_digest(orig)), m)
    short = {"digest": gencache.image_digest(v), "phash": gencache.image_hash(v, "phash")}
    got = matched(b, "image_latent", dict(tr.req(v, "nodes"), image=short), "globex")
    check(got is not None and got[0] == key, "digest and pHash alone: %r" % (got,))
    check(matched(b, "image_latent", tr.req(v, "other-model"), "globex") is None, "other model")


def t_tenants_across_nodes(a, b):
    orig = tr.IM + "montage.jpg"
    doc = dict(tr.req(orig, "nodes"), prompt="a cat")
    tr.store(a, "condition", doc, b"acme-condition", "acme")
    v = dict(tr.req(tr.variant("montage.jpg", "half"), "nodes"), prompt="a cat")
    got = until("acme matches on b", lambda: matched(b, "condition", v, "acme"))
    check_eq(got[2], b"acme-condition", "own condition")
    check(matched(b, "condition", v, "globex") is None, "another tenant's condition")


def t_delete_and_invalidate_across_nodes(a, b):
    orig = tr.IM + "frame.jpg"
    k1 = tr.store(a, "image_latent", tr.req(orig, "del-a"), b"a", ADMIN)
    tr.store(a, "image_latent", tr.req(orig, "del-b"), b"b", ADMIN)
    half = tr.variant("frame.jpg", "half")
    until("b matches del-a", lambda: matched(b, "image_latent", tr.req(half, "del-a"), ADMIN))
    until("b matches del-b", lambda: matched(b, "image_latent", tr.req(half, "del-b"), ADMIN))
    status, _, _ = a.request("DELETE", "/v1/entries/" + k1, headers=tr.auth(ADMIN))
    check_eq(status, 204, "delete on a")
    until("b stops matching a deleted entry",
          lambda: matched(b, "image_latent", tr.req(half, "del-a"), ADMIN) is None, 1.0)
    check(matched(b, "image_latent", tr.req(half, "del-b"), ADMIN) is not None, "kept")
    status, _, body = a.request("POST", "/v1/invalidate",
                                json.dumps({"layer": "image_latent", "model": "del-b"}),
                                {"Content-Type": "application/json", **tr.auth(ADMIN)})
    check_eq(status, 200, body)
    until("b stops matching an invalidated entry",
          lambda: matched(b, "image_latent", tr.req(half, "del-b"), ADMIN) is None, 1.0)


def t_late_node_and_lost_entry(url, cfg, a, redis_port):
    orig = tr.IM + "rose.jpg"
    key = tr.store(a, "image_latent", tr.req(orig, "late"), b"rose", ADMIN)
    rkey = b"gencache:v1:" + key.encode()
    until("the entry reaches Redis", lambda: command(redis_port, b"EXISTS", rkey) == b":1\r\n")
    c = node(url, cfg)
    try:
        v = tr.variant("rose.jpg", "bright")
        got = until("a node started later matches",
                    lambda: matched(c, "image_latent", tr.req(v, "late"), ADMIN))
        check_eq((got[0], got[2]), (key, b"rose"), "late node")
        # The entry leaves Redis behind every node's back (a still holds its own copy): a node
        # that holds none finds the record and misses.
        check_eq(command(redis_port, b"DEL", rkey), b":1\r\n", "DEL in Redis")
        c2 = node(url, cfg)
        try:
            check(matched(c2, "image_latent", tr.req(v, "late"), ADMIN) is None,
                  "a record without its entry")
        finally:
            c2.stop()
    finally:
        c.stop()


def t_cluster(cfg):
    cluster = Cluster()
    nodes = []
    try:
        nodes = [node(cluster.url, cfg) for _ in range(2)]
        orig = tr.IM + "configure.jpg"
        key = tr.store(nodes[0], "image_latent", tr.req(orig, "cluster"), b"on-a-cluster", ADMIN)
        v = tr.variant("configure.jpg", "q70")
        got = until("matched through the other node of a cluster",
                    lambda: matched(nodes[1], "image_latent", tr.req(v, "cluster"), ADMIN))
        check_eq((got[0], got[2]), (key, b"on-a-cluster"), "cluster")
        check(got[1].startswith("perceptual"), got[1])
    finally:
        for d in nodes:
            d.stop()
        cluster.stop()


def main():
    r = Runner()
    redis = Redis()
    cfg = tr.config(tenants=True)
    try:
        a, b = node(redis.url, cfg), node(redis.url, cfg)
        try:
            r.run("match_across_nodes", t_match_across_nodes, a, b)
            r.run("tenants_across_nodes", t_tenants_across_nodes, a, b)
            r.run("delete_and_invalidate_across_nodes", t_delete_and_invalidate_across_nodes, a, b)
            r.run("late_node_and_lost_entry", t_late_node_and_lost_entry, redis.url, cfg, a,
                  redis.port)
        finally:
            a.stop()
            b.stop()
        r.run("cluster", t_cluster, cfg)
    finally:
        redis.stop()
        shutil.rmtree(tr.TMP, ignore_errors=True)
    r.finish()


if __name__ == "__main__":
    main()

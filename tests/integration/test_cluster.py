#!/usr/bin/python3
"""Three gencached nodes on a 3-primary Redis Cluster (all started on loopback by this test):
entries put through one node are read through the others, 30 concurrent identical generate
requests spread across the three nodes call the upstream once, and a delete or an invalidation
on one node is seen by the others within a second. Bounded: about 15 s on an idle machine."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import Daemon, Runner, Upstream, check, check_eq  # noqa: E402

SLEEP_MS = 300


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def command(port, *args):
    payload = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(payload)
        return s.recv(65536)


class Cluster:
    """Three redis-server primaries in cluster mode, joined by redis-cli --cluster create."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="gencache-cluster-")
        self.procs, self.ports = [], []
        try:
            for i in range(3):
                port, bus = free_port(), free_port()
                d = os.path.join(self.dir, "n%d" % i)
                os.mkdir(d)
                self.procs.append(subprocess.Popen(
                    ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                     "--cluster-enabled", "yes", "--cluster-port", str(bus),
                     "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000",
                     "--dir", d, "--save", "", "--appendonly", "no", "--loglevel", "warning"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL))
                self.ports.append(port)
            for port in self.ports:
                self._wait(lambda: command(port, b"PING") == b"+PONG\r\n", "redis-server start")
            subprocess.run(["redis-cli", "--cluster", "create"] +
                           ["127.0.0.1:%d" % p for p in self.ports] + ["--cluster-yes"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=30)
            for port in self.ports:
                self._wait(lambda: b"cluster_state:ok" in command(port, b"CLUSTER", b"INFO"),
                           "cluster_state:ok")
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def _wait(cond, what, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if cond():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("timed out waiting for " + what)

    @property
    def url(self):
        return "redis-cluster://" + ",".join("127.0.0.1:%d" % p for p in self.ports)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def gen(d, doc):
    return d.request("POST", "/v1/generate", body=json.dumps(doc).encode(),
                     headers={"Content-Type": "application/json"})


def t_entries_across_nodes(nodes):
    for i in range(60):
        key = "result/%064x" % (0xc0ffee00 + i)
        st, _, _ = nodes[0].request("PUT", "/v1/entries/" + key, body=b"v%d" % i * 100)
        check_eq(st, 201 if st == 201 else 200, "put %d" % i)
    for n in nodes[1:]:
        for i in range(60):
            key = "result/%064x" % (0xc0ffee00 + i)
            st, h, body = n.request("GET", "/v1/entries/" + key)
            check_eq((st, body), (200, b"v%d" % i * 100), "read through another node")
            check_eq(h.get("x-gencache-tier"), "redis", "found in the shared tier")


def t_generate_once_across_nodes(nodes, up):
    doc = {"model": "svd", "prompt": "three nodes, one call", "seed": 3, "steps": 4}
    before = up.calls()
    n = 30
    results = [None] * n
    barrier = threading.Barrier(n)

    def one(i):
        barrier.wait()
        try:
            results[i] = gen(nodes[i % 3], doc)
        except OSError as e:
            results[i] = e

    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    for r in results:
        check(isinstance(r, tuple) and r[0] == 200, "a request failed: %r" % (r,))
    check_eq(up.calls() - before, 1, "upstream calls for 30 identical requests on 3 nodes")
    outcomes = [r[1].get("x-gencache") for r in results]
    check_eq(outcomes.count("miss"), 1, "misses among %s" % outcomes)
    check_eq(len({r[2] for r in results}), 1, "every node answers the same bytes")


def t_invalidation_reaches_every_node(nodes):
    key = "result/%064x" % 0xdead
    st, _, _ = nodes[0].request("PUT", "/v1/entries/" + key, body=b"soon gone")
    check(st in (200, 201), "put")
    for n in nodes[1:]:
        for _ in range(2):  # the second read is served from the node's own memory
            st, h, _ = n.request("GET", "/v1/entries/" + key)
            check_eq(st, 200, "read before the invalidation")
        check_eq(h.get("x-gencache-tier"), "mem", "local copy")
    st, _, body = nodes[0].request("POST", "/v1/invalidate", body=json.dumps({"key": key}).encode(),
                                   headers={"Content-Type": "application/json"})
    check_eq(st, 200, "invalidate")
    t0 = time.monotonic()
    for n in nodes[1:]:
        while True:
            st, _, _ = n.request("GET", "/v1/entries/" + key)
            if st == 404:
                break
            check(time.monotonic() - t0 < 1.0, "a node still serves an invalidated entry")
            time.sleep(0.005)
    print("  invalidation seen by both other nodes after %.0f ms" % ((time.monotonic() - t0) * 1e3))
    # The publishing node counts its message, in /v1/stats and /metrics.
    st, _, body = nodes[0].request("GET", "/v1/stats")
    check_eq(st, 200, "stats")
    redis = json.loads(body)["tiers"]["redis"]
    check(redis["invalidations_published"] >= 1, "invalidations_published: %r" % redis)
    st, _, body = nodes[0].request("GET", "/metrics")
    check_eq(st, 200, "metrics")
    check(b'gencache_invalidations_published_total{tier="redis"}' in body, "published metric")


def main():
    r = Runner()
    cluster = Cluster()
    up = Upstream("--sleep-ms", str(SLEEP_MS), "--size-kb", "16")
    nodes = []
    try:
        for _ in range(3):
            nodes.append(Daemon("--redis", cluster.url, "--redis-timeout", "500",
                                "--upstream", up.url, threads=4))
        r.run("entries_across_nodes", t_entries_across_nodes, nodes)
        r.run("generate_once_across_nodes", t_generate_once_across_nodes, nodes, up)
        r.run("invalidation_reaches_every_node", t_invalidation_reaches_every_node, nodes)
    finally:
        for d in nodes:
            d.stop()
        up.stop()
        cluster.stop()
    r.finish()


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""A bounded soak of the real daemon: mixed PUT/GET/DELETE load over a working set ten times the
memory cap, with Redis killed and restarted twice and the daemon killed with SIGKILL and restarted
in the middle. Not part of `make test` (it runs for minutes); docs/BENCHMARKS.md has its figures.

Checks, each printed with its figure:
  - peak anonymous resident memory of the daemon <= (memory cap + in-flight budget) * 1.10
    (VmRSS, which also counts the LMDB pages read through its file mapping, is printed too);
  - no client error other than the documented 503 busy (in-flight budget full) and connection
    failures while the daemon is down after the kill;
  - no corrupt read: every value carries its key, generation and length in a header and its
    bytes are regenerated from them;
  - no acknowledged write-through (`result`) entry lost: after the kill -9 and at the end, every
    result key whose last acknowledged operation was a PUT reads back that exact generation.

Usage: tests/soak/soak.py [--minutes 10] [--cap-mib 64] [--inflight-mib 64] [--clients 6]
       [--bin build/bin] [--keep] [--encrypt]
Needs redis-server on PATH. Exit status 0 when every check holds.
"""
import argparse
import http.client
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from test_tiers_daemon import free_port  # noqa: E402

MiB = 1 << 20
MAGIC = b"SOAK"


def key_hex(i):
    return "%064x" % (0x50A4 << 200 | i)


def size_of(i):
    """Each key has a fixed size: mostly small, some video-sized, a few large."""
    r = random.Random(i * 7919)
    p = r.random()
    if p < 0.55:
        return r.randint(4 << 10, 64 << 10)
    if p < 0.92:
        return r.randint(256 << 10, 1536 << 10)
    return r.randint(3 << 20, 6 << 20)


def value(i, gen):
    n = size_of(i)
    head = MAGIC + struct.pack("<III", i, gen, n)
    body = random.Random(i << 20 | gen).randbytes(n - len(head))
    return head + body


def check_value(data, want_i):
    """(gen, ok): ok False when the bytes are not exactly what value(i, gen) makes."""
    if len(data) < 16 or data[:4] != MAGIC:
        return None, False
    i, gen, n = struct.unpack("<III", data[4:16])
    if i != want_i or n != len(data):
        return gen, False
    return gen, data == value(i, gen)


def rss(pid):
    out = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k = line.split(":")[0]
                if k in out:
                    out[k] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


class Redis:
    def __init__(self, port, workdir):
        self.port, self.workdir, self.proc = port, workdir, None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.workdir, "--loglevel", "warning"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Daemon:
    def __init__(self, bin_dir, config, data_dir, port, log_path):
        self.args = [os.path.join(bin_dir, "gencached"), "--config", config, "--listen",
                     "127.0.0.1:%d" % port, "--data-dir", data_dir, "--threads", "4"]
        self.port, self.log_path, self.proc = port, log_path, None

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("gencached did not start; see %s" % self.log_path)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class State:
    """What the clients know: per key, the last acknowledged generation and whether an
    operation on it had an unknown outcome (the daemon died under it)."""

    def __init__(self, n_keys):
        self.lock = threading.Lock()
        self.acked = {}       # key -> generation of the last acknowledged PUT; absent: deleted
        self.uncertain = set()
        self.gen = [0] * n_keys
        self.counts = {k: 0 for k in ("get", "hit", "put", "put_ok", "busy", "delete",
                                      "corrupt", "stale_wt", "client_errors", "down_errors",
                                      "lost")}
        self.errors = []

    def count(self, k, n=1):
        with self.lock:
            self.counts[k] += n

    def error(self, what):
        with self.lock:
            self.counts["client_errors"] += 1
            if len(self.errors) < 20:
                self.errors.append(what)


def layer_of(i):
    return "result" if i % 2 == 0 else "image_latent"  # write-through / write-back


def client(n, keys, port, st, stop, pause, paused):
    rnd = random.Random(n)
    conn = None
    while not stop.is_set():
        if pause.is_set():
            paused[n].set()
            conn = None
            time.sleep(0.02)
            continue
        paused[n].clear()
        i = rnd.choice(keys)
        path = "/v1/entries/%s/%s" % (layer_of(i), key_hex(i))
        op = rnd.random()
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            if op < 0.50:
                st.count("get")
                conn.request("GET", path)
                r = conn.getresponse()
                body = r.read()
                if r.status == 200:
                    st.count("hit")
                    gen, ok = check_value(body, i)
                    if not ok:
                        st.count("corrupt")
                        st.error("corrupt read of key %d (gen %s, %d bytes)" % (i, gen, len(body)))
                    elif layer_of(i) == "result" and i not in st.uncertain:
                        want = st.acked.get(i)
                        if want is not None and gen != want:
                            st.count("stale_wt")
                elif r.status != 404:
                    st.error("GET %d: %d %s" % (i, r.status, body[:200]))
            elif op < 0.95:
                st.gen[i] += 1
                gen = st.gen[i]
                st.count("put")
                st.uncertain.add(i)
                conn.request("PUT", path, body=value(i, gen),
                             headers={"X-Gencache-Cost-Ms": "1200"})
                r = conn.getresponse()
                body = r.read()
                if r.status == 201:
                    st.count("put_ok")
                    st.acked[i] = gen
                    st.uncertain.discard(i)
                elif r.status == 503 and b"busy" in body:
                    st.count("busy")  # documented: the in-flight budget is full
                    st.uncertain.discard(i)
                else:
                    st.error("PUT %d: %d %s" % (i, r.status, body[:200]))
            else:
                st.count("delete")
                st.uncertain.add(i)
                conn.request("DELETE", path)
                r = conn.getresponse()
                body = r.read()
                if r.status in (204, 404):
                    st.acked.pop(i, None)
                    st.uncertain.discard(i)
                else:
                    st.error("DELETE %d: %d %s" % (i, r.status, body[:200]))
        except (OSError, http.client.HTTPException):
            # The daemon is down (killed) or dropped the connection: the outcome of this
            # operation is unknown; the key stays uncertain until its next acknowledged PUT.
            st.count("down_errors")
            conn = None
            time.sleep(0.05)


def verify(port, st, label):
    """Every result key whose last acknowledged operation was a PUT reads back that generation."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    checked = lost = 0
    for i, gen in sorted(st.acked.items()):
        if layer_of(i) != "result" or i in st.uncertain:
            continue
        checked += 1
        conn.request("GET", "/v1/entries/result/%s" % key_hex(i))
        r = conn.getresponse()
        body = r.read()
        got, ok = check_value(body, i) if r.status == 200 else (None, False)
        if r.status != 200 or not ok or got != gen:
            lost += 1
            if lost <= 5:
                print("  %s: key %d: want gen %d, got status %d gen %s ok %s"
                      % (label, i, gen, r.status, got, ok))
    st.count("lost", lost)
    print("%s: %d acknowledged write-through entries checked, %d lost" % (label, checked, lost))
    return lost


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--cap-mib", type=int, default=64)
    ap.add_argument("--inflight-mib", type=int, default=64)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "..", "..", "build", "bin"))
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--encrypt", action="store_true",
                    help="run with encryption at rest (a random key in a key file)")
    a = ap.parse_args()

    cap, budget = a.cap_mib * MiB, a.inflight_mib * MiB
    # Keys until their sizes add up to ten times the memory cap.
    keys, total = [], 0
    while total < 10 * cap:
        keys.append(len(keys))
        total += size_of(keys[-1])
    work = tempfile.mkdtemp(prefix="gencache-soak-")
    rport, dport = free_port(), free_port()
    config = os.path.join(work, "gencache.yaml")
    with open(config, "w") as f:
        f.write("tiers:\n  memory:\n    max_bytes: %dM\n  disk:\n    max_bytes: 16G\n"
                "  redis:\n    url: redis://127.0.0.1:%d\n"
                "limits:\n  max_body: 16M\n  max_inflight_bytes: %dM\n"
                % (a.cap_mib, rport, a.inflight_mib))
        if a.encrypt:
            key_file = os.path.join(work, "soak.key")
            with open(key_file, "w") as k:
                k.write(os.urandom(32).hex() + "\n")
            f.write("encryption:\n  key_file: %s\n" % key_file)
    print("soak: %.1f min, %d clients, %d keys holding %.0f MiB (%.1fx the %d MiB memory cap), "
          "in-flight budget %d MiB%s, work dir %s"
          % (a.minutes, a.clients, len(keys), total / MiB, total / cap, a.cap_mib,
             a.inflight_mib, ", encryption at rest" if a.encrypt else "", work))
    redis = Redis(rport, work)
    daemon = Daemon(a.bin, config, os.path.join(work, "data"), dport,
                    os.path.join(work, "gencached.log"))
    daemon.start()
    st = State(len(keys))
    stop, pause = threading.Event(), threading.Event()
    paused = [threading.Event() for _ in range(a.clients)]
    peak = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}

    def sample():
        while not stop.is_set():
            if daemon.proc and daemon.proc.poll() is None:
                r = rss(daemon.proc.pid)
                for k in peak:
                    peak[k] = max(peak[k], r[k])
            time.sleep(0.1)

    threads = [threading.Thread(target=client, args=(n, keys[n::a.clients], dport, st, stop,
                                                     pause, paused), daemon=True)
               for n in range(a.clients)]
    threads.append(threading.Thread(target=sample, daemon=True))
    for t in threads:
        t.start()

    def wait_paused():
        pause.set()
        for p in paused:
            p.wait(60)

    t0, secs = time.monotonic(), a.minutes * 60
    events = [(0.25, "redis"), (0.5, "kill9"), (0.75, "redis")]
    lost_mid = 0
    for frac, what in events:
        time.sleep(max(0, t0 + frac * secs - time.monotonic()))
        if what == "redis":
            print("%6.1fs: Redis killed; restarted 3 s later" % (time.monotonic() - t0))
            redis.kill()
            time.sleep(3)
            redis.start()
        else:
            print("%6.1fs: gencached killed with SIGKILL under load" % (time.monotonic() - t0))
            daemon.kill9()
            wait_paused()
            daemon.start()
            lost_mid = verify(dport, st, "after kill -9 and restart")
            pause.clear()
    time.sleep(max(0, t0 + secs - time.monotonic()))
    wait_paused()
    lost_end = verify(dport, st, "at the end")
    # What the tiers themselves dropped or refused (since the restart).
    conn = http.client.HTTPConnection("127.0.0.1", dport, timeout=30)
    conn.request("GET", "/metrics")
    metrics = conn.getresponse().read().decode()
    dropped = sum(int(line.split()[-1]) for line in metrics.splitlines()
                  if line.startswith(("gencache_evictions_total{", "gencache_encryption_rejected"))
                  and ('reason="corrupt"' in line or "encryption_rejected" in line))
    stop.set()
    rc = daemon.stop()
    redis.kill()

    c = st.counts
    bound = (cap + budget) * 1.10
    print("requests: %d GET (%d hits), %d PUT (%d acknowledged, %d refused 503 busy), %d DELETE"
          % (c["get"], c["hit"], c["put"], c["put_ok"], c["busy"], c["delete"]))
    print("peak memory of gencached: RssAnon %.1f MiB, VmRSS %.1f MiB (RssFile %.1f MiB: LMDB "
          "pages read through its mapping); bound (cap + in-flight budget) * 1.10 = %.1f MiB"
          % (peak["RssAnon"] / MiB, peak["VmRSS"] / MiB, peak["RssFile"] / MiB, bound / MiB))
    print("client errors %d (besides %d documented 503 busy); connection failures while the "
          "daemon was down %d; corrupt reads %d; stale write-through reads %d; acknowledged "
          "write-through entries lost %d (after the kill %d, at the end %d); daemon exit %s"
          % (c["client_errors"], c["busy"], c["down_errors"], c["corrupt"], c["stale_wt"],
             lost_mid + lost_end, lost_mid, lost_end, rc))
    print("records the tiers dropped as corrupt or refused (encryption) since the restart: %d"
          % dropped)
    for e in st.errors:
        print("  error: %s" % e)
    ok = (peak["RssAnon"] <= bound and c["client_errors"] == 0 and c["corrupt"] == 0 and
          lost_mid + lost_end == 0 and c["stale_wt"] == 0 and rc == 0 and dropped == 0)
    print("soak: %s" % ("PASS" if ok else "FAIL"))
    if a.keep or not ok:
        print("work directory kept: %s" % work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Slow, idle and greedy clients cannot lock others out (issue 15, item 2): with the connection
limit lowered to 32, connections that trickle their head a byte at a time, or sit idle on
keep-alive, fill every slot; a fresh client's /healthz is still answered at once. One client
address holds at most limits.max_connections_per_client connections, and a head that is not
complete within limits.header_timeout has its connection closed. Clients on 127.0.0.2 and up
stand for other machines (Linux routes all of 127/8 to loopback). Each case takes a few
seconds."""
import os
import re
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import Daemon, Runner, check, check_eq  # noqa: E402

LIMIT = 32
PER_CLIENT = 8
HEADER_TIMEOUT_S = 4

CONFIG = """
limits:
  max_connections: %d
  max_connections_per_client: %d
  header_timeout: %ds
""" % (LIMIT, PER_CLIENT, HEADER_TIMEOUT_S)


def connect(d, source):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", d.port))
    return s


def closed_by_peer(s, wait):
    """True when the daemon closed s within `wait` seconds (EOF or reset on read)."""
    s.settimeout(wait)
    try:
        return s.recv(4096) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def healthz_time(d, timeout=8):
    """Seconds a fresh client from 127.0.0.1 takes to get /healthz (raises if it fails)."""
    t0 = time.monotonic()
    st, body = _healthz(d, timeout)
    check_eq((st, body), (200, b"ok"), "fresh /healthz")
    return time.monotonic() - t0


def _healthz(d, timeout):
    c = d.connect(timeout=timeout)
    try:
        c.request("GET", "/healthz")
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


class Trickler:
    """Sends one more byte of a request head on every socket every `period` seconds."""

    HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 4096

    def __init__(self, socks, period=0.5):
        self.socks = list(socks)
        self.period = period
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        i = 0
        while not self.stop.is_set():
            for s in self.socks:
                try:
                    s.send(self.HEAD[i % len(self.HEAD):i % len(self.HEAD) + 1])
                except OSError:
                    pass
            i += 1
            self.stop.wait(self.period)

    def close(self):
        self.stop.set()
        self.thread.join(5)
        for s in self.socks:
            s.close()


def sources(n):
    """n source addresses, PER_CLIENT connections each: 127.0.0.2, 127.0.0.3, ..."""
    return ["127.0.0.%d" % (2 + i // PER_CLIENT) for i in range(n)]


def t_per_client_cap(d):
    socks = [connect(d, "127.0.0.2") for _ in range(PER_CLIENT + 6)]
    tr = Trickler(socks)
    try:
        time.sleep(0.3)
        refused = sum(closed_by_peer(s, 0.2) for s in socks)
        check_eq(refused, 6, "connections beyond the per-client cap closed at once")
        took = healthz_time(d)
        check(took < 1.0, "healthz from another address took %.2f s" % took)
    finally:
        tr.close()


def t_slowloris_fills_every_slot(d):
    # Every slot the daemon has, from several addresses, each trickling its head.
    socks = []
    for src in sources(LIMIT):
        try:
            socks.append(connect(d, src))
        except OSError:
            break
    tr = Trickler(socks)
    try:
        time.sleep(0.5)
        # Well before their head deadline, heads older than a second are shed to make room.
        took = healthz_time(d)
        check(took < 2.5, "healthz with every slot trickling took %.2f s" % took)
        # Every trickling connection is closed once its head is overdue, trickle or not.
        t0 = time.monotonic()
        open_left = [s for s in socks if not closed_by_peer(s, max(0.05, HEADER_TIMEOUT_S + 2.5 -
                                                                   (time.monotonic() - t0)))]
        check_eq(len(open_left), 0, "slow heads still open after the header timeout")
        _, _, text = d.request("GET", "/metrics")
        closed = {reason: int(n) for reason, n in re.findall(
            rb'gencache_connections_closed_total\{reason="(\w+)"\} (\d+)', text)}
        check(closed.get(b"head_timeout", 0) + closed.get(b"shed", 0) >= LIMIT - PER_CLIENT,
              "closed connections in /metrics: %r" % closed)
    finally:
        tr.close()


def t_idle_keepalive_fills_every_slot(d):
    conns = []
    for src in sources(LIMIT):
        try:
            s = connect(d, src)
        except OSError:
            break
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        conns.append(s)
    answered = 0
    for s in conns:
        s.settimeout(3)
        try:
            if s.recv(4096).startswith(b"HTTP/1.1 200"):
                answered += 1
        except OSError:
            pass
    check(answered >= LIMIT // 2, "keep-alive requests answered: %d" % answered)
    # Now they sit idle on keep-alive, holding their slots; a newcomer is served at once.
    for _ in range(3):
        took = healthz_time(d)
        check(took < 1.0, "healthz with every slot idle took %.2f s" % took)
    shed = sum(closed_by_peer(s, 0.05) for s in conns)
    check(shed >= 1, "no idle connection was closed to make room")
    for s in conns:
        s.close()


def t_fast_clients_unaffected(d):
    # A request whose head arrives promptly is never cut, however long it is served.
    s = connect(d, "127.0.0.1")
    try:
        s.sendall(b"PUT /v1/entries/result/" + b"a" * 64 + b" HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 6\r\n\r\nab")
        time.sleep(HEADER_TIMEOUT_S + 1.5)  # the body is slow, the head was not
        s.sendall(b"cdef")
        s.settimeout(5)
        reply = s.recv(4096)
        check(reply.startswith(b"HTTP/1.1 201"), "slow body after a prompt head: %r" % reply[:80])
    finally:
        s.close()


def main():
    r = Runner()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "gencache.yaml")
        with open(path, "w") as f:
            f.write(CONFIG)
        for name, fn in (("per_client_cap", t_per_client_cap),
                         ("slowloris_fills_every_slot", t_slowloris_fills_every_slot),
                         ("idle_keepalive_fills_every_slot", t_idle_keepalive_fills_every_slot),
                         ("fast_clients_unaffected", t_fast_clients_unaffected)):
            d = Daemon("--config", path)
            try:
                r.run(name, fn, d)
                r.run(name + ".alive", lambda: check(d.alive(), "daemon died"))
            finally:
                d.stop()
    r.finish()


if __name__ == "__main__":
    main()

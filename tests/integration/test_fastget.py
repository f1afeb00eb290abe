#!/usr/bin/python3
"""The daemon's own loop for keep-alive entry GETs (http.fast_get, tools/gencached/fastget.c),
and the same suite with it off (libmicrohttpd alone). The loop answers simple GET and HEAD
requests of /v1/entries/{key} and hands every other request, with its bytes unread, to
libmicrohttpd: so pipelined mixes of both, heads split across writes, slow readers, clients that
go away mid-reply, tokens, tenants, limits, timeouts and shutdown are all exercised on both
paths, and the answers are compared byte for byte with the ones libmicrohttpd gives for the same
request (an extra, unknown header sends a request there)."""
import functools
import hashlib
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import Daemon, Runner, check, check_eq, tenants_config  # noqa: E402

TOKENS = {"alice": "alice-token-0123456789", "bob": "bob-token-0123456789ab",
          "ops": "ops-token-0123456789abcd"}
IDLE_TIMEOUT_S = 2
HEADER_TIMEOUT_S = 1
PER_CLIENT = 4
BIG = 1536 * 1024  # 1.5 MiB


def key(name, layer="result"):
    return "%s/%s" % (layer, hashlib.sha256(name.encode()).hexdigest())


def path(k):
    return "/v1/entries/" + k


def config(fast, tenants=False, max_connections=1024):
    lines = ["http:", "  fast_get: %s" % ("true" if fast else "false"),
             "limits:", "  timeout: %ds" % IDLE_TIMEOUT_S,
             "  max_connections: %d" % max_connections,
             "  header_timeout: %ds" % HEADER_TIMEOUT_S,
             "  max_connections_per_client: %d" % PER_CLIENT]
    if tenants:
        lines += tenants_config(TOKENS, admins=("ops",))
    return "\n".join(lines) + "\n"


def bearer(name):
    return {"Authorization": "Bearer " + TOKENS[name]}


class Reader:
    """HTTP/1.1 responses read off a raw socket, one at a time."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        d = self.sock.recv(1 << 20)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def response(self, head=False):
        """(status, {lowercase name: value}, body, raw bytes of the response)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        end = self.buf.index(b"\r\n\r\n") + 4
        lines = self.buf[:end - 4].decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            n, v = line.split(":", 1)
            hdrs[n.strip().lower()] = v.strip()
        length = 0 if head or status == 304 else int(hdrs.get("content-length", "0"))
        while len(self.buf) < end + length:
            self._fill()
        raw = self.buf[:end + length]
        self.buf = self.buf[end + length:]
        if status == 100:  # an interim answer (Expect: 100-continue): the real one follows
            return self.response(head)
        return status, hdrs, raw[end:], raw

    def closed(self, wait=3):
        """True when the peer closes the connection within `wait` seconds (nothing else comes)."""
        self.sock.settimeout(wait)
        try:
            d = self.sock.recv(4096)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        return d == b""


def raw_conn(d, source="127.0.0.1", timeout=10):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", d.port))
    return s


def get_req(k, extra=b"", method=b"GET"):
    return method + b" " + path(k).encode() + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"\r\n"


def put(d, k, data, headers=None):
    st, _, body = d.request("PUT", path(k), data, headers or {})
    check_eq(st, 201, "PUT %s: %r" % (k, body[:200]))


def no_date(raw):
    return re.sub(rb"Date: [^\r]*\r\n", b"", raw)


def metric(d, name, headers=None):
    _, _, text = d.request("GET", "/metrics", headers=headers)
    m = re.search(rb"^" + re.escape(name.encode()) + rb" (\d+)$", text, re.M)
    return int(m.group(1)) if m else None


def both_answers(d, req, head=False):
    """The answers of the loop and of libmicrohttpd to the same request, each on a new
    connection, Date aside."""
    answers = []
    for extra in (b"", b"X-Route-Through-Mhd: 1\r\n"):  # an unknown header: MHD's
        s = raw_conn(d)
        try:
            s.sendall(req.replace(b"\r\n\r\n", b"\r\n" + extra + b"\r\n") if extra else req)
            answers.append(no_date(Reader(s).response(head)[3]))
        finally:
            s.close()
    return answers


# ---- cases -------------------------------------------------------------------------------------

def t_same_bytes_as_mhd(d):
    """Every answer the loop gives equals libmicrohttpd's for the same request, but the Date."""
    k, missing, tensor = key("same"), key("same-missing"), key("same-tensor", "image_latent")
    put(d, k, b"value bytes", {"X-Gencache-Tags": "a,b", "X-Gencache-Model": "m1",
                               "X-Gencache-Cost-Ms": "1234", "Content-Type": "video/mp4"})
    put(d, tensor, bytes(range(32)), {"X-Gencache-Dtype": "f32", "X-Gencache-Shape": "2,4",
                                      "X-Gencache-Codec": "int8"})
    _, hdrs, _ = d.request("GET", path(k))
    etag = hdrs["etag"].encode()
    cases = [(get_req(k), False), (get_req(k, method=b"HEAD"), True),
             (get_req(k, b"If-None-Match: " + etag + b"\r\n"), False),
             (get_req(k, b"If-None-Match: \"0000000000000000\"\r\n"), False),
             (get_req(missing), False), (get_req(missing, method=b"HEAD"), True),
             (get_req(tensor), False), (get_req(k, b"Connection: close\r\n"), False)]
    for req, head in cases:
        answers = both_answers(d, req, head)
        check_eq(answers[0], answers[1], "answer to %r" % req[:80])
        check(answers[0].startswith(b"HTTP/1.1 "), "an answer: %r" % answers[0][:80])


def t_pipelined(d):
    k = key("pipelined")
    put(d, k, b"first")
    s = raw_conn(d)
    try:
        s.sendall(get_req(k) + get_req(k) + get_req(k, method=b"HEAD") +
                  b"PUT " + path(k).encode() + b" HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\n"
                  b"second" + get_req(k) + get_req(key("pipelined-missing")))
        r = Reader(s)
        for i in range(2):
            st, _, body, _ = r.response()
            check_eq((st, body), (200, b"first"), "pipelined GET %d" % i)
        st, hdrs, body, _ = r.response(head=True)
        check_eq((st, hdrs.get("content-length"), body), (200, "5", b""), "pipelined HEAD")
        st, _, _, _ = r.response()
        check_eq(st, 201, "pipelined PUT")
        st, _, body, _ = r.response()
        check_eq((st, body), (200, b"second"), "GET after the PUT, same write")
        st, _, body, _ = r.response()
        check_eq((st, b'"not_found"' in body), (404, True), "pipelined miss")
    finally:
        s.close()


def stored_and_connected(d, name, data):
    """A new entry's key, and a raw connection to the daemon."""
    k = key(name)
    put(d, k, data)
    return k, raw_conn(d)


def t_split_byte_by_byte(d):
    k, s = stored_and_connected(d, "split", b"split value")
    try:
        r = Reader(s)
        for _ in range(2):  # the second request on the same, kept-alive connection
            for b in get_req(k, b"User-Agent: slow\r\nAccept: */*\r\n"):
                s.sendall(bytes([b]))
                time.sleep(0.002)
            st, _, body, _ = r.response()
            check_eq((st, body), (200, b"split value"), "GET sent a byte at a time")
        # A PUT split likewise after fast GETs: the connection goes to MHD mid-life.
        req = (b"PUT " + path(k).encode() + b" HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\n"
               b"new")
        for b in req:
            s.sendall(bytes([b]))
            time.sleep(0.002)
        check_eq(r.response()[0], 201, "PUT sent a byte at a time")
        s.sendall(get_req(k))
        check_eq(r.response()[2], b"new", "GET after it")
    finally:
        s.close()


def t_keepalive_http_client(d):
    k = key("keepalive")
    c = d.connect()
    try:
        check_eq(d.request("GET", path(k), conn=c)[0], 404, "GET before")
        check_eq(d.request("PUT", path(k), b"v1", conn=c)[0], 201, "PUT")
        st, hdrs, body = d.request("GET", path(k), conn=c)
        check_eq((st, body, hdrs.get("x-gencache-tier")), (200, b"v1", "mem"), "GET after")
        check_eq(d.request("DELETE", path(k), conn=c)[0], 204, "DELETE")
        check_eq(d.request("GET", path(k), conn=c)[0], 404, "GET after DELETE")
    finally:
        c.close()


def t_head_304_404(d):
    k = key("head")
    put(d, k, b"x" * 1000)
    st, hdrs, body = d.request("HEAD", path(k))
    check_eq((st, hdrs.get("content-length"), body), (200, "1000", b""), "HEAD")
    st, h2, _ = d.request("GET", path(k), headers={"If-None-Match": hdrs["etag"]})
    check_eq((st, h2.get("etag")), (304, hdrs["etag"]), "If-None-Match")
    st, _, body = d.request("GET", path(k), headers={"If-None-Match": '"nope", ' + hdrs["etag"]})
    check_eq(st, 304, "If-None-Match list")
    st, hdrs, body = d.request("GET", path(key("head-missing")))
    check_eq((st, hdrs.get("content-type")), (404, "application/json"), "miss")
    check(b'"code":"not_found"' in body, "miss body: %r" % body)
    st, _, body = d.request("GET", "/v1/entries/result/zz")
    check_eq(st, 400, "malformed key")
    check(b"bad_key" in body, "malformed key body: %r" % body)
    st, _, body = d.request("GET", path(key("x", "nolayer")))
    check_eq(st, 404, "unknown layer")
    check(b"unknown_layer" in body, "unknown layer body: %r" % body)
    st, _, _ = d.request("GET", path(k) + "?as=f16")
    check_eq(st, 400, "?as= on bytes (through MHD)")


def small_window_get(d, name, size, rcvbuf):
    """A new entry of `size` random bytes, and a connection with a small receive buffer that has
    asked for it. Returns (bytes, socket)."""
    k = key(name)
    data = os.urandom(size)
    put(d, k, data)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(("127.0.0.1", d.port))
    s.sendall(get_req(k))
    return k, data, s


def t_slow_reader(d):
    k, data, s = small_window_get(d, "big", BIG, 8192)
    try:
        got = b""
        t0 = time.monotonic()
        while len(got) < 200000:  # a slow reader: 16 KiB every 10 ms
            got += s.recv(16384)
            time.sleep(0.01)
        # Meanwhile other clients are served at once.
        t1 = time.monotonic()
        st, _, body = d.request("GET", path(k))
        check_eq((st, len(body)), (200, BIG), "another client's GET meanwhile")
        check(time.monotonic() - t1 < 5, "another client waited %.1f s" % (time.monotonic() - t1))
        s.settimeout(30)
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += chunk
            end = got.find(b"\r\n\r\n")
            if end > 0 and len(got) >= end + 4 + BIG:
                break
        check(time.monotonic() - t0 < 60, "slow read took too long")
        end = got.index(b"\r\n\r\n") + 4
        check(got.startswith(b"HTTP/1.1 200"), "slow reader's status: %r" % got[:40])
        check_eq(len(got) - end, BIG, "slow reader's body length")
        check(got[end:] == data, "slow reader's bytes differ")
        # The connection is still good for the next request.
        s.sendall(get_req(key("big-missing")))
        check_eq(Reader(s).response()[0], 404, "next request after the slow read")
    finally:
        s.close()


def t_disconnect_mid_reply(d):
    k = key("abandon")
    data = os.urandom(16 << 20)
    put(d, k, data)
    for _ in range(5):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", d.port))
        s.sendall(get_req(k))
        s.recv(1000)
        # Reset rather than a polite close: the daemon's next send fails at once.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
    time.sleep(0.3)
    check(d.alive(), "daemon died")
    # The entry can be replaced and deleted: nothing was left half-held or corrupted.
    put(d, k, b"small now")
    st, _, body = d.request("GET", path(k))
    check_eq((st, body), (200, b"small now"), "GET after abandoned replies")
    check_eq(d.request("DELETE", path(k))[0], 204, "DELETE after abandoned replies")


def t_connection_close(d):
    k, s = stored_and_connected(d, "close", b"bye")
    try:
        s.sendall(get_req(k, b"Connection: close\r\n"))
        r = Reader(s)
        st, hdrs, body, _ = r.response()
        check_eq((st, body, hdrs.get("connection")), (200, b"bye", "close"), "Connection: close")
        check(r.closed(3), "connection left open after Connection: close")
    finally:
        s.close()


def t_http10_and_bad_heads(d):
    k = key("old")
    put(d, k, b"old")
    for req, status in ((b"GET " + path(k).encode() + b" HTTP/1.0\r\n\r\n", 200),
                        (get_req(k).replace(b"Host: t\r\n", b""), 400),
                        (get_req(k, b"Expect: 100-continue\r\n"), 200),
                        (get_req(k, b"Range: bytes=0-1\r\n"), 200),
                        (get_req(k, b"X-Long: " + b"a" * 6000 + b"\r\n"), 200),
                        (b"GET " + path(k).encode() + b"\n\n", 400)):
        s = raw_conn(d)
        try:
            s.sendall(req)
            check_eq(Reader(s).response()[0], status, "answer to %r" % req[:60])
        finally:
            s.close()
    check(d.alive(), "daemon died")


def entry_counts(d):
    """(requests on the entries route, hits of layer result in tier mem, requests the fast path
    answered), from /metrics."""
    _, _, text = d.request("GET", "/metrics")
    a = re.search(rb'gencache_request_duration_seconds_count\{route="entries"\} (\d+)', text)
    b = re.search(rb'gencache_hits_total\{layer="result",tier="mem"\} (\d+)', text)
    return (int(a.group(1)) if a else 0, int(b.group(1)) if b else 0,
            metric(d, "gencache_fast_get_requests_total") or 0)


def t_metrics_count(d):
    k = key("counted")
    put(d, k, b"c")
    counts = functools.partial(entry_counts, d)
    before = counts()
    c = d.connect()
    try:
        for _ in range(10):
            check_eq(d.request("GET", path(k), conn=c)[0], 200, "GET")
        check_eq(d.request("GET", path(key("counted-missing")), conn=c)[0], 404, "miss")
        check_eq(d.request("HEAD", path(k), conn=c)[0], 200, "HEAD")
    finally:
        c.close()
    after = counts()
    check_eq(after[0] - before[0], 12, "requests counted on the entries route")
    check_eq(after[1] - before[1], 10, "hits counted (HEAD is a probe)")
    fast = d.fast
    check_eq(after[2] - before[2], 12 if fast else 0, "requests the fast path answered")
    _, _, text = d.request("GET", "/v1/stats")
    check(b"result" in text, "stats answer")


def t_tokens_and_tenants(d):
    k = key("private")
    st, hdrs, _ = d.request("GET", path(k))
    check_eq((st, hdrs.get("www-authenticate", "")[:6]), (401, "Bearer"), "no token")
    st, _, _ = d.request("GET", path(k), headers={"Authorization": "Bearer wrong-token-000000"})
    check_eq(st, 401, "unknown token")
    st, _, _ = d.request("GET", path(k), headers={"Authorization": "Basic abc"})
    check_eq(st, 401, "not a bearer token")
    put(d, k, b"alice's", bearer("alice"))
    st, _, body = d.request("GET", path(k), headers=bearer("alice"))
    check_eq((st, body), (200, b"alice's"), "owner's GET")
    st, _, _ = d.request("GET", path(k), headers=bearer("bob"))
    check_eq(st, 404, "another tenant's GET of a private entry")
    st, _, _ = d.request("HEAD", path(k), headers=bearer("bob"))
    check_eq(st, 404, "another tenant's HEAD")
    put(d, k, b"bob's", bearer("bob"))
    check_eq(d.request("GET", path(k), headers=bearer("bob"))[2], b"bob's", "bob's own")
    check_eq(d.request("GET", path(k), headers=bearer("alice"))[2], b"alice's", "alice's own")
    # One keep-alive connection: fast GETs, then a 403 from MHD, then GETs again.
    c = d.connect()
    try:
        check_eq(d.request("GET", path(k), headers=bearer("alice"), conn=c)[0], 200, "GET")
        check_eq(d.request("GET", "/metrics", headers=bearer("alice"), conn=c)[0], 403,
                 "/metrics for a tenant without admin")
        check_eq(d.request("GET", path(k), headers=bearer("alice"), conn=c)[2], b"alice's",
                 "GET after the 403, same connection")
        check_eq(d.request("GET", path(k), conn=c)[0], 401, "same connection, no token")
    finally:
        c.close()
    check(metric(d, "gencache_connections", bearer("ops")) is not None, "admin sees /metrics")


def t_per_client_limit(d):
    socks = [raw_conn(d, "127.0.0.3") for _ in range(PER_CLIENT + 2)]
    try:
        time.sleep(0.2)
        answered = 0
        for s in socks:  # an admitted connection answers; a refused one was closed at once
            try:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                answered += Reader(s).response()[0] == 200
            except (OSError, EOFError):
                pass
        check_eq(answered, PER_CLIENT, "connections served from one address")
        check_eq(d.request("GET", "/healthz")[0], 200, "another address is served")
    finally:
        for s in socks:
            s.close()


def t_idle_timeout(d):
    k, s = stored_and_connected(d, "idle", b"i")
    try:
        s.sendall(get_req(k))
        r = Reader(s)
        check_eq(r.response()[0], 200, "GET")
        check(not r.closed(IDLE_TIMEOUT_S * 0.4), "closed before the idle timeout")
        check(r.closed(IDLE_TIMEOUT_S + 3), "idle connection not closed after the timeout")
    finally:
        s.close()


def t_slow_head(d):
    """A head of a request the loop would answer, trickled: closed once overdue, like any."""
    k = key("slowhead")
    put(d, k, b"s")
    s = raw_conn(d)
    try:
        req = get_req(k)
        t0 = time.monotonic()
        closed = False
        for i in range(len(req) - 1):
            try:
                s.sendall(req[i:i + 1])
            except OSError:
                closed = True
                break
            time.sleep(0.1)
            if time.monotonic() - t0 > HEADER_TIMEOUT_S + 3:
                break
        r = Reader(s)
        check(closed or r.closed(HEADER_TIMEOUT_S + 3), "trickled head not cut")
        check(time.monotonic() - t0 < HEADER_TIMEOUT_S + 6, "cut late")
    finally:
        s.close()


def t_stalled_reader(d):
    """A client that asks for a large value and stops reading is cut after the idle timeout,
    and the entry's handle with it."""
    _, data, s = small_window_get(d, "stalled", 16 << 20, 4096)
    try:
        time.sleep(0.3)
        for _ in range(20):  # bytes of a pipelined request: not a sign of reading
            try:
                s.sendall(b"G")
            except OSError:
                break
            time.sleep((IDLE_TIMEOUT_S + 2.5) / 20)
        got = 0
        s.settimeout(5)
        try:
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                got += len(chunk)
        except (ConnectionResetError, socket.timeout):
            pass
        check(got < len(data), "the stalled reply was not cut (%d bytes)" % got)
    finally:
        s.close()
    check(d.alive(), "daemon died")


def t_half_closed_client(d):
    """A client that sends its request and shuts its side: answered, then closed."""
    k, s = stored_and_connected(d, "halfclose", b"h")
    try:
        s.sendall(get_req(k))
        s.shutdown(socket.SHUT_WR)
        r = Reader(s)
        check_eq(r.response()[2], b"h", "answer after the client's half-close")
        check(r.closed(3), "half-closed connection left open")
        s2 = raw_conn(d)
        s2.sendall(get_req(k)[:30])
        s2.shutdown(socket.SHUT_WR)
        check(Reader(s2).closed(3), "a head that can never complete left open")
        s2.close()
    finally:
        s.close()


def t_concurrent_clients(d):
    keys = [key("conc%d" % i) for i in range(8)]
    for i, k in enumerate(keys):
        put(d, k, bytes([i]) * (1000 * (i + 1)))
    errors = []

    def worker(n):
        try:
            c = d.connect()
            for j in range(200):
                i = (n + j) % len(keys)
                st, _, body = d.request("GET", path(keys[i]), conn=c)
                if st != 200 or body != bytes([i]) * (1000 * (i + 1)):
                    errors.append((n, j, st))
                    return
            c.close()
        except Exception as e:  # reported below
            errors.append((n, repr(e)))

    # Fewer connections than the per-client cap allows, with room for the checks' own. Each
    # fast-path thread counts for itself: the scrape must add every thread's counts up.
    before = entry_counts(d)
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(PER_CLIENT - 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    check_eq(errors, [], "concurrent GETs")
    n = (PER_CLIENT - 1) * 200
    want = (n, n, n if d.fast else 0)
    # Either path counts a request once its reply is out, which may be just after the client
    # has read it: the last few may be counted a moment after the workers are done.
    deadline = time.monotonic() + 5
    while True:
        got = tuple(a - b for a, b in zip(entry_counts(d), before))
        if got == want or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    check_eq(got, want, "requests, hits and fast-path requests counted over every thread")


LIMIT = 8


def t_connection_limit(d):
    """Every slot taken by connections that sent nothing yet: a newcomer is served once the
    oldest are shed or time out, and the daemon never holds more than the limit."""
    socks = [raw_conn(d, "127.0.0.%d" % (4 + i // 3)) for i in range(LIMIT)]
    try:
        time.sleep(0.2)
        t0 = time.monotonic()
        st, _, body = d.request("GET", "/healthz")
        took = time.monotonic() - t0
        check_eq((st, body), (200, b"ok"), "newcomer at the connection limit")
        check(took < HEADER_TIMEOUT_S + 3, "newcomer waited %.1f s" % took)
        extra = [raw_conn(d, "127.0.0.9") for _ in range(3)]
        socks += extra
        time.sleep(0.3)
        n = metric(d, "gencache_connections")
        check(n is not None and n <= LIMIT, "open connections %r above the limit %d" % (n, LIMIT))
    finally:
        for s in socks:
            s.close()


def t_kept_head_follows_entry(d):
    """The loop keeps the head it built for a small value and sends it again; it must change as
    soon as the entry is replaced (even by the same bytes with other headers), with the TTL
    seconds left and with the Date."""
    k = key("kept-head")
    put(d, k, b"kept value", {"X-Gencache-Tags": "one", "Content-Type": "text/plain"})
    s = raw_conn(d)
    try:
        r = Reader(s)
        for i in range(3):  # built once, then sent from the kept copy
            s.sendall(get_req(k))
            st, hdrs, body, raw = r.response()
            check_eq((st, body, hdrs.get("x-gencache-tags"), hdrs.get("content-type")),
                     (200, b"kept value", "one", "text/plain"), "GET %d" % i)
        first_etag = hdrs["etag"]
        # The same bytes under other headers: a new version, whose head differs.
        put(d, k, b"kept value", {"X-Gencache-Tags": "two", "X-Gencache-Model": "m2"})
        s.sendall(get_req(k))
        st, hdrs, body, _ = r.response()
        check_eq((st, body, hdrs.get("x-gencache-tags"), hdrs.get("x-gencache-model"),
                  hdrs.get("content-type"), hdrs["etag"]),
                 (200, b"kept value", "two", "m2", "application/octet-stream", first_etag),
                 "GET after the same bytes were stored again with other headers")
        put(d, k, b"other bytes!")
        s.sendall(get_req(k))
        st, hdrs, body, _ = r.response()
        check_eq((st, body, hdrs.get("content-length"), hdrs.get("x-gencache-tags")),
                 (200, b"other bytes!", "12", None), "GET after new bytes")
        check(hdrs["etag"] != first_etag, "a new ETag for new bytes: %r" % hdrs["etag"])
        # Connection: close on a kept head's entry: its own head, then the end of the stream.
        s.sendall(get_req(k, b"Connection: close\r\n"))
        st, hdrs, body, _ = r.response()
        check_eq((st, body, hdrs.get("connection")), (200, b"other bytes!", "close"),
                 "Connection: close after kept-alive GETs")
        check(r.closed(), "closed after Connection: close")
    finally:
        s.close()
    # TTL seconds left and Date move on: the head follows them. HEAD is a probe, which does not
    # slide the TTL as a GET does; it gets the GET's head, from the same kept copy.
    t = key("kept-head-ttl")
    put(d, t, b"expiring", {"X-Gencache-TTL": "100"})
    s = raw_conn(d)
    try:
        r = Reader(s)
        s.sendall(get_req(t, method=b"HEAD"))
        _, h1, _, _ = r.response(head=True)
        s.sendall(get_req(t, method=b"HEAD"))
        _, h2, _, _ = r.response(head=True)
        time.sleep(1.5)  # below the idle timeout
        s.sendall(get_req(t, method=b"HEAD"))
        _, h3, _, _ = r.response(head=True)
        s.sendall(get_req(t))
        _, _, body, _ = r.response()
    finally:
        s.close()
    check_eq(body, b"expiring", "TTL entry's bytes")
    check(int(h1["x-gencache-ttl"]) >= int(h2["x-gencache-ttl"]) >= int(h3["x-gencache-ttl"]) + 1,
          "TTL left goes down: %s, %s, %s" % (h1["x-gencache-ttl"], h2["x-gencache-ttl"],
                                             h3["x-gencache-ttl"]))
    check(h3["date"] != h1["date"], "Date moves on: %r, %r" % (h1["date"], h3["date"]))
    # And whatever was kept, each answer is still libmicrohttpd's, byte for byte.
    for req in (get_req(k), get_req(k, method=b"HEAD"), get_req(k, b"Connection: close\r\n")):
        for attempt in range(3):  # a second boundary between the two may change the TTL
            a, b = both_answers(d, req, req.startswith(b"HEAD"))
            if a == b:
                break
        check_eq(a, b, "answer to %r" % req[:60])


def server_recv_queue(d, client):
    """Bytes waiting unread in the daemon's socket of the connection from client (an address),
    from /proc/net/tcp (rx_queue of the socket whose local port is the daemon's)."""
    want = ("%08X:%04X" % (0x0100007F, d.port), "%08X:%04X" % (0x0100007F, client[1]))
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if (fields[1], fields[2]) == want:
                return int(fields[4].split(":")[1], 16)
    return None


def t_answered_bytes_leave(d):
    """Many keep-alive GETs (more bytes than the loop leaves in a socket), then a PUT that goes to
    libmicrohttpd, on one connection; and an idle connection holds no unread bytes."""
    k, s = stored_and_connected(d, "many", b"many")
    try:
        r = Reader(s)
        for i in range(120):  # about 12 KiB of requests
            s.sendall(get_req(k, b"User-Agent: count-%d\r\n" % i))
            st, _, body, _ = r.response()
            check_eq((st, body), (200, b"many"), "GET %d" % i)
        s.sendall(get_req(k) * 40 + b"PUT " + path(k).encode() +
                  b" HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nnext" + get_req(k))
        for i in range(40):
            check_eq(r.response()[2], b"many", "pipelined GET %d" % i)
        check_eq(r.response()[0], 201, "PUT after the GETs")
        check_eq(r.response()[2], b"next", "GET after the PUT")
    finally:
        s.close()
    k, s = stored_and_connected(d, "idle-bytes", b"idle")
    try:
        r = Reader(s)
        for i in range(5):
            s.sendall(get_req(k))
            check_eq(r.response()[2], b"idle", "GET %d" % i)
        # The loop leaves answered bytes in a socket for 200 ms of quiet: wait for them to go,
        # on a loaded machine a while longer.
        deadline = time.monotonic() + 5
        while server_recv_queue(d, s.getsockname()) and time.monotonic() < deadline:
            time.sleep(0.05)
        check_eq(server_recv_queue(d, s.getsockname()), 0, "unread bytes in an idle connection")
        s.sendall(get_req(k))
        check_eq(r.response()[2], b"idle", "GET after the pause")
    finally:
        s.close()


def t_discarded_at_once(d):
    """Where SO_PEEK_OFF cannot be set (kernels before 6.9, or the preload that hides it), each
    answered request leaves the socket before its reply is sent: nothing is left unread between
    GETs. (With the offset, up to 4 KiB of answered requests may stay in the socket.)"""
    k, s = stored_and_connected(d, "at-once", b"now")
    try:
        r = Reader(s)
        for i in range(5):
            s.sendall(get_req(k, b"User-Agent: at-once-%d\r\n" % i))
            check_eq(r.response()[2], b"now", "GET %d" % i)
            check_eq(server_recv_queue(d, s.getsockname()), 0, "unread bytes after GET %d" % i)
    finally:
        s.close()


def shutdown_with_open_connections(fast):
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "c.yaml")
        with open(cfg, "w") as f:
            f.write(config(fast))
        d = Daemon("--config", cfg)
        socks = []
        try:
            k = key("shutdown")
            data = os.urandom(BIG)
            put(d, k, data)
            idle = raw_conn(d)
            idle.sendall(get_req(k))
            Reader(idle).response()
            half = raw_conn(d)
            half.sendall(get_req(k)[:20])  # a head on its way
            slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.connect(("127.0.0.1", d.port))
            slow.sendall(get_req(k))  # a reply the reader never takes
            socks = [idle, half, slow]
            time.sleep(0.3)
            t0 = time.monotonic()
            rc = d.stop(signal.SIGTERM, timeout=15)
            check_eq(rc, 0, "exit status with connections open")
            check(time.monotonic() - t0 < 10, "shutdown took %.1f s" % (time.monotonic() - t0))
            for s in (idle, half):
                check(Reader(s).closed(2), "connection left open by the stopped daemon")
        finally:
            for s in socks:
                s.close()
            d.stop()


def no_peek_off(r, cases, tmp):
    """The fast path's cases once more on what looks like a kernel without SO_PEEK_OFF for TCP.
    Left out of sanitizer builds, whose runtimes must come first in LD_PRELOAD."""
    lib = os.environ.get("GENCACHE_NO_PEEK_OFF")
    if not lib or os.environ.get("GENCACHE_SANITIZE_FLAGS"):
        return
    cfg = os.path.join(tmp, "no-peek-off.yaml")
    with open(cfg, "w") as f:
        f.write(config(True))
    d = Daemon("--config", cfg, env={"LD_PRELOAD": lib})
    d.fast = True
    try:
        r.run("no_peek_off.discarded_at_once", t_discarded_at_once, d)
        for name, fn in cases:
            r.run("no_peek_off.%s" % name, fn, d)
        r.run("no_peek_off.alive", lambda: check(d.alive(), "daemon died"))
    finally:
        rc = d.stop()
        r.run("no_peek_off.clean_exit", lambda: check_eq(rc, 0, "exit status"))


def main():
    r = Runner()
    cases = (("same_bytes_as_mhd", t_same_bytes_as_mhd), ("pipelined", t_pipelined),
             ("split_byte_by_byte", t_split_byte_by_byte),
             ("keepalive_http_client", t_keepalive_http_client), ("head_304_404", t_head_304_404),
             ("slow_reader", t_slow_reader), ("disconnect_mid_reply", t_disconnect_mid_reply),
             ("connection_close", t_connection_close),
             ("http10_and_bad_heads", t_http10_and_bad_heads), ("metrics_count", t_metrics_count),
             ("per_client_limit", t_per_client_limit), ("idle_timeout", t_idle_timeout),
             ("slow_head", t_slow_head), ("half_closed_client", t_half_closed_client),
             ("stalled_reader", t_stalled_reader),
             ("concurrent_clients", t_concurrent_clients),
             ("kept_head_follows_entry", t_kept_head_follows_entry),
             ("answered_bytes_leave", t_answered_bytes_leave))
    with tempfile.TemporaryDirectory() as tmp:
        for fast in (True, False):
            mode = "fast" if fast else "mhd"
            for tenants in (False, True):
                cfg = os.path.join(tmp, "%s-%d.yaml" % (mode, tenants))
                with open(cfg, "w") as f:
                    f.write(config(fast, tenants))
                d = Daemon("--config", cfg)
                d.fast = fast
                try:
                    if tenants:
                        r.run("%s.tokens_and_tenants" % mode, t_tokens_and_tenants, d)
                    else:
                        for name, fn in cases:
                            r.run("%s.%s" % (mode, name), fn, d)
                    r.run("%s.alive" % mode, lambda: check(d.alive(), "daemon died"))
                    if fast:
                        handoffs = metric(d, "gencache_fast_get_handoffs_total",
                                          bearer("ops") if tenants else None)
                        r.run("%s.handoffs_counted" % mode,
                              lambda: check((handoffs or 0) > 0, "no hand-off counted"))
                finally:
                    rc = d.stop()
                    r.run("%s.clean_exit" % mode, lambda: check_eq(rc, 0, "exit status"))
            r.run("%s.shutdown_with_open_connections" % mode, shutdown_with_open_connections,
                  fast)
            if fast:
                no_peek_off(r, cases, tmp)
            cfg = os.path.join(tmp, "%s-limit.yaml" % mode)
            with open(cfg, "w") as f:
                f.write(config(fast, max_connections=LIMIT))
            d = Daemon("--config", cfg)
            try:
                r.run("%s.connection_limit" % mode, t_connection_limit, d)
            finally:
                rc = d.stop()
                r.run("%s.limit_clean_exit" % mode, lambda: check_eq(rc, 0, "exit status"))
    r.finish()


if __name__ == "__main__":
    main()

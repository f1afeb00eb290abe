#!/usr/bin/python3
"""gencached over real HTTP: entry round trips with their metadata headers, conditional GETs,
statistics, and every kind of malformed request (bad keys, routes, methods, headers, oversize
bodies, raw garbage on the socket). After the abuse the daemon must still be up with its data
intact, and SIGTERM must stop it promptly with exit status 0."""
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import GENCACHED, Daemon, Runner, check, check_eq  # noqa: E402


def key(name, layer="result"):
    return "%s/%s" % (layer, hashlib.sha256(name.encode()).hexdigest())


def path(k):
    return "/v1/entries/" + k


def expect_error(resp, status, code=None, what=""):
    st, hdrs, body = resp
    check_eq(st, status, what + " status")
    check(hdrs.get("content-type", "").startswith("application/json"),
          "%s: error content type %r" % (what, hdrs.get("content-type")))
    doc = json.loads(body)
    check(isinstance(doc.get("error"), dict), what + ": no error object in " + repr(body))
    check(isinstance(doc["error"].get("message"), str) and doc["error"]["message"],
          what + ": empty message")
    if code:
        check_eq(doc["error"].get("code"), code, what + " error code")
    return doc["error"]["message"]


def stats(d):
    st, _, body = d.request("GET", "/v1/stats")
    check_eq(st, 200, "stats status")
    return json.loads(body)


# ---- happy paths ---------------------------------------------------------------------------

def t_health(d):
    st, hdrs, body = d.request("GET", "/healthz")
    check_eq((st, body), (200, b"ok"), "healthz")
    st, _, body = d.request("HEAD", "/healthz")
    check_eq((st, body), (200, b""), "HEAD healthz")


def t_round_trip(d):
    data = os.urandom(3 * 1024 * 1024 + 7)
    k = key("video")
    st, hdrs, body = d.request("PUT", path(k), data, {
        "X-Gencache-Cost-Ms": "1500", "X-Gencache-TTL": "3600", "X-Gencache-Tags": "a,b",
        "Content-Type": "video/mp4"})
    check_eq(st, 201, "PUT status")
    check_eq(json.loads(body), {"key": k, "size": len(data)}, "PUT body")
    st, hdrs, body = d.request("GET", path(k))
    check_eq(st, 200, "GET status")
    check(body == data, "GET body differs from what was put (%d vs %d bytes)" % (len(body),
                                                                             len(data)))
    check_eq(hdrs.get("content-length"), str(len(data)), "Content-Length")
    check_eq(hdrs.get("content-type"), "video/mp4", "Content-Type")
    check_eq(hdrs.get("x-gencache-cost-ms"), "1500", "X-Gencache-Cost-Ms")
    check_eq(hdrs.get("x-gencache-tier"), "mem", "X-Gencache-Tier")
    check_eq(hdrs.get("x-gencache-tags"), "a,b", "X-Gencache-Tags")
    ttl = int(hdrs.get("x-gencache-ttl", "-1"))
    check(3590 <= ttl <= 3600, "X-Gencache-TTL %d not about 3600" % ttl)
    check(re.fullmatch(r'"[0-9a-f]{16}"', hdrs.get("etag", "")), "ETag %r" % hdrs.get("etag"))
    check("x-gencache-dtype" not in hdrs and "x-gencache-shape" not in hdrs,
          "tensor headers on a non-tensor entry")


def t_many_sizes(d):
    for n in (0, 1, 63, 64, 65, 4096, 65535, 65536, 65537, 1 << 20, (1 << 20) + 3):
        data = os.urandom(n)
        k = key("size-%d" % n)
        st, _, _ = d.request("PUT", path(k), data, {"Content-Length": str(n)})
        check_eq(st, 201, "PUT %d bytes" % n)
        st, hdrs, body = d.request("GET", path(k))
        check_eq(st, 200, "GET %d bytes" % n)
        check(body == data, "body of %d bytes differs" % n)
        check_eq(hdrs.get("content-type"), "application/octet-stream", "default Content-Type")


def t_chunked_upload(d):
    data = os.urandom(200000)
    k = key("chunked")
    c = d.connect()
    try:
        c.putrequest("PUT", path(k))
        c.putheader("Transfer-Encoding", "chunked")
        c.endheaders()
        for i in range(0, len(data), 30000):
            piece = data[i:i + 30000]
            c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        c.send(b"0\r\n\r\n")
        r = c.getresponse()
        r.read()
        check_eq(r.status, 201, "chunked PUT")
    finally:
        c.close()
    st, _, body = d.request("GET", path(k))
    check(st == 200 and body == data, "chunked upload stored wrongly")


def t_tensor(d):
    k = key("latent", "image_latent")
    data = bytes(range(24))
    st, _, _ = d.request("PUT", path(k), data, {"X-Gencache-Dtype": "f32",
                                                 "X-Gencache-Shape": "2, 3",
                                                 "X-Gencache-Pinned": "1",
                                                 "X-Gencache-Codec": "none"})
    check_eq(st, 201, "tensor PUT")
    st, hdrs, body = d.request("GET", path(k))
    check_eq((st, body), (200, data), "tensor GET")
    check_eq(hdrs.get("x-gencache-dtype"), "f32", "dtype")
    check_eq(hdrs.get("x-gencache-shape"), "2,3", "shape")
    check_eq(hdrs.get("x-gencache-pinned"), "1", "pinned")
    # A scalar: an empty shape.
    st, _, _ = d.request("PUT", path(key("scalar", "image_latent")), b"\x01\x02",
                         {"X-Gencache-Dtype": "f16", "X-Gencache-Shape": ""})
    check_eq(st, 201, "scalar PUT")


def t_head(d):
    k = key("head")
    data = b"x" * 1000
    d.request("PUT", path(k), data, {"X-Gencache-Cost-Ms": "7"})
    before = stats(d)["layers"]["result"]["hits"]
    st, hdrs, body = d.request("HEAD", path(k))
    check_eq((st, body), (200, b""), "HEAD")
    check_eq(hdrs.get("content-length"), "1000", "HEAD Content-Length")
    check_eq(hdrs.get("x-gencache-cost-ms"), "7", "HEAD cost")
    check(re.fullmatch(r'"[0-9a-f]{16}"', hdrs.get("etag", "")), "HEAD ETag")
    check_eq(stats(d)["layers"]["result"]["hits"], before, "hits after HEAD (a probe)")
    st, hdrs2, _ = d.request("GET", path(k))
    check_eq(hdrs2.get("etag"), hdrs.get("etag"), "HEAD and GET ETag")
    check_eq(stats(d)["layers"]["result"]["hits"], before + 1, "hits after GET")
    st, _, body = d.request("HEAD", path(key("absent")))
    check_eq((st, body), (404, b""), "HEAD miss")


def t_if_none_match(d):
    k = key("etag")
    d.request("PUT", path(k), b"hello")
    st, hdrs, _ = d.request("GET", path(k))
    etag = hdrs["etag"]
    for value in (etag, "*", "W/" + etag, '"0000000000000000", ' + etag):
        st, h, body = d.request("GET", path(k), headers={"If-None-Match": value})
        check_eq((st, body), (304, b""), "If-None-Match " + value)
        check_eq(h.get("etag"), etag, "ETag on 304")
    st, _, body = d.request("GET", path(k), headers={"If-None-Match": '"0123456789abcdef"'})
    check_eq((st, body), (200, b"hello"), "If-None-Match other")
    d.request("PUT", path(k), b"changed")
    st, _, body = d.request("GET", path(k), headers={"If-None-Match": etag})
    check_eq((st, body), (200, b"changed"), "stale ETag after replace")


def t_delete(d):
    k = key("del")
    d.request("PUT", path(k), b"bye")
    st, _, body = d.request("DELETE", path(k))
    check_eq((st, body), (204, b""), "DELETE")
    expect_error(d.request("GET", path(k)), 404, "not_found", "GET after DELETE")
    expect_error(d.request("DELETE", path(k)), 404, "not_found", "second DELETE")


def t_stats(d):
    doc = stats(d)
    for layer in ("result", "image_latent", "text_embedding", "condition", "session"):
        check(layer in doc["layers"], "layer %s missing from stats" % layer)
    r = doc["layers"]["result"]
    for field in ("lookups", "hits", "misses", "puts", "cost_ms_saved", "hit_ratio"):
        check(field in r, "layer counter %s missing" % field)
    check(r["puts"] >= 5 and r["hits"] >= 1, "result counters too low: %r" % r)
    check("mem" in doc["tiers"], "mem tier missing")
    check(doc["tiers"]["mem"]["bytes"] > 3 * 1024 * 1024, "mem bytes %r" % doc["tiers"]["mem"])
    check(doc["tiers"]["mem"]["entries"] >= 5, "mem entries")


def t_keep_alive(d):
    c = d.connect()
    try:
        k = key("ka")
        for i in range(20):
            st, _, _ = d.request("PUT", path(k), b"v%d" % i, conn=c)
            check_eq(st, 201, "PUT on a kept-alive connection")
            expect_error(d.request("GET", "/v1/entries/result/XYZ", conn=c), 400, "bad_key",
                         "error on a kept-alive connection")
            st, _, body = d.request("GET", path(k), conn=c)
            check_eq((st, body), (200, b"v%d" % i), "GET on a kept-alive connection")
    finally:
        c.close()


def t_concurrent(d):
    errors = []

    def worker(n):
        try:
            c = d.connect()
            for i in range(30):
                k = key("conc-%d-%d" % (n, i % 5))
                data = os.urandom(1000 + i)
                st, _, _ = d.request("PUT", path(k), data, conn=c)
                if st != 201:
                    errors.append("PUT %d" % st)
                st, _, body = d.request("GET", path(k), conn=c)
                # another thread never writes this key, so the bytes must be ours
                if st != 200 or body != data:
                    errors.append("GET %d" % st)
            c.close()
        except Exception as e:
            errors.append(repr(e))
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check_eq(errors, [], "concurrent clients")


def post_keys(d, body):
    if isinstance(body, str):
        body = body.encode()
    st, hdrs, data = d.request("POST", "/v1/keys", body)
    return st, hdrs, data


def t_keys(d):
    req = {"model": "wan2.2-t2v-5b", "prompt": "  A   cat ", "seed": 42, "steps": 30,
           "width": 832, "height": 480}
    st, hdrs, body = post_keys(d, json.dumps(req))
    check_eq(st, 200, "POST /v1/keys")
    check_eq(hdrs.get("content-type"), "application/json", "keys content type")
    doc = json.loads(body)
    check_eq(sorted(doc["keys"]), ["condition", "result", "text_embedding"], "keyed layers")
    for layer, k in doc["keys"].items():
        check(re.fullmatch(layer + r"/[0-9a-f]{64}", k), "key %r" % k)
    check_eq(doc["prompt"], "A cat", "normalized prompt")
    check_eq(sorted(doc["uncacheable"]), ["image_latent", "session"], "uncacheable layers")
    # The same request from the CLI (which computes keys in-process) gives the same keys.
    r = subprocess.run([os.path.join(os.path.dirname(GENCACHED), "gencache"), "key", "--json",
                        "-"], input=json.dumps(req).encode(), capture_output=True, timeout=20)
    if r.returncode == 0:
        check_eq(json.loads(r.stdout)["keys"], doc["keys"], "daemon keys vs gencache key")
    # A tenant in the body is not the caller's: ignored.
    st, _, body2 = post_keys(d, json.dumps(dict(req, tenant="someone-else")))
    check_eq(json.loads(body2)["keys"], doc["keys"], "keys with a body tenant")
    # Without a seed the result is a fresh random generation: no result key.
    st, _, body = post_keys(d, json.dumps({"model": "m", "prompt": "a cat"}))
    doc = json.loads(body)
    check("result" not in doc["keys"] and "result" in doc["uncacheable"], "seedless result")
    check("text_embedding" in doc["keys"], "seedless text embedding")
    st, _, body = post_keys(d, json.dumps({"model": "m", "prompt": "x", "seed": 1,
                                           "image": {"digest": "sha256:" + "ab" * 32}}))
    check_eq(st, 200, "image digest")
    check("image_latent" in json.loads(body)["keys"], "image_latent with an image digest")


def t_keys_bad(d):
    for body, status in (("not json", 400), ("[1, 2]", 400), ("", 400), ('{"steps": -1}', 400),
                         ('{"seed": "x"}', 400), ('{"image": {"path": "/etc/passwd"}}', 400),
                         ('{"a": 1, "a": 2}', 400), (r'{"prompt": "\ud800"}', 400),
                         (b'{"prompt": "\xff"}', 400),
                         ('{"image": {"digest": "sha256:XYZ"}}', 400),
                         ("{" * 100 + "}" * 100, None)):
        st, hdrs, data = post_keys(d, body)
        if status is None:
            check(400 <= st < 500, "deep nesting: %d" % st)
            expect_error((st, hdrs, data), st, None, "keys deep nesting")
        else:
            expect_error((st, hdrs, data), status, None, "keys %r" % body[:40])
    st, body = early(d, "POST", "/v1/keys", {"Content-Length": str((1 << 20) + 1)})
    check_eq(st, 413, "keys body over 1 MiB")
    check_eq(json.loads(body)["error"]["code"], "body_too_large", "keys 413 code")


# ---- malformed requests --------------------------------------------------------------------

HEX = hashlib.sha256(b"k").hexdigest()


def t_bad_keys(d):
    for p in ("/v1/entries/result/" + HEX.upper(),
              "/v1/entries/result/" + HEX[:63],
              "/v1/entries/result/" + HEX + "0",
              "/v1/entries/result/" + HEX[:63] + "g",
              "/v1/entries/result/" + "z" * 64,
              "/v1/entries/result",
              "/v1/entries/result/",
              "/v1/entries/",
              "/v1/entries/result/" + HEX + "/x",
              "/v1/entries//" + HEX,
              "/v1/entries/Result/" + HEX,
              "/v1/entries/res%20ult/" + HEX,
              "/v1/entries/result/%ff%fe" + HEX[4:],
              "/v1/entries/" + "a" * 300 + "/" + HEX):
        for method in ("GET", "PUT", "DELETE", "HEAD"):
            st, hdrs, body = d.request(method, p, b"x" if method == "PUT" else None)
            check_eq(st, 400, "%s %s" % (method, p))
            if method != "HEAD":
                expect_error((st, hdrs, body), 400, "bad_key", "%s %s" % (method, p))
    for method in ("GET", "PUT", "DELETE"):
        expect_error(d.request(method, "/v1/entries/nosuch/" + HEX,
                               b"x" if method == "PUT" else None),
                     404, "unknown_layer", method + " unknown layer")


def t_unknown_routes(d):
    for p in ("/", "/v1", "/v1/", "/v1/stats/x", "/v2/entries/result/" + HEX, "/healthz/x",
              "/v1/entriesresult/" + HEX, "/metrics/nope"):
        expect_error(d.request("GET", p), 404, "unknown_route", "GET " + p)


def t_wrong_methods(d):
    cases = [("POST", path(key("m")), "GET, HEAD, PUT, DELETE"),
             ("PATCH", path(key("m")), "GET, HEAD, PUT, DELETE"),
             ("OPTIONS", path(key("m")), "GET, HEAD, PUT, DELETE"),
             ("DELETE", "/healthz", "GET, HEAD"),
             ("PUT", "/v1/stats", "GET, HEAD"),
             ("POST", "/v1/stats", "GET, HEAD"),
             ("GET", "/v1/keys", "POST"),
             ("DELETE", "/v1/keys", "POST")]
    for method, p, allow in cases:
        resp = d.request(method, p, b"{}" if method in ("POST", "PUT", "PATCH") else None)
        expect_error(resp, 405, "method_not_allowed", method + " " + p)
        check_eq(resp[1].get("allow"), allow, "Allow for %s %s" % (method, p))


def t_bad_headers(d):
    k = key("bad-headers")
    cases = [({"X-Gencache-Cost-Ms": "abc"}, b"x", "bad_header"),
             ({"X-Gencache-Cost-Ms": "-1"}, b"x", "bad_header"),
             ({"X-Gencache-Cost-Ms": "1.5"}, b"x", "bad_header"),
             ({"X-Gencache-Cost-Ms": "99999999999999999999999"}, b"x", "bad_header"),
             ({"X-Gencache-Cost-Ms": ""}, b"x", "bad_header"),
             ({"X-Gencache-TTL": "1h"}, b"x", "bad_header"),
             ({"X-Gencache-TTL": "18446744073709551615"}, b"x", "bad_header"),
             ({"X-Gencache-Dtype": "f33", "X-Gencache-Shape": "1"}, b"xxxx", "bad_header"),
             ({"X-Gencache-Dtype": "f32"}, b"xxxx", "bad_header"),
             ({"X-Gencache-Shape": "1"}, b"xxxx", "bad_header"),
             ({"X-Gencache-Dtype": "f32", "X-Gencache-Shape": "a,b"}, b"xxxx", "bad_header"),
             ({"X-Gencache-Dtype": "f32", "X-Gencache-Shape": "1,,2"}, b"xxxx", "bad_header"),
             ({"X-Gencache-Dtype": "f32", "X-Gencache-Shape": "-1"}, b"xxxx", "bad_header"),
             ({"X-Gencache-Dtype": "f32", "X-Gencache-Shape": "1,1,1,1,1,1,1,1,1"}, b"xxxx",
              "bad_header"),
             ({"X-Gencache-Dtype": "f32", "X-Gencache-Shape": "2,3"}, b"x" * 20,
              "shape_mismatch"),
             ({"X-Gencache-Dtype": "f32", "X-Gencache-Shape": "4294967296,4294967296"},
              b"x" * 16, "shape_mismatch"),
             ({"X-Gencache-Dtype": "bf16", "X-Gencache-Shape": ""}, b"x" * 4, "shape_mismatch"),
             ({"X-Gencache-Pinned": "yes"}, b"x", "bad_header"),
             ({"X-Gencache-Codec": "f16"}, b"x", "bad_header"),  # codecs need a float tensor
             ({"X-Gencache-Codec": "int8", "X-Gencache-Dtype": "i32",
               "X-Gencache-Shape": "1"}, b"xxxx", "bad_header"),
             ({"X-Gencache-Codec": "int8", "X-Gencache-Codec-Axis": "0",
               "X-Gencache-Dtype": "f32", "X-Gencache-Shape": "1"}, b"xxxx", "bad_header"),
             ({"X-Gencache-Codec": "int8-channel", "X-Gencache-Codec-Axis": "1",
               "X-Gencache-Dtype": "f32", "X-Gencache-Shape": "1"}, b"xxxx", "bad_header"),
             ({"X-Gencache-Codec": "int8-group", "X-Gencache-Codec-Group-Size": "0",
               "X-Gencache-Dtype": "f32", "X-Gencache-Shape": "1"}, b"xxxx", "bad_header"),
             ({"X-Gencache-Codec": "zstd"}, b"x", "bad_header"),
             ({"X-Gencache-Tags": "a" * 2000}, b"x", "bad_header")]
    for headers, body, code in cases:
        msg = expect_error(d.request("PUT", path(k), body, headers), 400, code, repr(headers))
        if code == "shape_mismatch":
            check("bytes" in msg, "shape mismatch message %r" % msg)
        expect_error(d.request("GET", path(k)), 404, "not_found",
                     "entry stored despite " + repr(headers))


def t_codecs(d):
    """X-Gencache-Codec on PUT and ?as= on GET: the stored form is the daemon's business; a
    client always gets a plain tensor whose headers describe the body."""
    import struct
    vals = [0.5, -1.25, 3.0, 100.0, -0.0, 7.75]
    f32 = struct.pack("<6f", *vals)
    tensor = {"X-Gencache-Dtype": "f32", "X-Gencache-Shape": "2,3"}

    k = key("codec-f16")
    st, _, _ = d.request("PUT", path(k), f32, dict(tensor, **{"X-Gencache-Codec": "f16"}))
    check_eq(st, 201, "PUT with codec f16")
    st, h, body = d.request("GET", path(k))
    check_eq((st, h.get("x-gencache-dtype"), h.get("x-gencache-shape")), (200, "f16", "2,3"),
             "stored as f16")
    check_eq(list(struct.unpack("<6e", body)), vals, "f16 values")
    st, h, body = d.request("GET", path(k) + "?as=f32")
    check_eq((st, h.get("x-gencache-dtype"), len(body)), (200, "f32", 24), "?as=f32")
    check_eq(body, f32, "widened back exactly")
    etag = h.get("etag")
    st, _, _ = d.request("GET", path(k) + "?as=f32", headers={"If-None-Match": etag})
    check_eq(st, 304, "decoded representation has its own validator")

    for codec, extra in (("int8", {}), ("int8-channel", {"X-Gencache-Codec-Axis": "1"}),
                         ("int8-group", {"X-Gencache-Codec-Group-Size": "4"})):
        k = key("codec-" + codec)
        hdrs = dict(tensor, **extra)
        hdrs["X-Gencache-Codec"] = codec
        st, _, _ = d.request("PUT", path(k), f32, hdrs)
        check_eq(st, 201, "PUT with codec " + codec)
        st, h, body = d.request("GET", path(k))
        check_eq((st, h.get("x-gencache-dtype"), h.get("x-gencache-shape"),
                  h.get("x-gencache-codec")), (200, "f32", "2,3", codec), codec + " GET")
        # The codec mark is how the entry is stored, not what the client receives.
        check_eq(h.get("content-type"), "application/octet-stream", codec + " content type")
        got = struct.unpack("<6f", body)
        # Symmetric int8: every element within half a step of its block's scale.
        for g, v in zip(got, vals):
            check(abs(g - v) <= 100.0 / 127 / 2 + 1e-6, "%s: %r vs %r" % (codec, g, v))
        st, h, body = d.request("GET", path(k) + "?as=f16")
        check_eq((st, h.get("x-gencache-dtype"), len(body)), (200, "f16", 12), codec + " as f16")
        st, h, body = d.request("HEAD", path(k))
        check_eq((st, h.get("x-gencache-dtype"), h.get("content-length")), (200, "f32", "24"),
                 codec + " HEAD")

    expect_error(d.request("GET", path(key("codec-f16")) + "?as=i8"), 400, "bad_conversion")
    expect_error(d.request("GET", path(key("keep")) + "?as=f32"), 400, "bad_conversion")
    nan = struct.pack("<2f", 1.0, float("nan"))
    expect_error(d.request("PUT", path(key("codec-nan")), nan,
                           {"X-Gencache-Dtype": "f32", "X-Gencache-Shape": "2",
                            "X-Gencache-Codec": "int8"}), 400, "bad_tensor")
    expect_error(d.request("GET", path(key("codec-nan"))), 404, "not_found")


def raw(d, data, read=True, timeout=3):
    """Sends raw bytes; returns what the daemon answers before it closes (or times out)."""
    s = socket.create_connection(("127.0.0.1", d.port), timeout=timeout)
    try:
        try:
            s.sendall(data)
            if not read:
                return b""
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the daemon refused and closed before it had read everything
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def early(d, method, p, headers):
    """Sends only the headers of a request with a body, as a client waiting for
    100 Continue does, and returns (status, body) of the answer the daemon gives at once."""
    lines = ["%s %s HTTP/1.1" % (method, p), "Host: x", "Expect: 100-continue"]
    lines += ["%s: %s" % kv for kv in headers.items()]
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    try:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        out = b""
        while b"\r\n\r\n" not in out:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        head, _, body = out.partition(b"\r\n\r\n")
        m = re.search(rb"(?i)content-length: *(\d+)", head)
        n = int(m.group(1)) if m else 0
        while len(body) < n:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        return status_of(head), body
    finally:
        s.close()


def status_of(answer):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    return int(m.group(1)) if m else None


def t_raw_garbage(d, keep_key, keep_data):
    answers = {
        "garbage line": raw(d, b"HELLO WORLD\r\n\r\n"),
        "binary junk": raw(d, bytes(range(256)) * 4 + b"\r\n\r\n"),
        "no version": raw(d, b"GET /healthz\r\n\r\n"),
        "bad header line": raw(d, b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n"),
        "bad content-length": raw(d, b"PUT " + path(key("raw")).encode() +
                                  b" HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"),
        "huge url": raw(d, b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
        "huge header": raw(d, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 100000 +
                           b"\r\n\r\n"),
    }
    for what, answer in answers.items():
        st = status_of(answer)
        check(answer == b"" or (st is not None and 400 <= st < 500),
              "%s: answered %r" % (what, answer[:200]))
    # Half requests: the client goes away mid-headers or mid-body.
    raw(d, b"GET /v1/ent", read=False)
    raw(d, b"PUT " + path(keep_key).encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 100"
        b"\r\n\r\nonly part of the body", read=False)
    raw(d, b"PUT " + path(key("chunk-half")).encode() + b" HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n10\r\nabc", read=False)
    # A PUT with neither Content-Length nor chunked body: 411.
    ans = raw(d, b"PUT " + path(key("nolen")).encode() + b" HTTP/1.1\r\nHost: x\r\n"
              b"Connection: close\r\n\r\n")
    check_eq(status_of(ans), 411, "PUT without a length")
    check(b'"length_required"' in ans, "411 body is JSON: %r" % ans[-200:])
    time.sleep(0.1)
    check(d.alive(), "daemon died")
    st, _, body = d.request("GET", path(keep_key))
    check(st == 200 and body == keep_data, "earlier entry damaged by garbage")
    expect_error(d.request("GET", path(key("chunk-half"))), 404, "not_found",
                 "half chunked upload stored")


def t_limits(extra_runner):
    d = Daemon("--max-body", "64K", "--max-memory", "256K")
    try:
        k = key("limits")
        st, body = early(d, "PUT", path(k), {"Content-Length": str(64 * 1024 + 1)})
        check_eq(st, 413, "PUT over --max-body")
        check_eq(json.loads(body)["error"]["code"], "body_too_large", "413 code")
        st, _, _ = d.request("PUT", path(k), b"x" * (64 * 1024))
        check_eq(st, 201, "PUT of exactly --max-body")
        # The same refusal when only the chunked stream reveals the size.
        c = d.connect()
        try:
            c.putrequest("PUT", path(key("limits-chunked")))
            c.putheader("Transfer-Encoding", "chunked")
            c.endheaders()
            piece = b"y" * 10000
            for _ in range(10):
                c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            c.send(b"0\r\n\r\n")
            r = c.getresponse()
            body = r.read()
            check_eq(r.status, 413, "chunked PUT over --max-body")
            check_eq(json.loads(body)["error"]["code"], "body_too_large", "chunked 413 code")
        finally:
            c.close()
        expect_error(d.request("GET", path(key("limits-chunked"))), 404, "not_found",
                     "oversize chunked body stored")
        # Bad headers are refused before the body is read, too.
        st, body = early(d, "PUT", path(k), {"Content-Length": "100",
                                             "X-Gencache-Cost-Ms": "soon"})
        check_eq(st, 400, "early 400 on a bad header")
        # Fits the body limit, not the memory or disk tier: the cache is full.
        d2 = Daemon("--max-body", "1M", "--max-memory", "64K", "--max-disk", "64K")
        try:
            expect_error(d2.request("PUT", path(key("toobig")), b"z" * (512 * 1024)), 507, None,
                         "PUT larger than every tier")
        finally:
            check_eq(d2.stop(), 0, "exit status")
        st, _, body = d.request("GET", path(k))
        check(st == 200 and len(body) == 64 * 1024, "entry lost")
    finally:
        rc = d.stop()
    check_eq(rc, 0, "exit status")


# ---- process behaviour ---------------------------------------------------------------------

def run_daemon(*args):
    return subprocess.run([GENCACHED, *args], stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=20)


def t_flags():
    r = run_daemon("--help")
    check_eq(r.returncode, 0, "--help exit")
    check(b"usage: gencached" in r.stdout and b"--listen" in r.stdout, "--help text")
    r = run_daemon("--version")
    check_eq(r.returncode, 0, "--version exit")
    check(r.stdout.startswith(b"gencached "), "--version text")
    for args, what in ((["--bogus"], b"unknown option"),
                       (["--listen"], b"needs a value"),
                       (["extra"], b"unexpected argument"),
                       (["--max-memory", "12Q"], b"bad size"),
                       (["--max-memory", "-1"], b"bad size"),
                       (["--max-body", "0"], b"bad size"),
                       (["--threads", "0"], b"--threads"),
                       (["--threads", "x"], b"--threads"),
                       (["--log-level", "loud"], b"--log-level"),
                       (["--config", "/nonexistent/gencache.yaml"], b"cannot open"),
                       (["--listen", "nocolon"], b"HOST:PORT"),
                       (["--listen", "127.0.0.1:99999"], b"bad port"),
                       (["--listen", "0.0.0.0:0"], b"loopback")):
        r = run_daemon(*args)
        check_eq(r.returncode, 2, "exit status for %r" % args)
        check(what in r.stderr, "message for %r: %r" % (args, r.stderr))


def t_sigterm_and_sigint():
    for sig in (signal.SIGTERM, signal.SIGINT):
        d = Daemon()
        c = d.connect()
        try:
            d.request("PUT", path(key("s")), b"x" * 100000, conn=c)  # an idle kept-alive conn
            t0 = time.monotonic()
            rc = d.stop(sig)
            check_eq(rc, 0, "exit status after %s" % sig.name)
            check(time.monotonic() - t0 < 3, "shutdown took too long")
        finally:
            c.close()
            d.stop()


def t_port_in_use():
    d = Daemon()
    try:
        r = run_daemon("--listen", "127.0.0.1:%d" % d.port, "--data-dir",
                       os.path.join(d.dir, "other"))
        check_eq(r.returncode, 1, "second daemon on a busy port")
        check(b"cannot listen" in r.stderr, "busy port message %r" % r.stderr)
    finally:
        check_eq(d.stop(), 0, "exit status")


def main():
    runner = Runner()
    d = Daemon()
    try:
        keep_key, keep_data = key("keep"), os.urandom(12345)
        st, _, _ = d.request("PUT", path(keep_key), keep_data)
        check_eq(st, 201, "first PUT")
        for name, fn in sorted(globals().items()):
            if name.startswith("t_") and fn.__code__.co_argcount == 1 and \
                    fn.__code__.co_varnames[0] == "d":
                runner.run(name[2:], fn, d)
        runner.run("raw_garbage", t_raw_garbage, d, keep_key, keep_data)
        # The abuse above must have left the daemon up and the first entry intact.
        def intact(dd):
            check(dd.alive(), "daemon died")
            st, _, body = dd.request("GET", path(keep_key))
            check(st == 200 and body == keep_data, "first entry damaged")
        runner.run("still_intact", intact, d)
        def stop(dd):
            check_eq(dd.stop(), 0, "exit status after SIGTERM")
        runner.run("sigterm_exit_0", stop, d)
    finally:
        d.stop()
    runner.run("limits", t_limits, runner)
    runner.run("flags", t_flags)
    runner.run("signals", t_sigterm_and_sigint)
    runner.run("port_in_use", t_port_in_use)
    runner.finish()


if __name__ == "__main__":
    main()

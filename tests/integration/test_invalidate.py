#!/usr/bin/python3
"""POST /v1/invalidate and POST /invalidate?...: removal by key, layer, tag, tenant and age (JSON
body or query parameters, older_than in seconds or as a duration), {"invalidated": N} counts,
and every malformed filter (empty, not JSON, not an object, wrong types, unknown fields, bad keys,
unknown layers, both body and query, oversize body, wrong method) refused with a clear 4xx while
the daemon stays up."""
import hashlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import Daemon, Runner, check, check_eq  # noqa: E402


def key(name, layer="result"):
    return "%s/%s" % (layer, hashlib.sha256(name.encode()).hexdigest())


def put(d, k, tags=None):
    h = {"X-Gencache-Tags": tags} if tags else {}
    st, _, _ = d.request("PUT", "/v1/entries/" + k, body=b"v-" + k.encode(), headers=h)
    check_eq(st, 201, "PUT " + k)


def exists(d, k):
    return d.request("HEAD", "/v1/entries/" + k)[0] == 200


def inval(d, body=None, query=""):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    return d.request("POST", "/v1/invalidate" + query, body=data,
                     headers={"Content-Type": "application/json"})


def ok_count(resp, n, what):
    st, hdrs, body = resp
    check_eq(st, 200, what + " status (%r)" % body)
    check_eq(hdrs.get("content-type"), "application/json", what + " content type")
    check_eq(json.loads(body), {"invalidated": n}, what)


def error(resp, status, code, part, what):
    st, hdrs, body = resp
    check_eq(st, status, what + " status (%r)" % body)
    doc = json.loads(body)
    check_eq(doc["error"]["code"], code, what + " code")
    check(part in doc["error"]["message"], "%s: message %r lacks %r"
          % (what, doc["error"]["message"], part))


def t_by_key(d):
    k = key("k1")
    put(d, k)
    ok_count(inval(d, {"key": k}), 1, "by key")
    check(not exists(d, k), "gone")
    ok_count(inval(d, {"key": k}), 0, "again")
    put(d, k)
    st, _, body = d.request("POST", "/invalidate?key=" + k)
    check_eq((st, json.loads(body)), (200, {"invalidated": 1}), "POST /invalidate?key= no body")
    put(d, k)
    ok_count(inval(d, b"", "?key=" + k), 1, "/v1/invalidate?key= with an empty body")


def t_by_layer_and_tag(d):
    ks = [key("l%d" % i) for i in range(3)]
    for i, k in enumerate(ks):
        put(d, k, tags="red,batch%d" % (i % 2))
    te = key("te", "text_embedding")
    put(d, te, tags="red")
    ok_count(inval(d, {"tag": "batch1"}), 1, "by tag")
    ok_count(inval(d, {"tag": "red", "layer": "result"}), 2, "tag and layer (AND)")
    check(exists(d, te), "other layer kept")
    ok_count(inval(d, {"layer": "text_embedding", "model": "nobody"}), 0, "model matches none")
    ok_count(inval(d, {"layer": "text_embedding", "tenant": None}), 1, "null field ignored")
    # The tokenless mode has no caller tenant: a tenant filter is taken as given.
    put(d, key("t"))
    ok_count(inval(d, {"tenant": "someone"}), 0, "tenant filter, no such owner")


def t_older_than(d):
    old = key("old")
    put(d, old, tags="age")
    time.sleep(1.2)
    new = key("new")
    put(d, new, tags="age")
    ok_count(inval(d, {"older_than": "7d", "layer": "result"}), 0, "nothing a week old")
    ok_count(inval(d, {"older_than": 1, "tag": "age"}), 1, "older than 1 s (number)")
    check(exists(d, new) and not exists(d, old), "only the old one went")
    put(d, old, tags="age")
    time.sleep(1.1)
    st, _, body = d.request("POST", "/invalidate?older_than=1s&tag=age")
    check_eq((st, json.loads(body)["invalidated"]), (200, 2), "older_than=1s in the query")


def t_errors(d):
    error(inval(d, {}), 400, "empty_filter", "at least one", "empty object")
    error(inval(d, {"older_than": 0}), 400, "empty_filter", "at least one", "older_than 0 only")
    error(inval(d, {"key": None}), 400, "empty_filter", "at least one", "only nulls")
    st, _, body = d.request("POST", "/invalidate")
    error((st, {}, body), 400, "empty_filter", "at least one", "no body, no query")
    error(inval(d, b"{\"key\": "), 400, "bad_request", "malformed JSON", "truncated JSON")
    error(inval(d, b"not json"), 400, "bad_request", "malformed JSON", "garbage")
    error(inval(d, b"\xff\xfe"), 400, "bad_request", "malformed JSON", "binary")
    error(inval(d, b'{"layer": "result", "layer": "x"}'), 400, "bad_request", "malformed JSON",
          "duplicate names")
    error(inval(d, [{"key": "x"}]), 400, "bad_request", "JSON object", "array")
    error(inval(d, "result"), 400, "bad_request", "JSON object", "string")
    error(inval(d, {"key": 5}), 400, "bad_request", "'key': expected a string", "number key")
    error(inval(d, {"layer": ["result"]}), 400, "bad_request", "'layer'", "list layer")
    error(inval(d, {"tag": {"a": 1}}), 400, "bad_request", "'tag'", "object tag")
    error(inval(d, {"model": True}), 400, "bad_request", "'model'", "bool model")
    error(inval(d, {"tag": ""}), 400, "bad_request", "empty", "empty tag")
    for bad in (-1, 1.5, "soon", "7x", "", True, [1]):
        error(inval(d, {"older_than": bad}), 400, "bad_request", "older_than",
              "older_than %r" % (bad,))
    error(inval(d, {"colour": "red"}), 400, "bad_request", "unknown field 'colour'", "unknown")
    error(inval(d, {"key": "result/XYZ"}), 400, "bad_key", "malformed key", "bad key")
    error(inval(d, {"key": "nolayer/" + "a" * 64}), 404, "unknown_layer", "unknown layer",
          "unknown layer in key")
    error(inval(d, {"layer": "nolayer"}), 404, "unknown_layer", "nolayer", "unknown layer")
    st, _, body = d.request("POST", "/invalidate?older_than=abc")
    error((st, {}, body), 400, "bad_request", "older_than", "bad query older_than")
    error(inval(d, {"layer": "result"}, "?key=" + key("x")), 400, "bad_request", "not both",
          "query and body")
    # An announced 2 MiB body is refused before it is sent.
    c = d.connect()
    try:
        c.putrequest("POST", "/v1/invalidate")
        c.putheader("Content-Length", str(2 << 20))
        c.endheaders()
        resp = c.getresponse()
        error((resp.status, {}, resp.read()), 413, "body_too_large", "limit", "2 MiB body")
    finally:
        c.close()
    for m in ("GET", "PUT", "DELETE"):
        st, hdrs, _ = d.request(m, "/v1/invalidate")
        check_eq((st, hdrs.get("allow")), (405, "POST"), m + " /v1/invalidate")
    check(d.alive(), "daemon alive")
    st, _, body = d.request("GET", "/healthz")
    check_eq((st, body), (200, b"ok"), "healthz after the errors")


def t_stats_count(d):
    st, _, body = d.request("GET", "/v1/stats")
    check(json.loads(body)["invalidated"] >= 8, "stats count invalidations: %r" % body[:200])


def main():
    r = Runner()
    d = Daemon()
    try:
        r.run("by_key", t_by_key, d)
        r.run("by_layer_and_tag", t_by_layer_and_tag, d)
        r.run("older_than", t_older_than, d)
        r.run("errors", t_errors, d)
        r.run("stats_count", t_stats_count, d)
    finally:
        rc = d.stop()
    r.run("clean_exit", lambda: check_eq(rc, 0, "exit status"))
    r.finish()


if __name__ == "__main__":
    main()

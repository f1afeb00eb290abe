#!/usr/bin/env python3
"""Approximate step reuse over HTTP, end to end: a real gencached with a trajectory layer,
POST /v1/trajectories (multipart: the document with a base64 or a raw embedding, the latent)
and POST /v1/trajectories/lookup (JSON with base64, or the raw vector with headers), then the
Python Client and gencache.Trajectory over a Client: known neighbours at each threshold row,
f16 embeddings, dimension mismatches refused with both dimensions named, malformed requests
refused, tenant scope, the index surviving a restart and rebuilt when traj.idx is lost, a
deleted latent leaving it, the counters on /metrics and /v1/stats, and `gencache checkpoint`
and `gencache resume`."""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import GENCACHE, Daemon, Runner, check, check_eq  # noqa: E402

import numpy as np  # noqa: E402

import gencache  # noqa: E402

DIM = 64
TMP = tempfile.mkdtemp(prefix="gencache-traj-test-")
TOKENS = {"acme": "acme-token-0123456789ab", "globex": "globex-token-0123456789"}


def config(tenants=False):
    lines = ["layers:", "  trajectory:", "    fields: [model, prompt, \"step!\"]",
             "    scope: tenant"]
    if tenants:
        lines.append("tenants:")
        for name, tok in TOKENS.items():
            lines += ["  - name: %s" % name, "    token: %s" % tok]
    p = os.path.join(TMP, "traj%d.yaml" % len(os.listdir(TMP)))
    with open(p, "w") as f:
        f.write("\n".join(lines) + "\n")
    return p


def auth(tenant):
    return {"Authorization": "Bearer " + TOKENS[tenant]} if tenant else {}


def vec(a, b, cos, dtype=np.float32, dim=DIM):
    """A unit vector along axis a, turned towards axis b so that its cosine with axis a is cos."""
    v = np.zeros(dim, dtype=np.float64)
    v[a] = cos
    v[b] = np.sqrt(1 - cos * cos)
    return v.astype(dtype)


def form(parts):
    boundary = "traj-test-boundary-7d1f"
    out = b""
    for name, ctype, data in parts:
        out += ("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\nContent-Type: %s\r\n\r\n"
                % (boundary, name, ctype)).encode() + data + b"\r\n"
    return out + ("--%s--\r\n" % boundary).encode(), "multipart/form-data; boundary=" + boundary


def store_raw(d, doc, latent, raw=None, tenant=None, headers=None):
    parts = [("trajectory", "application/json", json.dumps(doc).encode())]
    if raw is not None:
        parts.append(("embedding", "application/octet-stream", raw))
    parts.append(("latent", "application/octet-stream", latent))
    body, ctype = form(parts)
    return d.request("POST", "/v1/trajectories", body,
                     {"Content-Type": ctype, **auth(tenant), **(headers or {})})


def store(d, prompt, step, emb, model="m1", tenant=None):
    doc = {"layer": "trajectory", "request": {"model": model, "prompt": prompt, "step": step},
           "embedding": base64.b64encode(emb.tobytes()).decode(),
           "dtype": "f16" if emb.dtype == np.float16 else "f32"}
    status, _, body = store_raw(d, doc, ("%s@%d" % (prompt, step)).encode(), tenant=tenant)
    check_eq(status, 201, "store %s@%d: %s" % (prompt, step, body[:300]))
    out = json.loads(body)
    check_eq((out["step"], out["dim"]), (step, emb.size), "store answer")
    return out["key"]


def lookup(d, emb, model="m1", tenant=None, raw=False):
    if raw:
        return d.request("POST", "/v1/trajectories/lookup", emb.tobytes(), {
            "Content-Type": "application/octet-stream", "X-Gencache-Model": model,
            "X-Gencache-Layer": "trajectory",
            "X-Gencache-Dtype": "f16" if emb.dtype == np.float16 else "f32", **auth(tenant)})
    doc = {"layer": "trajectory", "model": model,
           "embedding": base64.b64encode(emb.tobytes()).decode().rstrip("="),
           "dtype": "f16" if emb.dtype == np.float16 else "f32"}
    return d.request("POST", "/v1/trajectories/lookup", json.dumps(doc).encode(),
                     {"Content-Type": "application/json", **auth(tenant)})


def error_code(body):
    return json.loads(body)["error"]["code"]


def store_fox_and_bird(d, tenant=None):
    for s in (5, 10, 15, 20, 25):
        store(d, "a red fox", s, vec(0, 1, 1.0), tenant=tenant)
    store(d, "a blue bird", 10, vec(2, 3, 1.0), tenant=tenant)


def t_known_neighbours(d):
    store_fox_and_bird(d)
    # Each threshold row of the default table: just above it, its step; just below, the last.
    rows = [(0.96, 25), (0.94, 20), (0.91, 20), (0.89, 15), (0.86, 15), (0.84, 10),
            (0.81, 10), (0.79, 5), (0.71, 5), (0.69, 0), (0.0, 0)]
    for i, (cos, step) in enumerate(rows):
        status, h, body = lookup(d, vec(0, 5, cos), raw=i % 2 == 1)
        if step == 0:
            check_eq((status, error_code(body)), (404, "not_found"), "cos %.2f" % cos)
            continue
        check_eq((status, body), (200, b"a red fox@%d" % step), "cos %.2f" % cos)
        check_eq(int(h["x-gencache-step"]), step, "step header")
        check(abs(float(h["x-gencache-similarity"]) - cos) < 1e-4, h["x-gencache-similarity"])
        check(h["x-gencache-match"].startswith("trajectory; step=%d; similarity=" % step),
              h["x-gencache-match"])
        check(h["x-gencache-key"].startswith("trajectory/"), h["x-gencache-key"])
    # The bird is the nearer neighbour of its own direction, at its only step.
    status, h, body = lookup(d, vec(2, 5, 0.99))
    check_eq((status, body, h["x-gencache-step"]), (200, b"a blue bird@10", "10"), "bird")
    # f16 embeddings, both ways.
    status, _, body = lookup(d, vec(0, 5, 0.96, np.float16), raw=True)
    check_eq((status, body), (200, b"a red fox@25"), "f16 raw lookup")
    status, _, body = lookup(d, vec(2, 6, 0.99, np.float16))
    check_eq((status, body), (200, b"a blue bird@10"), "f16 base64 lookup")
    # Another model's index is its own.
    check_eq(lookup(d, vec(0, 5, 1.0), model="m2")[0], 404, "other model")


def t_dimension_mismatch(d):
    status, _, body = lookup(d, vec(0, 1, 1.0, dim=32))
    check_eq((status, error_code(body)), (400, "dimension_mismatch"), "lookup 32-d")
    msg = json.loads(body)["error"]["message"]
    check("64-dimensional" in msg and "has 32" in msg and "m1" in msg, msg)
    status, _, body = lookup(d, vec(0, 1, 1.0, dim=32), raw=True)
    check_eq((status, error_code(body)), (400, "dimension_mismatch"), "raw lookup 32-d")
    doc = {"request": {"model": "m1", "prompt": "short", "step": 5},
           "embedding": base64.b64encode(vec(0, 1, 1.0, dim=32).tobytes()).decode()}
    status, _, body = store_raw(d, doc, b"x")
    check_eq((status, error_code(body)), (400, "dimension_mismatch"), "store 32-d")
    # Nothing was stored: the 64-d neighbours are what they were.
    status, _, body = lookup(d, vec(0, 5, 0.96))
    check_eq((status, body), (200, b"a red fox@25"), "after the refusals")


def t_malformed(d):
    e = base64.b64encode(vec(0, 1, 1.0).tobytes()).decode()
    good = {"request": {"model": "m1", "prompt": "p", "step": 5}, "embedding": e}
    cases = [
        ("no step", dict(good, request={"model": "m1", "prompt": "p"}), None, "bad_request"),
        ("step 0", dict(good, request={"model": "m1", "prompt": "p", "step": 0}), None,
         "bad_request"),
        ("no model", dict(good, request={"prompt": "p", "step": 5}), None, "bad_request"),
        ("step 1.5", dict(good, request={"model": "m1", "prompt": "p", "step": 1.5}), None,
         "bad_request"),
        ("step a string", dict(good, request={"model": "m1", "prompt": "p", "step": "5"}), None,
         "bad_request"),
        ("bad base64", dict(good, embedding="@@@@"), None, "bad_embedding"),
        ("odd bytes", dict(good, embedding=base64.b64encode(b"abcde").decode()), None,
         "bad_embedding"),
        ("zero vector", dict(good, embedding=base64.b64encode(bytes(4 * DIM)).decode()), None,
         "bad_embedding"),
        ("nan", dict(good, embedding=base64.b64encode(
            np.full(DIM, np.nan, np.float32).tobytes()).decode()), None, "bad_embedding"),
        ("bad dtype", dict(good, dtype="bf16"), None, "bad_embedding"),
        ("dim says otherwise", dict(good, dim=65), None, "bad_embedding"),
        ("twice", good, vec(0, 1, 1.0).tobytes(), "bad_embedding"),
        ("no embedding", {"request": good["request"]}, None, "bad_embedding"),
        ("layer not a string", dict(good, layer=5), None, "bad_request"),
    ]
    for what, doc, raw, code in cases:
        status, _, body = store_raw(d, doc, b"latent", raw=raw)
        check_eq((status, error_code(body)), (400, code), what)
    status, _, body = store_raw(d, dict(good, layer="nope"), b"latent")
    check_eq((status, error_code(body)), (404, "unknown_layer"), "unknown layer")
    status, _, body = store_raw(d, good, b"latent", headers={"X-Gencache-Dtype": "f32",
                                                             "X-Gencache-Shape": "3"})
    check_eq((status, error_code(body)), (400, "shape_mismatch"), "latent shape")
    # Forms: not one, a missing latent, an unknown part, a broken body.
    status, _, body = d.request("POST", "/v1/trajectories", json.dumps(good).encode(),
                                {"Content-Type": "application/json"})
    check_eq((status, error_code(body)), (400, "bad_request"), "not a form")
    for parts in ([("trajectory", "application/json", json.dumps(good).encode())],
                  [("trajectory", "application/json", json.dumps(good).encode()),
                   ("latent", "x/y", b"1"), ("extra", "x/y", b"2")],
                  [("trajectory", "application/json", b"{not json"), ("latent", "x/y", b"1")]):
        body, ctype = form(parts)
        status, _, resp = d.request("POST", "/v1/trajectories", body, {"Content-Type": ctype})
        check_eq((status, error_code(resp)), (400, "bad_multipart"), "form %r" % parts[-1][0])
    body, ctype = form([("trajectory", "application/json", b"{}"), ("latent", "x/y", b"1")])
    status, _, resp = d.request("POST", "/v1/trajectories", body[:-8], {"Content-Type": ctype})
    check_eq((status, error_code(resp)), (400, "bad_multipart"), "truncated form")
    # Lookups.
    for doc, code in (({"embedding": e}, "bad_request"), ({"model": 5, "embedding": e},
                                                         "bad_request"),
                      ({"model": "m1"}, "bad_embedding"),
                      ({"model": "m1", "embedding": e, "dim": 0}, "bad_embedding"),
                      ({"model": "m1", "embedding": "%%%"}, "bad_embedding")):
        status, _, body = d.request("POST", "/v1/trajectories/lookup", json.dumps(doc).encode(),
                                    {"Content-Type": "application/json"})
        check_eq((status, error_code(body)), (400, code), "lookup %r" % doc)
    status, _, body = d.request("POST", "/v1/trajectories/lookup", b"not json")
    check_eq((status, error_code(body)), (400, "bad_request"), "lookup not json")
    status, _, body = d.request("POST", "/v1/trajectories/lookup", vec(0, 1, 1.0).tobytes(),
                                {"Content-Type": "application/octet-stream"})
    check_eq((status, error_code(body)), (400, "bad_embedding"), "raw without a model")
    status, _, body = d.request("POST", "/v1/trajectories/lookup", b"abc", {
        "Content-Type": "application/octet-stream", "X-Gencache-Model": "m1"})
    check_eq((status, error_code(body)), (400, "bad_embedding"), "raw, 3 bytes")
    status, _, body = d.request("POST", "/v1/trajectories/lookup", b"{}", {
        "Content-Type": "application/json"})
    check_eq(status, 400, "empty lookup")
    status, _, body = lookup(d, vec(0, 1, 1.0))
    check_eq(status, 200, "the daemon still answers")
    check_eq(d.request("GET", "/v1/trajectories")[0], 405, "GET")


def t_python_client(d):
    c = gencache.Client(d.url)
    try:
        latent = np.arange(2 * 4 * 8, dtype=np.float16).reshape(2, 4, 8)
        key = c.trajectory_store({"model": "py", "prompt": "a lighthouse at dusk"},
                                 vec(0, 1, 1.0), latent, step=15, cost_s=2.5)
        check(key.startswith("trajectory/"), key)
        found = c.trajectory_lookup("py", vec(0, 7, 0.88))
        check(found is not None, "client lookup missed")
        check_eq((found.step, found.key), (15, key), "client match")
        check(abs(found.similarity - 0.88) < 1e-4, found.similarity)
        check_eq((found.latent.dtype, found.latent.shape), (np.float16, (2, 4, 8)), "latent")
        check(np.array_equal(found.latent, latent), "latent bytes")
        check(c.trajectory_lookup("py", vec(0, 7, 0.5)) is None, "dissimilar: None")
        try:
            c.trajectory_lookup("py", vec(0, 1, 1.0, dim=16))
            raise AssertionError("a 16-d lookup was accepted")
        except gencache.GencacheError as e:
            check("64-dimensional" in str(e) and "16" in str(e), str(e))
        # The denoising-loop helper over the client.
        t = gencache.Trajectory(c, {"model": "loop", "prompt": "a red barn"}, vec(4, 5, 1.0))
        check(t.resume() is None, "first generation: nothing to resume")
        for step in range(1, 26):
            k = t.checkpoint(step, np.full((4,), step, np.float32))
            check((k is not None) == (step in (5, 10, 15, 20, 25)), "step %d" % step)
        t2 = gencache.Trajectory(c, {"model": "loop", "prompt": "a red barn, at noon"},
                                 vec(4, 9, 0.91).astype(np.float16))
        r = t2.resume()
        check(r is not None and r.step == 20, "second generation resumes at 20: %r" % (r,))
        check(np.array_equal(r.latent, np.full((4,), 20, np.float32)), "resumed latent")
        try:
            gencache.Trajectory(c, {"model": "loop"}, vec(4, 5, 1.0), tenant="acme")
            raise AssertionError("a tenant was accepted for a Client")
        except ValueError:
            pass
        # Invalidation by model takes the latents, and their records, out of the index.
        check(c.invalidate(model="loop") >= 5, "invalidate by model")
        check(t2.resume() is None, "nothing to resume after the invalidation")
        check(c.trajectory_lookup("py", vec(0, 7, 0.88)) is not None, "another model's stays")
    finally:
        c.close()


def cli(d, *args, stdin=None):
    r = subprocess.run([GENCACHE, args[0], "--url", d.url, *args[1:]], input=stdin,
                       capture_output=True, timeout=30)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def t_cli(d):
    req = os.path.join(TMP, "cli-request.json")
    with open(req, "w") as f:
        f.write('{"model": "cli", "prompt": "a paper boat", "seed": 18446744073709551615}')
    emb, emb16, latent, out = (os.path.join(TMP, n) for n in ("e.f32", "e.f16", "l.bin", "o"))
    vec(0, 1, 1.0).tofile(emb)
    vec(0, 3, 0.9, np.float16).tofile(emb16)
    with open(latent, "wb") as f:
        f.write(b"latent@15")
    rc, so, se = cli(d, "checkpoint", "--step", "15", "--cost-ms", "900", req, emb, latent)
    check_eq(rc, 0, "checkpoint: " + se)
    key = so.strip()
    check(key.startswith("trajectory/") and len(key) == len("trajectory/") + 64, so)
    rc, so, se = cli(d, "resume", "--model", "cli", "--dtype", "f16", "-o", out, emb16)
    check_eq(rc, 0, "resume: " + se)
    k, step, sim = so.split()
    check_eq((k, step), (key, "15"), "resume output")
    check(abs(float(sim) - 0.9) < 1e-3, sim)
    with open(out, "rb") as f:
        check_eq(f.read(), b"latent@15", "-o")
    with open(emb, "rb") as f:
        rc, so, se = cli(d, "resume", "--model", "cli", "--json", "-", stdin=f.read())
    check_eq((rc, json.loads(so)["key"], json.loads(so)["step"]), (0, key, 15), "--json")
    rc, so, se = cli(d, "checkpoint", "--step", "20", "--json", req, emb, latent)
    check_eq((rc, json.loads(so)["step"], json.loads(so)["dim"]), (0, 20, DIM), "checkpoint --json")
    # A miss, a mismatched dimension, bad usage.
    vec(0, 1, 0.2).tofile(emb16.replace(".f16", ".far"))
    rc, so, se = cli(d, "resume", "--model", "cli", emb16.replace(".f16", ".far"))
    check_eq((rc, so), (1, ""), "miss")
    vec(0, 1, 1.0, dim=32).tofile(emb)
    rc, so, se = cli(d, "resume", "--model", "cli", emb)
    check(rc == 1 and "64-dimensional" in se, "mismatch: %d %s" % (rc, se))
    rc, so, se = cli(d, "checkpoint", "--step", "5", req, emb, latent)
    check(rc == 1 and "dimension" in se, "checkpoint mismatch: %d %s" % (rc, se))
    check_eq(cli(d, "resume", emb)[0], 2, "no --model")
    check_eq(cli(d, "resume", "--model", "cli", "--dtype", "bf16", emb)[0], 2, "bad dtype")
    check_eq(cli(d, "checkpoint", req, emb)[0], 2, "two files")
    check_eq(cli(d, "checkpoint", "--model", "x", req, emb, latent)[0], 2, "--model: resume only")
    rc, so, se = cli(d, "checkpoint", "--step", "zero", req, emb, latent)
    check(rc == 1 and "--step" in se, "bad step: %d %s" % (rc, se))
    with open(req, "w") as f:
        f.write(' { "step": 5, "model": "cli", "prompt": "a paper boat"}\n')
    rc, so, se = cli(d, "checkpoint", "--step", "5", req, emb, latent)
    check(rc == 1 and "names its step already" in se, "step twice: %d %s" % (rc, se))
    vec(0, 1, 1.0).tofile(emb)
    rc, so, se = cli(d, "checkpoint", req, emb, latent)
    check_eq(rc, 0, "the request's own step: " + se)
    with open(req, "w") as f:
        f.write("[1, 2]")
    rc, so, se = cli(d, "checkpoint", "--step", "5", req, emb, latent)
    check(rc == 1 and "not a JSON object" in se and "out of memory" not in se, se)


def t_counters(d):
    status, _, body = d.request("GET", "/metrics")
    text = body.decode()
    check_eq(status, 200, "metrics")
    for name in ("gencache_trajectory_vectors ", "gencache_trajectory_lookups_total{outcome=\"hit\"}",
                 "gencache_trajectory_lookups_total{outcome=\"miss\"}",
                 "gencache_trajectory_steps_skipped_total "):
        check(name in text, name)
    vectors = int(text.split("\ngencache_trajectory_vectors ")[1].split()[0])
    check(vectors >= 6 + 1, "vectors %d" % vectors)
    status, _, body = d.request("GET", "/v1/stats")
    st = json.loads(body)["trajectory"]
    check(st["hits"] > 0 and st["misses"] > 0 and st["steps_skipped"] > 0, st)
    check_eq(st["vectors"], vectors, "stats and metrics agree")


def t_tenants():
    d = Daemon("--config", config(tenants=True))
    try:
        store_fox_and_bird(d, tenant="acme")
        status, _, body = lookup(d, vec(0, 5, 0.96), tenant="globex")
        check_eq((status, error_code(body)), (404, "not_found"), "globex sees nothing of acme's")
        status, _, body = lookup(d, vec(0, 5, 0.96), tenant="acme", raw=True)
        check_eq((status, body), (200, b"a red fox@25"), "acme's own")
        # globex's own, less similar latent is what globex gets; acme still gets its own.
        store(d, "a red fox", 5, vec(0, 2, 0.8), tenant="globex")
        status, _, body = lookup(d, vec(0, 5, 0.96), tenant="globex")
        check_eq((status, body), (200, b"a red fox@5"), "globex's own")
        status, _, body = lookup(d, vec(0, 5, 0.96), tenant="acme")
        check_eq((status, body), (200, b"a red fox@25"), "acme unchanged")
        check_eq(lookup(d, vec(0, 5, 0.96))[0], 401, "no token")
        c = gencache.Client(d.url, token=TOKENS["globex"])
        try:
            found = c.trajectory_lookup("m1", vec(0, 5, 0.96))
            check(found is not None and found.latent == b"a red fox@5", "client: %r" % (found,))
        finally:
            c.close()
    finally:
        d.stop()


def t_restart():
    data = os.path.join(TMP, "data")
    d = Daemon("--config", config(), data_dir=data)
    try:
        store_fox_and_bird(d)
        gone = store(d, "a green frog", 25, vec(8, 9, 1.0))
        check_eq(d.request("DELETE", "/v1/entries/" + gone)[0], 204, "delete")
        check_eq(lookup(d, vec(8, 9, 1.0))[0], 404, "deleted latent")
    finally:
        check_eq(d.stop(), 0, "clean stop")
    check(os.path.exists(os.path.join(data, "traj.idx")), "traj.idx written")
    for lose in (False, True):
        if lose:
            os.remove(os.path.join(data, "traj.idx"))
        d = Daemon("--config", config(), data_dir=data)
        try:
            what = "rebuilt" if lose else "read back"
            status, _, body = lookup(d, vec(0, 5, 0.91))
            check_eq((status, body), (200, b"a red fox@20"), "fox %s" % what)
            status, _, body = lookup(d, vec(2, 5, 0.99), raw=True)
            check_eq((status, body), (200, b"a blue bird@10"), "bird %s" % what)
            check_eq(lookup(d, vec(8, 9, 1.0))[0], 404, "the deleted latent stays gone, %s" % what)
            status, _, body = d.request("GET", "/v1/stats")
            check_eq(json.loads(body)["trajectory"]["vectors"], 6, "vectors %s" % what)
            if lose:
                check("rebuilt 6 index records" in d.log(), "the log says it rebuilt")
        finally:
            check_eq(d.stop(), 0, "clean stop")


def main():
    r = Runner()
    try:
        d = Daemon("--config", config())
        try:
            r.run("known_neighbours", t_known_neighbours, d)
            r.run("dimension_mismatch", t_dimension_mismatch, d)
            r.run("malformed", t_malformed, d)
            r.run("python_client", t_python_client, d)
            r.run("cli", t_cli, d)
            r.run("counters", t_counters, d)
        finally:
            d.stop()
        r.run("tenants", t_tenants)
        r.run("restart", t_restart)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    r.finish()


if __name__ == "__main__":
    main()

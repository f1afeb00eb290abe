#!/usr/bin/env python3
"""Reuse beyond the exact key, end to end: a real gencached with image_match perceptual on
image_latent and condition, real images (Debian's imagemagick-6-doc) and benign variants made from
them with Pillow (JPEG quality 70, half size, 10% brighter), over HTTP (POST /v1/store, POST
/v1/lookup), the CLI (`gencache lookup`) and the Python client: perceptual hits and misses, the
guard refusing a crop, a rotation and another image, the default guard's radii (a JPEG q70
re-upload 10 pHash bits away found, two dither patterns told apart), lookups by digest and pHash
alone, tenant scope, delete and invalidation removing an image from the index, the records
surviving a restart, results of any seed, the counters on /v1/stats and /metrics, and malformed
lookups refused."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import GENCACHE, Daemon, Runner, check, check_eq  # noqa: E402

import gencache  # noqa: E402
from PIL import Image, ImageEnhance  # noqa: E402

IM = "/usr/share/doc/imagemagick-6-common/html/images/"
TMP = tempfile.mkdtemp(prefix="gencache-reuse-test-")
TOKENS = {"acme": "acme-token-0123456789ab", "globex": "globex-token-0123456789",
          "ops": "ops-token-0123456789abcd"}


def variant(name, how):
    """A benign (or, for crop and rotate, a refused) variant of a real image, as a file."""
    img = Image.open(IM + name).convert("RGB")
    ext = ".jpg" if how == "q70" else ".png"
    out = os.path.join(TMP, "%s-%s%s" % (how, name.split(".")[0], ext))
    if how == "q70":
        img.save(out, quality=70)
        return out
    if how == "half":
        img = img.resize((img.width // 2, img.height // 2), Image.LANCZOS)
    elif how == "bright":
        img = ImageEnhance.Brightness(img).enhance(1.1)
    elif how == "crop":
        img = img.crop((img.width // 4, 0, img.width, img.height))
    elif how == "rotate":
        img = img.transpose(Image.ROTATE_90)
    img.save(out)
    return out


def image_obj(path):
    """The image object of a request: digest and signature, as clients compute them."""
    with Image.open(path) as im:
        w, h = im.size
    return {"digest": gencache.image_digest(path), "phash": gencache.image_hash(path, "phash"),
            "dhash": gencache.image_hash(path, "dhash"), "width": w, "height": h}


def config(tenants=False, extra=()):
    lines = ["layers:", "  image_latent:", "    image_match: perceptual",
             "  condition:", "    image_match: perceptual"] + list(extra)
    if tenants:
        lines.append("tenants:")
        for name, tok in TOKENS.items():
            lines += ["  - name: %s" % name, "    token: %s" % tok]
            if name == "ops":
                lines.append("    admin: true")
    p = os.path.join(TMP, "reuse%d.yaml" % len(os.listdir(TMP)))
    with open(p, "w") as f:
        f.write("\n".join(lines) + "\n")
    return p


def auth(tenant):
    return {"Authorization": "Bearer " + TOKENS[tenant]} if tenant else {}


def store(d, layer, request, value, tenant=None):
    status, _, body = d.request("POST", "/v1/store", value, {
        "X-Gencache-Layer": layer, "X-Gencache-Request": json.dumps(request),
        "X-Gencache-Cost-Ms": "1500", **auth(tenant)})
    check_eq(status, 201, "store: %s" % body[:200])
    return json.loads(body)["key"]


def lookup(d, layer, request, tenant=None):
    body = json.dumps({"layer": layer, "request": request}).encode()
    return d.request("POST", "/v1/lookup", body, {"Content-Type": "application/json",
                                                   **auth(tenant)})


def req(path, model="i2v-a"):
    return {"model": model, "width": 832, "height": 480, "image": image_obj(path)}


def t_perceptual_over_http(d):
    orig = IM + "wizard.jpg"
    key = store(d, "image_latent", req(orig), b"latent-of-wizard")
    status, h, body = lookup(d, "image_latent", req(orig))
    check_eq((status, h.get("x-gencache-match"), h.get("x-gencache-key"), body),
             (200, "exact", key, b"latent-of-wizard"), "exact")
    digest = gencache.image_digest(orig)
    for how in ("q70", "half", "bright"):
        v = variant("wizard.jpg", how)
        check(gencache.image_digest(v) != digest, "%s: other pixels" % how)
        status, h, body = lookup(d, "image_latent", req(v))
        check_eq(status, 200, "%s: %s" % (how, body[:200]))
        check_eq(body, b"latent-of-wizard", how)
        check_eq(h["x-gencache-key"], key, how)
        m = h["x-gencache-match"]
        check(m.startswith("perceptual; distance=") and m.endswith("; of=" + digest), m)
        check(int(m.split("distance=")[1].split(";")[0]) <= 8, m)
    for how in ("crop", "rotate"):
        status, _, body = lookup(d, "image_latent", req(variant("wizard.jpg", how)))
        check_eq(status, 404, "%s must not match" % how)
        check(b"not_found" in body, body)
    status, _, _ = lookup(d, "image_latent", req(IM + "bluebells_clipped.jpg"))
    check_eq(status, 404, "another image")
    status, _, _ = lookup(d, "image_latent", req(variant("wizard.jpg", "half"), model="i2v-b"))
    check_eq(status, 404, "another model")
    stats = json.loads(d.request("GET", "/v1/stats")[2])
    check_eq(stats["reuse"]["layers"]["image_latent"]["perceptual_hits"], 3, "stats")
    check(stats["reuse"]["images"] >= 1, stats["reuse"])
    metrics = d.request("GET", "/metrics")[2].decode()
    check('gencache_match_hits_total{layer="image_latent",kind="perceptual"} 3' in metrics,
          "metrics")


def t_cli_and_python(d):
    orig = IM + "logo-sm.png"
    key = store(d, "image_latent", req(orig, "cli-model"), b"logo-latent")
    rf = os.path.join(TMP, "cli-req.json")
    with open(rf, "w") as f:
        json.dump({"model": "cli-model", "width": 832, "height": 480,
                   "image": {"path": variant("logo-sm.png", "q70")}}, f)
    p = subprocess.run([GENCACHE, "lookup", "--url", d.url, "--layer", "image_latent", rf],
                       capture_output=True, text=True, timeout=60)
    check_eq(p.returncode, 0, "cli: %s" % p.stderr)
    k, match, dist = p.stdout.split()
    check_eq((k, match), (key, "perceptual"), "cli")
    check(0 <= int(dist) <= 8, dist)
    with open(rf, "w") as f:
        json.dump({"model": "cli-model", "width": 832, "height": 480,
                   "image": {"path": IM + "granite.png"}}, f)
    p = subprocess.run([GENCACHE, "lookup", "--url", d.url, "--layer", "image_latent", rf],
                       capture_output=True, text=True, timeout=60)
    check_eq((p.returncode, p.stdout), (1, ""), "cli miss: %s" % p.stderr)
    p = subprocess.run([GENCACHE, "lookup", "--url", d.url, "--layer", "nope", rf],
                       capture_output=True, text=True, timeout=60)
    check_eq(p.returncode, 1, "cli unknown layer")
    check("unknown layer" in p.stderr, p.stderr)
    p = subprocess.run([GENCACHE, "lookup", "--url", d.url, "--layer", "image_latent", "--json",
                        rf], capture_output=True, text=True, timeout=60)
    check_eq((p.returncode, json.loads(p.stdout)["error"]["code"]), (1, "ENOTFOUND"), "cli --json")
    with gencache.Client(d.url) as c:
        r = c.lookup("image_latent", {"model": "cli-model", "width": 832, "height": 480,
                                      "image": variant("logo-sm.png", "bright")})
        check(r is not None, "python: a match")
        check_eq((r["data"], r["key"], r["match"], r["of"]),
                 (b"logo-latent", key, "perceptual", gencache.image_digest(orig)), "python")
        r = c.lookup("image_latent", {"model": "cli-model", "width": 832, "height": 480,
                                      "image": {"path": orig}})
        check_eq((r["match"], r["distance"]), ("exact", 0), "python exact")
        check(c.lookup("image_latent", {"model": "cli-model", "width": 832, "height": 480,
                                        "image": IM + "granite.png"}) is None, "python miss")


def t_phash_only(d):
    """The image given as its digest and pHash alone: the guards that need the dHash and the
    size apply only when a stored record of that digest supplies them."""
    orig = IM + "rose.jpg"
    key = store(d, "image_latent", req(orig, "po-model"), b"rose-latent")
    v = variant("rose.jpg", "q70")
    short = {"digest": gencache.image_digest(v), "phash": gencache.image_hash(v, "phash")}
    request = {"model": "po-model", "width": 832, "height": 480, "image": short}
    status, h, body = lookup(d, "image_latent", request)
    check_eq((status, body, h.get("x-gencache-key")), (200, b"rose-latent", key), "http")
    check(h["x-gencache-match"].startswith("perceptual; distance="), h["x-gencache-match"])
    rf = os.path.join(TMP, "phash-only.json")
    with open(rf, "w") as f:
        json.dump(request, f)
    p = subprocess.run([GENCACHE, "lookup", "--url", d.url, "--layer", "image_latent", rf],
                       capture_output=True, text=True, timeout=60)
    check_eq(p.returncode, 0, "cli: %s" % p.stderr)
    check_eq(p.stdout.split()[:2], [key, "perceptual"], "cli")
    with gencache.Client(d.url) as c:
        r = c.lookup("image_latent", request)
        check(r is not None, "python: a match")
        check_eq((r["data"], r["match"], r["of"]),
                 (b"rose-latent", "perceptual", gencache.image_digest(orig)), "python")
    other = IM + "granite.png"
    request["image"] = {"digest": gencache.image_digest(other),
                        "phash": gencache.image_hash(other, "phash")}
    check_eq(lookup(d, "image_latent", request)[0], 404, "another image")
    for bad in ({"phash": short["phash"], "width": 3}, {"dhash": short["phash"]}):
        request["image"] = dict(bad, digest=short["digest"])
        status, _, body = lookup(d, "image_latent", request)
        check_eq(status, 400, "partial signature %r: %s" % (bad, body[:200]))


def form(parts, boundary="gencache-test-boundary"):
    """A multipart/form-data body of (name, bytes) parts, and its Content-Type."""
    out = b""
    for name, data in parts:
        out += b"--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n" % (
            boundary.encode(), name.encode()) + data + b"\r\n"
    return out + b"--%s--\r\n" % boundary.encode(), \
        "multipart/form-data; boundary=" + boundary


def t_multipart_lookup(d):
    orig = IM + "julia-set.png"
    key = store(d, "image_latent", req(orig, "mp"), b"julia-latent")
    doc = json.dumps({"layer": "image_latent", "request": {
        "model": "mp", "width": 832, "height": 480, "image": {"path": "ignored"}}}).encode()
    with open(variant("julia-set.png", "q70"), "rb") as f:
        image = f.read()
    body, ct = form([("request", doc), ("image", image)])
    status, h, data = d.request("POST", "/v1/lookup", body, {"Content-Type": ct})
    check_eq((status, data, h.get("x-gencache-key")), (200, b"julia-latent", key), "multipart")
    check(h["x-gencache-match"].startswith("perceptual"), h["x-gencache-match"])
    # The request may have no image member at all: the part supplies it.
    doc2 = json.dumps({"request": {"width": 832, "height": 480, "model": "mp"},
                       "layer": "image_latent"}).encode()
    with open(orig, "rb") as f:
        body, ct = form([("request", doc2), ("image", f.read())])
    status, h, data = d.request("POST", "/v1/lookup", body, {"Content-Type": ct})
    check_eq((status, h.get("x-gencache-match")), (200, "exact"), "multipart, image added")
    bad = [
        (form([("request", doc)])[0], ct, "bad_multipart"),                  # no image part
        (form([("image", image)])[0], ct, "bad_multipart"),                  # no request part
        (form([("request", doc), ("image", b"not an image")])[0], ct, "bad_image"),
        (form([("request", b"{}"), ("image", image)])[0], ct, "bad_multipart"),
        (form([("request", doc), ("image", image), ("x", b"")])[0], ct, "bad_multipart"),
        (body[:len(body) // 2], ct, "bad_multipart"),                        # truncated
        (body, "multipart/form-data", "bad_multipart"),                      # no boundary
        (body, "multipart/form-data; boundary=other", "bad_multipart"),      # wrong boundary
    ]
    for i, (b, t, code) in enumerate(bad):
        status, _, data = d.request("POST", "/v1/lookup", b, {"Content-Type": t})
        check_eq(status, 400, "malformed multipart %d: %s" % (i, data[:200]))
        check_eq(json.loads(data)["error"]["code"], code, "malformed multipart %d" % i)


def t_delete_and_invalidate(d):
    orig = IM + "frame.jpg"
    k1 = store(d, "image_latent", req(orig, "del-a"), b"a")
    store(d, "image_latent", req(orig, "del-b"), b"b")
    before = json.loads(d.request("GET", "/v1/stats")[2])["reuse"]["images"]
    check_eq(d.request("DELETE", "/v1/entries/" + k1)[0], 204, "delete")
    after = json.loads(d.request("GET", "/v1/stats")[2])["reuse"]["images"]
    check_eq(after, before - 1, "delete drops the image from the index")
    check_eq(lookup(d, "image_latent", req(variant("frame.jpg", "half"), "del-a"))[0], 404, "gone")
    check_eq(lookup(d, "image_latent", req(variant("frame.jpg", "half"), "del-b"))[0], 200, "kept")
    status, _, body = d.request("POST", "/v1/invalidate", json.dumps({"layer": "image_latent"}),
                                {"Content-Type": "application/json"})
    check_eq(status, 200, body)
    check_eq(json.loads(d.request("GET", "/v1/stats")[2])["reuse"]["images"], 0, "invalidated")
    check_eq(lookup(d, "image_latent", req(variant("frame.jpg", "half"), "del-b"))[0], 404,
             "invalidated")


def t_any_seed(d):
    base = {"model": "t2v", "prompt": "a red fox in snow", "steps": 30}
    store(d, "result", dict(base, seed=18446744073709551615), b"video-big-seed")
    status, h, body = lookup(d, "result", dict(base, cache="any_seed"))
    check_eq((status, h.get("x-gencache-match"), body),
             (200, "any_seed; seed=18446744073709551615", b"video-big-seed"), "any_seed")
    status, _, body = lookup(d, "result", base)
    check_eq(status, 400, "a seedless request without any_seed has no key")
    check(b"uncacheable" in body, body)
    check_eq(lookup(d, "result", dict(base, steps=31, cache="any_seed"))[0], 404, "other recipe")


def t_similar_prompt(d):
    key = store(d, "text_embedding", {"model": "t2v", "prompt": "A Colour Photo of the Harbour!"},
                b"embedding")
    status, h, body = lookup(d, "text_embedding", {
        "model": "t2v", "prompt": "a color photo of the harbor", "cache": "similar_prompt"})
    check_eq((status, h.get("x-gencache-match"), h.get("x-gencache-key"), body),
             (200, "similar_prompt; distance=0", key, b"embedding"), "similar prompt")
    check_eq(lookup(d, "text_embedding", {"model": "t2v", "prompt": "a color photo of the harbor"})
             [0], 404, "without the directive")
    check_eq(lookup(d, "text_embedding", {"model": "t2v", "prompt": "a color photo of the sea",
                                          "cache": "similar_prompt"})[0], 404, "another prompt")
    stats = json.loads(d.request("GET", "/v1/stats")[2])["reuse"]
    check_eq(stats["layers"]["text_embedding"]["similar_prompt_hits"], 1, "stats")
    check(stats["prompts"] >= 1, stats)
    metrics = d.request("GET", "/metrics")[2].decode()
    check('gencache_match_hits_total{layer="text_embedding",kind="similar_prompt"} 1' in metrics,
          "metrics")


def t_malformed(d):
    for body in (b"", b"[]", b"{\"layer\": \"image_latent\"}", b"{\"request\": {}}",
                 b"{\"layer\": 3, \"request\": {}}",
                 b"{\"layer\": \"image_latent\", \"request\": 1}",
                 b"not json"):
        status, _, _ = d.request("POST", "/v1/lookup", body, {"Content-Type": "application/json"})
        check_eq(status, 400, "body %r" % body)
    status, _, body = lookup(d, "nope", {"model": "m"})
    check_eq(status, 404, "unknown layer")
    check(b"unknown_layer" in body, body)
    status, _, body = lookup(d, "image_latent", {"model": "m", "image": {"path": "/etc/passwd"}})
    check_eq(status, 400, "image path")
    status, _, body = lookup(d, "image_latent", {"model": "m", "image": {
        "digest": "sha256:" + "a" * 64, "phash": "00ff"}})
    check_eq(status, 400, "partial signature")
    status, _, _ = d.request("POST", "/v1/store", b"x", {"X-Gencache-Layer": "image_latent"})
    check_eq(status, 400, "store without a request")
    check_eq(d.request("GET", "/v1/lookup")[0], 405, "GET /v1/lookup")


def t_restart():
    data = os.path.join(TMP, "restart-data")
    d = Daemon("--config", config(), data_dir=data)
    try:
        key = store(d, "image_latent", req(IM + "configure.jpg"), b"kept-across-restart")
    finally:
        check_eq(d.stop(), 0, "clean stop")
    check(os.path.exists(os.path.join(data, "reuse.idx")), "reuse.idx written")
    d = Daemon("--config", config(), data_dir=data)
    try:
        status, h, body = lookup(d, "image_latent", req(variant("configure.jpg", "q70")))
        check_eq((status, body, h.get("x-gencache-key")), (200, b"kept-across-restart", key),
                 "after restart")
        check(h["x-gencache-match"].startswith("perceptual"), h["x-gencache-match"])
    finally:
        d.stop()
    # A damaged index is refused whole: the daemon starts, exact lookups still hit.
    with open(os.path.join(data, "reuse.idx"), "r+b") as f:
        f.seek(30)
        f.write(b"\xff\xff")
    d = Daemon("--config", config(), data_dir=data)
    try:
        check_eq(lookup(d, "image_latent", req(IM + "configure.jpg"))[0], 200, "exact after damage")
        check_eq(lookup(d, "image_latent", req(variant("configure.jpg", "q70")))[0], 404,
                 "no perceptual after damage")
        check("reuse" in d.log(), "the damage is logged")
    finally:
        d.stop()


def t_tenants():
    d = Daemon("--config", config(tenants=True))
    try:
        orig = IM + "montage.jpg"
        store(d, "condition", dict(req(orig), prompt="a cat"), b"acme-condition", "acme")
        v = dict(req(variant("montage.jpg", "half")), prompt="a cat")
        check_eq(lookup(d, "condition", v, "globex")[0], 404, "another tenant's condition")
        status, h, body = lookup(d, "condition", v, "acme")
        check_eq((status, body), (200, b"acme-condition"), "own condition")
        check(h["x-gencache-match"].startswith("perceptual"), h["x-gencache-match"])
        # image_latent is global: one tenant's latent serves another.
        store(d, "image_latent", req(orig), b"shared-latent", "acme")
        status, _, body = lookup(d, "image_latent", req(variant("montage.jpg", "q70")), "globex")
        check_eq((status, body), (200, b"shared-latent"), "global layer")
    finally:
        d.stop()


def t_default_guard():
    """The default guard's radii: a JPEG q70 re-upload 10 pHash bits from its original is found;
    two different dither patterns, 7 pHash and 9 dHash bits apart, are told apart by the
    combined radius (14), and found for each other once it is off."""
    gray60, gray85 = IM + "patterns/gray60.png", IM + "patterns/gray85.png"
    q70 = variant("red-circle.png", "q70")
    for combined, want in ((None, 404), (0, 200)):
        extra = ["perceptual:", "  combined_radius: %d" % combined] if combined is not None else []
        d = Daemon("--config", config(extra=extra))
        try:
            key = store(d, "image_latent", req(IM + "red-circle.png"), b"circle")
            status, h, body = lookup(d, "image_latent", req(q70))
            check_eq((status, body, h.get("x-gencache-key")), (200, b"circle", key), "q70")
            check(h["x-gencache-match"].startswith("perceptual; distance=10;"),
                  h["x-gencache-match"])
            store(d, "image_latent", req(gray85, "patterns"), b"gray85")
            status, h, _ = lookup(d, "image_latent", req(gray60, "patterns"))
            check_eq(status, want, "gray60 against gray85, combined radius %s: %s" % (
                combined, h.get("x-gencache-match")))
        finally:
            d.stop()


def main():
    r = Runner()
    try:
        d = Daemon("--config", config())
        try:
            r.run("perceptual_over_http", t_perceptual_over_http, d)
            r.run("cli_and_python", t_cli_and_python, d)
            r.run("phash_only", t_phash_only, d)
            r.run("multipart_lookup", t_multipart_lookup, d)
            r.run("delete_and_invalidate", t_delete_and_invalidate, d)
            r.run("any_seed", t_any_seed, d)
            r.run("similar_prompt", t_similar_prompt, d)
            r.run("malformed", t_malformed, d)
        finally:
            d.stop()
        r.run("default_guard", t_default_guard)
        r.run("restart", t_restart)
        r.run("tenants", t_tenants)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    r.finish()


if __name__ == "__main__":
    main()

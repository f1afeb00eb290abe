#!/usr/bin/env python3
"""POST /v1/generate with the input image itself (image-to-video), against a real gencached and
an upstream that records what it receives: a multipart/form-data upload and a raw image body
(request JSON in X-Gencache-Request) are both keyed by the image's pixel digest (the same pixels
in another file are a hit), the upstream receives the request with the image's digest and
signature plus the image bytes unchanged, a large image passes the 1 MiB JSON limit, and every
malformed upload is refused before anything is looked up or forwarded."""
import email
import hashlib
import http.server
import io
import json
import os
import random
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import Daemon, Runner, check, check_eq  # noqa: E402

import gencache  # noqa: E402
from PIL import Image  # noqa: E402

IM = "/usr/share/doc/imagemagick-6-common/html/images/"
CALLS = []


class Upstream(http.server.BaseHTTPRequestHandler):
    """Answers with what it got: the request JSON and the image's SHA-256 and type."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ct = self.headers["Content-Type"]
        got = {"content_type": ct}
        if ct.startswith("multipart/form-data"):
            msg = email.message_from_bytes(b"Content-Type: " + ct.encode() + b"\r\n\r\n" + body)
            for part in msg.get_payload():
                name = part.get_param("name", header="content-disposition")
                data = part.get_payload(decode=True)
                if name == "request":
                    got["request"] = json.loads(data)
                else:
                    got["image_sha256"] = hashlib.sha256(data).hexdigest()
                    got["image_type"] = part.get_content_type()
        else:
            got["request"] = json.loads(body)
        CALLS.append(got)
        out = json.dumps(got).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def form(parts, boundary="upload-test-boundary"):
    out = b""
    for name, data, ct in parts:
        out += (b"--%s\r\nContent-Disposition: form-data; name=\"%s\"%s\r\n" % (
            boundary.encode(), name.encode(), b"; filename=\"x\"" if ct else b""))
        out += (b"Content-Type: %s\r\n" % ct.encode() if ct else b"") + b"\r\n" + data + b"\r\n"
    return out + b"--%s--\r\n" % boundary.encode(), "multipart/form-data; boundary=" + boundary


def generate(d, body, headers):
    return d.request("POST", "/v1/generate", body, headers)


def t_multipart_and_raw(d, tmp):
    path = IM + "wizard.jpg"
    raw = open(path, "rb").read()
    request = {"model": "i2v", "prompt": "the wizard waves", "seed": 7, "frames": 16}
    body, ct = form([("request", json.dumps(request).encode(), None),
                     ("image", raw, "image/jpeg")])
    n0 = len(CALLS)
    status, h, data = generate(d, body, {"Content-Type": ct})
    check_eq((status, h.get("x-gencache")), (200, "miss"), "upload: %s" % data[:300])
    got = json.loads(data)
    check_eq(len(CALLS), n0 + 1, "one upstream call")
    image = got["request"]["image"]
    check_eq(image["digest"], gencache.image_digest(path), "digest forwarded")
    check_eq(image["phash"], gencache.image_hash(path, "phash"), "phash forwarded")
    check_eq((image["width"], image["height"]), (265, 352), "size forwarded")
    check_eq(got["request"]["prompt"], "the wizard waves", "the rest of the request as sent")
    check_eq((got["image_sha256"], got["image_type"]),
             (hashlib.sha256(raw).hexdigest(), "image/jpeg"), "the pixels go upstream unchanged")
    status, h, data2 = generate(d, body, {"Content-Type": ct})
    check_eq((status, h.get("x-gencache"), data2), (200, "hit", data), "the same upload: a hit")
    # The same pixels in another container, as a raw body: the same key (the pixel digest).
    png = os.path.join(tmp, "wizard.png")
    Image.open(path).save(png)
    status, h, data3 = generate(d, open(png, "rb").read(), {
        "Content-Type": "image/png", "X-Gencache-Request": json.dumps(request)})
    check_eq((status, h.get("x-gencache"), data3), (200, "hit", data), "raw PNG of the same pixels")
    check_eq(len(CALLS), n0 + 1, "no second upstream call")
    # Other pixels: another key.
    other = dict(request, seed=8)
    status, h, _ = generate(d, raw, {"Content-Type": "image/jpeg",
                                     "X-Gencache-Request": json.dumps(other)})
    check_eq((status, h.get("x-gencache")), (200, "miss"), "another seed")
    check_eq(CALLS[-1]["image_type"], "image/jpeg", "raw body's type forwarded")


def t_large_image(d, tmp):
    rnd = random.Random(5)
    img = Image.frombytes("RGB", (1024, 1024), bytes(rnd.getrandbits(8) for _ in range(3 << 20)))
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=0)
    raw = buf.getvalue()
    check(len(raw) > (1 << 20), "over 1 MiB")
    status, h, data = generate(d, raw, {"Content-Type": "image/png",
                                        "X-Gencache-Request": json.dumps({"model": "i2v",
                                                                          "seed": 1})})
    check_eq((status, h.get("x-gencache")), (200, "miss"), "large upload: %s" % data[:200])


def t_malformed(d):
    raw = open(IM + "rose.png", "rb").read()
    req = json.dumps({"model": "i2v", "seed": 1}).encode()
    good, ct = form([("request", req, None), ("image", raw, "image/png")])
    n0 = len(CALLS)
    bad = [
        (raw, {"Content-Type": "image/png"}, "bad_request"),                 # no request header
        (b"not an image", {"Content-Type": "image/png", "X-Gencache-Request": req}, "bad_image"),
        (b"", {"Content-Type": "image/webp", "X-Gencache-Request": req}, "bad_image"),
        (raw, {"Content-Type": "image/png", "X-Gencache-Request": "[1]"}, "bad_request"),
        (raw, {"Content-Type": "image/png", "X-Gencache-Request": "{\"seed\": \"x\"}"},
         "bad_request"),
        (good[:len(good) - 10], {"Content-Type": ct}, "bad_multipart"),       # truncated
        (good, {"Content-Type": "multipart/form-data"}, "bad_multipart"),     # no boundary
        (form([("request", req, None)])[0], {"Content-Type": ct}, "bad_multipart"),
        (form([("image", raw, "image/png")])[0], {"Content-Type": ct}, "bad_multipart"),
        (form([("request", req, None), ("image", raw, None), ("x", b"", None)])[0],
         {"Content-Type": ct}, "bad_multipart"),
        (form([("request", b"{", None), ("image", raw, None)])[0], {"Content-Type": ct},
         "bad_request"),
        (form([("request", req, None), ("image", raw[:40], None)])[0], {"Content-Type": ct},
         "bad_image"),
    ]
    for i, (body, headers, code) in enumerate(bad):
        status, _, data = generate(d, body, headers)
        check_eq(status, 400, "case %d: %s" % (i, data[:200]))
        check_eq(json.loads(data)["error"]["code"], code, "case %d" % i)
    check_eq(len(CALLS), n0, "nothing malformed reached the upstream")
    # A JSON request still works as before.
    status, h, _ = generate(d, json.dumps({"model": "t2v", "prompt": "x", "seed": 3}).encode(),
                            {"Content-Type": "application/json"})
    check_eq((status, h.get("x-gencache")), (200, "miss"), "plain JSON")
    check("request" in CALLS[-1] and "image_sha256" not in CALLS[-1], "JSON forwarded as JSON")


def main():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    r = Runner()
    with tempfile.TemporaryDirectory() as tmp:
        d = Daemon("--upstream", "http://127.0.0.1:%d/generate" % srv.server_address[1])
        try:
            r.run("multipart_and_raw", t_multipart_and_raw, d, tmp)
            r.run("large_image", t_large_image, d, tmp)
            r.run("malformed", t_malformed, d)
        finally:
            d.stop()
            srv.shutdown()
    r.finish()


if __name__ == "__main__":
    main()

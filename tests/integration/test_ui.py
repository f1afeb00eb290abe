#!/usr/bin/python3
"""GET /ui, the status page, against the real daemon and a real browser: the page is served to
the open mode and admin tenants only (401 without a token, 403 for another tenant), loads nothing
from outside, and drawn by headless Chromium (Debian's chromium) it shows the numbers of
/v1/stats: every element the page marks with data-stat carries the value at that path of the
counters, the hit-ratio history is drawn, top keys and recent errors are listed, and the
screenshot is not blank. A miss-ratio curve, which a tier reports only where it keeps ghost
entries, is checked by serving the page beside a stand-in /v1/stats that has one.

The browser parts print a skip line and pass when chromium is missing or cannot start here."""
import http.server
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import Daemon, Runner, Upstream, check, check_eq  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TMP = tempfile.mkdtemp(prefix="gencache-ui-test-")
KEY_A = "result/" + "a1" * 32
KEY_B = "result/" + "b2" * 32
ADMIN, USER = "ui-admin-token-0123456789", "ui-user-token-0123456789"


def chromium(url, *args):
    """Runs headless Chromium on url; returns its stdout, or None when it cannot run here."""
    if not os.path.exists(CHROMIUM):
        return None
    profile = tempfile.mkdtemp(dir=TMP)
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--hide-scrollbars", "--user-data-dir=" + profile,
           "--virtual-time-budget=4000", *args, url]
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=25)
    except (OSError, subprocess.TimeoutExpired) as e:
        print("chromium did not run: %s" % e)
        return None
    if p.returncode != 0:
        print("chromium exited %d: %s" % (p.returncode, p.stderr.decode()[-500:]))
        return None
    return p.stdout.decode()


def skip(what):
    print("skip %s: chromium (Debian package chromium) cannot start here" % what, flush=True)


def stats(d, token=None):
    st, _, body = d.request("GET", "/v1/stats", headers=auth(token))
    check_eq(st, 200, "stats status")
    return json.loads(body)


def auth(token):
    return {"Authorization": "Bearer " + token} if token else {}


def lookup(doc, path):
    """The value at a dotted path ("tiers.mem.bytes", "top_keys.0.hits") of a JSON document."""
    cur = doc
    for part in path.split("."):
        cur = cur[int(part)] if isinstance(cur, list) else cur[part]
    return cur


def marked(dom):
    """[(path, value)] of every element the page marked with data-stat."""
    return re.findall(r'data-stat="([^"]+)" data-value="([^"]*)"', dom)


def same(shown, actual):
    if isinstance(actual, str):
        return shown == actual
    return math.isclose(float(shown), float(actual), rel_tol=1e-9, abs_tol=1e-12)


def traffic(d, up):
    """Entries read and missed, a bad key, a coalesced pair and a bypass: every number the page
    shows moves away from zero."""
    for key, body, cost in ((KEY_A, b"a" * 3000, "4000"), (KEY_B, b"b" * 100, "1500")):
        st, _, _ = d.request("PUT", "/v1/entries/" + key, body=body,
                             headers={"X-Gencache-Cost-Ms": cost})
        check_eq(st, 201, "PUT " + key)
    for _ in range(5):
        check_eq(d.request("GET", "/v1/entries/" + KEY_A)[0], 200, "GET a")
    for _ in range(2):
        check_eq(d.request("GET", "/v1/entries/" + KEY_B)[0], 200, "GET b")
    check_eq(d.request("GET", "/v1/entries/result/" + "0" * 64)[0], 404, "miss")
    check_eq(d.request("GET", "/v1/entries/result/nothex")[0], 400, "bad key")
    # Two identical seeded requests at once: one upstream call, one coalesced wait.
    req = json.dumps({"model": "m", "prompt": "ui test", "seed": 7}).encode()
    out = []
    ts = [threading.Thread(target=lambda: out.append(d.request("POST", "/v1/generate", body=req)))
          for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    check_eq(sorted(r[0] for r in out), [200, 200], "generate statuses")
    # No seed: a fresh random generation, forwarded without the cache.
    st, h, _ = d.request("POST", "/v1/generate", body=json.dumps({"model": "m", "prompt": "x"}))
    check_eq((st, h.get("x-gencache")), (200, "bypass"), "bypass")


def t_served(d):
    st, h, body = d.request("GET", "/ui")
    check_eq(st, 200, "GET /ui")
    check(h.get("content-type", "").startswith("text/html"), "content type %r" % h)
    check("default-src 'none'" in h.get("content-security-policy", ""), "CSP %r" % h)
    page = body.decode()
    check("<svg" in page or "createElementNS" in page, "the page draws SVG")
    # Nothing is fetched from elsewhere: no absolute URL in any src or href, no import.
    check(not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', page), "external asset in page")
    check("@import" not in page and "<link rel=\"stylesheet\"" not in page, "external CSS")
    st, h, body = d.request("HEAD", "/ui")
    check_eq((st, body), (200, b""), "HEAD /ui")
    check_eq(d.request("POST", "/ui", body=b"")[0], 405, "POST /ui")


def t_counters(d, up):
    s = stats(d)
    check_eq(s["requests"]["coalesced"], 1, "coalesced")
    check_eq(s["requests"]["bypassed"], 1, "bypassed")
    check(s["requests"]["errors"] >= 1, "errors counted: %r" % s["requests"])
    # Seven hits at their stored costs, at least.
    check(s["gpu_seconds_saved"] >= (5 * 4000 + 2 * 1500) / 1000.0,
          "gpu seconds saved %r" % s["gpu_seconds_saved"])
    check_eq(s["gpu_seconds_saved"] * 1000,
             float(sum(l["cost_ms_saved"] for l in s["layers"].values())), "saved = layers' sum")
    top = s["top_keys"]
    check_eq([(k["key"], k["hits"]) for k in top[:2]], [(KEY_A, 5), (KEY_B, 2)], "top keys")
    err = s["recent_errors"][0]
    check_eq((err["status"], err["code"], err["path"]), (400, "bad_key", "/v1/entries/result/nothex"),
             "latest error")
    check(all(e["code"] != "not_found" for e in s["recent_errors"]), "a miss is not an error")
    check("history" not in s, "history only when asked")
    st, _, body = d.request("GET", "/v1/stats?history=1")
    h = json.loads(body)["history"]
    check_eq(h["interval_s"], 5, "history interval")
    check("result" in h["layers"], "layers in history %r" % h["layers"])
    check(len(h["samples"]) >= 2, "two samples or more: %d" % len(h["samples"]))


def t_page_numbers(d):
    dom = chromium(d.url + "/ui", "--dump-dom")
    if dom is None:
        return skip("page numbers")
    check('data-loaded="1"' in dom, "the page loaded its counters: %s" % dom[-2000:])
    s = stats(d)
    seen = marked(dom)
    paths = {p for p, _ in seen}
    for want in ("gpu_seconds_saved", "requests.coalesced", "requests.bypassed",
                 "requests.errors", "layers.result.hits", "layers.result.lookups",
                 "layers.result.hit_ratio", "tiers.mem.bytes", "tiers.mem.entries",
                 "tiers.disk.bytes", "top_keys.0.hits", "top_keys.1.hits",
                 "recent_errors.0.status"):
        check(want in paths, "the page shows %s (it shows %s)" % (want, sorted(paths)))
    for path, shown in seen:
        check(same(shown, lookup(s, path)),
              "%s: the page shows %s, /v1/stats has %r" % (path, shown, lookup(s, path)))
    check(KEY_A in dom and KEY_B in dom, "top keys listed")
    check("/v1/entries/result/nothex" in dom, "recent error listed")
    check("<polyline" in dom, "hit-ratio history drawn")
    check("no tier reports a miss-ratio curve" in dom, "no curve without one")


def t_screenshot(d):
    shot = os.path.join(TMP, "ui.png")
    if chromium(d.url + "/ui", "--window-size=1280,1000", "--screenshot=" + shot) is None:
        return skip("screenshot")
    from PIL import Image
    img = Image.open(shot).convert("RGB")
    check_eq(img.size, (1280, 1000), "screenshot size")
    small = img.resize((320, 250))
    colors = small.getcolors(maxcolors=1 << 16) or []
    background = max(colors)[1] if colors else None
    busy = sum(n for n, c in colors if c != background)
    check(len(colors) > 50, "a drawn page has many colours: %d" % len(colors))
    check(busy > 0.15 * 320 * 250, "non-background pixels: %d of %d" % (busy, 320 * 250))
    # The dark header band and the blue of the chart are there.
    check(img.getpixel((5, 5))[0] < 80, "header at the top: %r" % (img.getpixel((5, 5)),))


class FakeStats(http.server.BaseHTTPRequestHandler):
    """The page as the daemon serves it, beside a /v1/stats whose tiers carry a curve."""
    page = b""
    doc = {}

    def do_GET(self):
        body, ctype = ((self.page, "text/html") if self.path == "/ui" else
                       (json.dumps(self.doc).encode(), "application/json"))
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def t_mrc(d):
    st, _, page = d.request("GET", "/ui")
    check_eq(st, 200, "GET /ui")
    st, _, body = d.request("GET", "/v1/stats?history=1")
    doc = json.loads(body)
    curve = [{"scale": 0.5, "hit_ratio": 0.25, "gpu_seconds_saved": 12.5},
             {"scale": 1, "hit_ratio": 0.4, "gpu_seconds_saved": 20},
             {"scale": 2, "hit_ratio": 0.55, "gpu_seconds_saved": 27.5}]
    doc["tiers"]["mem"]["mrc"] = curve
    FakeStats.page, FakeStats.doc = page, doc
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeStats)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        dom = chromium("http://127.0.0.1:%d/ui" % srv.server_address[1], "--dump-dom")
    finally:
        srv.shutdown()
        srv.server_close()
    if dom is None:
        return skip("miss-ratio curve")
    check("mem tier" in dom, "curve titled by its tier")
    seen = dict(marked(dom))
    for i, p in enumerate(curve):
        for k in ("scale", "hit_ratio", "gpu_seconds_saved"):
            path = "tiers.mem.mrc.%d.%s" % (i, k)
            check(path in seen and same(seen[path], p[k]), "%s: %r" % (path, seen.get(path)))


def t_tenants():
    conf = os.path.join(TMP, "tenants.yaml")
    with open(conf, "w") as f:
        f.write("tenants:\n  - name: ops\n    token: %s\n    admin: true\n"
                "  - name: acme\n    token: %s\n" % (ADMIN, USER))
    d = Daemon("--config", conf)
    try:
        st, h, _ = d.request("GET", "/ui")
        check_eq(st, 401, "no token")
        check(h.get("www-authenticate", "").startswith("Bearer"), "WWW-Authenticate %r" % h)
        st, _, body = d.request("GET", "/ui", headers=auth(USER))
        check_eq(st, 403, "a tenant that is not admin")
        check_eq(json.loads(body)["error"]["code"], "forbidden", "error code")
        st, h, body = d.request("GET", "/ui", headers=auth(ADMIN))
        check_eq(st, 200, "admin")
        check(b"<svg" in body or b"createElementNS" in body, "the page")
        # A tenant's own counters carry nothing of the others': no top keys, no errors.
        s = stats(d, USER)
        check("top_keys" not in s and "recent_errors" not in s, "tenant stats %r" % list(s))
    finally:
        check_eq(d.stop(), 0, "exit status")


def main():
    r = Runner()
    up = Upstream("--sleep-ms", "400", "--size-kb", "4")
    try:
        d = Daemon("--upstream", up.url, "--upstream-timeout", "5")
        try:
            # The history takes a sample at the first tick and every 5 s: traffic between two.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                h = json.loads(d.request("GET", "/v1/stats?history=1")[2])["history"]
                if h["samples"]:
                    break
                time.sleep(0.2)
            r.run("traffic", traffic, d, up)
            while time.monotonic() < deadline + 6:
                h = json.loads(d.request("GET", "/v1/stats?history=1")[2])["history"]
                if len(h["samples"]) >= 2:
                    break
                time.sleep(0.2)
            r.run("counters", t_counters, d, up)
            r.run("served", t_served, d)
            r.run("page_numbers", t_page_numbers, d)
            r.run("screenshot", t_screenshot, d)
            r.run("mrc", t_mrc, d)
        finally:
            rc = d.stop()
        r.run("clean_exit", lambda: check_eq(rc, 0, "exit status"))
        r.run("tenants", t_tenants)
    finally:
        up.stop()
        shutil.rmtree(TMP, ignore_errors=True)
    r.finish()


if __name__ == "__main__":
    main()

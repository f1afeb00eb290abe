#!/usr/bin/python3
"""`gencache invalidate` against a real gencached: each filter option (--key, --layer, --tenant,
--tag, --model, --older-than) reaches POST /v1/invalidate and removes what it names and nothing
else; the count is printed plain or as {"invalidated": N} with --json; the tenant's token
(--token, $GENCACHE_TOKEN) is sent and a refused filter exits 1 with the daemon's message; bad
usage (no filter, a bad duration, an unknown option) exits 2 without a request."""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import GENCACHE, Daemon, Runner, check, check_eq  # noqa: E402

TOKENS = {"alice": "alice-token-0123456789", "bob": "bob-token-0123456789abc"}


def key(name, layer="result"):
    return "%s/%s" % (layer, hashlib.sha256(name.encode()).hexdigest())


def cli(*args, env=None):
    e = dict(os.environ)
    e.pop("GENCACHE_URL", None)
    e.pop("GENCACHE_TOKEN", None)
    e.update(env or {})
    return subprocess.run([GENCACHE, *args], capture_output=True, timeout=20, env=e)


def put(d, k, tags=None, token=None):
    h = {"X-Gencache-Tags": tags} if tags else {}
    if token:
        h["Authorization"] = "Bearer " + token
    st, _, body = d.request("PUT", "/v1/entries/" + k, body=b"v", headers=h)
    check_eq(st, 201, "PUT %s (%r)" % (k, body))


def exists(d, k, token=None):
    h = {"Authorization": "Bearer " + token} if token else {}
    return d.request("HEAD", "/v1/entries/" + k, headers=h)[0] == 200


def inval(d, *args, json_out=False, token=None, code=0):
    r = cli("invalidate", "--url", d.url, *(["--token", token] if token else []),
            *(["--json"] if json_out else []), *args)
    check_eq((r.returncode, r.stderr.decode()[:300]), (code, ""), "invalidate %r" % (args,))
    return json.loads(r.stdout) if json_out else int(r.stdout)


def t_filters(d):
    ks = [key("f%d" % i) for i in range(4)]
    put(d, ks[0], tags="red")
    put(d, ks[1], tags="red,blue")
    put(d, ks[2])
    put(d, ks[3])
    te = key("te", "text_embedding")
    put(d, te, tags="red")
    check_eq(inval(d, "--key", ks[3]), 1, "--key")
    check(not exists(d, ks[3]) and exists(d, ks[2]), "--key removes that key only")
    check_eq(inval(d, "--key", ks[3], json_out=True), {"invalidated": 0}, "--key again, --json")
    check_eq(inval(d, "--tag", "blue"), 1, "--tag")
    check_eq(inval(d, "--tag", "red", "--layer", "result", json_out=True), {"invalidated": 1},
             "--tag and --layer match together")
    check(exists(d, te), "the other layer's entry kept")
    check_eq(inval(d, "--model", "nobody", "--layer", "text_embedding"), 0, "--model")
    check_eq(inval(d, "--tenant", "someone"), 0, "--tenant (tokenless: as given)")
    check_eq(inval(d, "--layer", "text_embedding"), 1, "--layer")
    check(exists(d, ks[2]), "result entry untouched by the layer filter")


def t_older_than(d):
    old = key("old")
    put(d, old)
    time.sleep(1.2)
    new = key("new")
    put(d, new)
    check_eq(inval(d, "--older-than", "1s", "--layer", "result", json_out=True),
             {"invalidated": 2}, "--older-than 1s (this and t_filters' survivor)")
    check(not exists(d, old) and exists(d, new), "only the older entry went")
    check_eq(inval(d, "--older-than", "1d"), 0, "--older-than 1d")


def t_usage(d):
    for args in ([], ["--json"], ["--older-than", "soon"], ["--layer"], ["--bogus", "x"],
                 ["--layer", ""], ["--key", "a", "--key", "b"], ["--layer", "result", "extra"]):
        r = cli("invalidate", "--url", d.url, *args)
        check_eq(r.returncode, 2, "exit for %r" % (args,))
        check(r.stderr.startswith(b"gencache: invalidate: "), "message %r" % r.stderr)
        check_eq(r.stdout, b"", "no output for %r" % (args,))
    r = cli("invalidate", "--url", d.url, "--key", "not-a-key")
    check_eq(r.returncode, 1, "a key the daemon refuses")
    check(b"HTTP 400" in r.stderr, "the daemon's refusal is shown: %r" % r.stderr)
    r = cli("invalidate", "--help")
    check(r.returncode == 0 and b"--older-than DURATION" in r.stdout, "--help")


def t_tokens(tmp):
    conf = os.path.join(tmp, "tenants.yaml")
    with open(conf, "w") as f:
        f.write("tenants:\n" + "".join("  - name: %s\n    token: %s\n" % kv
                                       for kv in TOKENS.items()))
    d = Daemon("--config", conf)
    try:
        a, b = key("a"), key("b")
        put(d, a, tags="t", token=TOKENS["alice"])
        put(d, b, tags="t", token=TOKENS["bob"])
        r = cli("invalidate", "--url", d.url, "--tag", "t")
        check_eq(r.returncode, 1, "no token: refused")
        check(b"HTTP 401" in r.stderr, "401 shown: %r" % r.stderr)
        check_eq(inval(d, "--tag", "t", token=TOKENS["alice"]), 1, "alice removes her own")
        check(exists(d, b, token=TOKENS["bob"]), "bob's entry stays")
        r = cli("invalidate", "--url", d.url, "--tenant", "bob", "--tag", "t",
                env={"GENCACHE_TOKEN": TOKENS["alice"]})
        check_eq(r.returncode, 1, "alice naming bob: refused")
        check(b"HTTP 403" in r.stderr, "403 shown: %r" % r.stderr)
        r = cli("invalidate", "--url", d.url, "--tag", "t", env={"GENCACHE_TOKEN": TOKENS["bob"]})
        check_eq((r.returncode, r.stdout), (0, b"1\n"), "$GENCACHE_TOKEN is sent")
    finally:
        check_eq(d.stop(), 0, "daemon exit status")


def main():
    runner = Runner()
    d = Daemon()
    try:
        for name in ("filters", "older_than", "usage"):
            runner.run(name, globals()["t_" + name], d)
        runner.run("daemon_alive", lambda: check(d.alive(), "daemon died"))
    finally:
        rc = d.stop()
    runner.run("daemon_exit", lambda: check_eq(rc, 0, "daemon exit status"))
    with tempfile.TemporaryDirectory() as tmp:
        runner.run("tokens", t_tokens, tmp)
    runner.finish()


if __name__ == "__main__":
    main()

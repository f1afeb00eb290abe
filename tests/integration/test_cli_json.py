#!/usr/bin/python3
"""--json on every verb of the gencache CLI that prints data: each verb's --help names it (a new
verb that prints data without it fails here), and each one's JSON output parses and says what
its plain output says: normalize, key, imgid, imghash, similar on real image files, and get
--meta, stats, invalidate, import and prewarm against a real gencached with an upstream."""
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import GENCACHE, Daemon, Runner, Upstream, check, check_eq  # noqa: E402
from test_safetensors_cli import write_safetensors  # noqa: E402

# Verbs whose output is no data: put and del print nothing, export writes a safetensors file.
NO_DATA = {"put", "del", "export"}


def cli(*args, stdin=None):
    e = dict(os.environ)
    e.pop("GENCACHE_URL", None)
    e.pop("GENCACHE_TOKEN", None)
    return subprocess.run([GENCACHE, *args], input=stdin, capture_output=True, timeout=60, env=e)


def both(*args, stdin=None, rc=0):
    """(plain stdout lines, parsed --json stdout) of one command."""
    plain = cli(*args, stdin=stdin)
    js = cli(args[0], "--json", *args[1:], stdin=stdin)
    check_eq((plain.returncode, js.returncode), (rc, rc), "exit of %r (%r)" % (args, js.stderr))
    return plain.stdout.decode().splitlines(), json.loads(js.stdout)


def t_every_verb_has_json():
    verbs = re.findall(r"^  (\w+) ", cli("--help").stdout.decode(), re.M)
    check(len(verbs) >= 13, "verbs in --help: %r" % verbs)
    for v in verbs:
        usage = cli(v, "--help").stdout.decode()
        if v not in NO_DATA:
            check("--json" in usage, "gencache %s --help lacks --json:\n%s" % (v, usage))


def t_local_verbs(tmp):
    from PIL import Image
    paths = []
    for i, shade in enumerate((10, 12, 200)):
        img = Image.new("RGB", (64, 48), (shade, 40, 90))
        for x in range(0, 64, 8):
            img.putpixel((x, 5), (255, 255, 255) if i < 2 else (0, 0, 0))
        paths.append(os.path.join(tmp, "img%d.png" % i))
        img.save(paths[-1])
    missing = os.path.join(tmp, "missing.png")
    plain, js = both("imgid", *paths, missing, rc=1)
    check_eq([(o["digest"], o["file"]) for o in js[:3]],
             [tuple(line.split("  ")) for line in plain], "imgid")
    check_eq((js[3]["file"], js[3]["error"]["code"]), (missing, "EIO"), "imgid: error element")
    plain, js = both("imghash", "--algo", "dhash", "--bits", "256", *paths)
    check_eq([(o["hash"], o["file"]) for o in js], [tuple(line.split("  ")) for line in plain],
             "imghash")
    check_eq({(o["algo"], o["bits"]) for o in js}, {("dhash", 256)}, "imghash: algo and bits")
    plain, js = both("similar", "--radius", "10", paths[0], *paths)
    check_eq([(str(o["distance"]), o["file"]) for o in js],
             [tuple(line.split("  ")) for line in plain], "similar")
    check(len(js) >= 2 and js[0]["file"] == paths[0], "similar finds the query first: %r" % js)
    plain, js = both("normalize", "--mode", "clip", "  A  Red\tFox ")
    check_eq(js, {"mode": "clip", "prompt": plain[0]}, "normalize")
    check_eq(plain, ["a red fox"], "normalize plain")
    js = [json.loads(line) for line in
          cli("normalize", "--json", "--lines", "-", stdin=b"a  b\nc\n").stdout.splitlines()]
    check_eq([o["prompt"] for o in js], ["a b", "c"], "normalize --lines --json")
    req = json.dumps({"model": "m", "prompt": "a cat", "seed": 3}).encode()
    plain, js = both("key", "-", stdin=req)
    check_eq(sorted(js["keys"].values()), sorted(plain), "key")


def key(name, layer="result"):
    return "%s/%s" % (layer, hashlib.sha256(name.encode()).hexdigest())


def t_daemon_verbs(d, tmp):
    k = key("json")
    r = cli("put", "--url", d.url, "--cost-ms", "1200", "--tags", "a,b", k, "-", stdin=b"bytes")
    check_eq(r.returncode, 0, "put")
    plain, js = both("get", "--url", d.url, "--meta", k)
    check_eq(js, dict(line.split(": ", 1) for line in plain), "get --meta")
    check_eq((js["X-Gencache-Cost-Ms"], js["Content-Length"]), ("1200", "5"), "get --meta values")
    r = cli("get", "--url", d.url, "--json", k)
    check_eq(json.loads(r.stdout), js, "get --json alone means the metadata")
    r = cli("get", "--url", d.url, "--json", key("absent"))
    check_eq((r.returncode, r.stdout), (1, b""), "get --json of a miss")
    _, js = both("stats", "--url", d.url)
    check("layers" in js and "tiers" in js, "stats --json: %r" % sorted(js))
    st = os.path.join(tmp, "t.safetensors")
    write_safetensors(st, {key("t1", "text_embedding"): ("F32", [2], b"\0" * 8)})
    plain, js = both("import", "--url", d.url, st)
    check_eq(js, {"file": st, "imported": 1}, "import --json")
    check_eq(plain, ["imported 1 tensors from %s" % st], "import plain")
    r = cli("invalidate", "--url", d.url, "--json", "--tag", "a")
    check_eq(json.loads(r.stdout), {"invalidated": 1}, "invalidate --json")


def t_prewarm(d, tmp):
    path = os.path.join(tmp, "requests.jsonl")
    with open(path, "w") as f:
        f.write("\n".join(json.dumps({"model": "m", "prompt": "p%d" % i, "seed": i})
                          for i in range(3)) + "\n")
    r = cli("prewarm", "--url", d.url, "--json", path)
    check_eq(r.returncode, 0, "prewarm --json (%r)" % r.stderr)
    js = json.loads(r.stdout)
    check_eq((js["total"], js["done"], js["errors"], js["state"]), (3, 3, 0, "done"),
             "prewarm --json document")
    check(js["seconds"] >= 0, "seconds")


def main():
    runner = Runner()
    runner.run("every_verb_has_json", t_every_verb_has_json)
    with tempfile.TemporaryDirectory() as tmp:
        runner.run("local_verbs", t_local_verbs, tmp)
        up = Upstream()
        try:
            d = Daemon("--upstream", up.url)
            try:
                runner.run("daemon_verbs", t_daemon_verbs, d, tmp)
                runner.run("prewarm", t_prewarm, d, tmp)
            finally:
                rc = d.stop()
        finally:
            up.stop()
        runner.run("daemon_exit", lambda: check_eq(rc, 0, "daemon exit status"))
    runner.finish()


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""One config file, three readers that agree: examples/gencache.yaml loads in the daemon
(--check-config and a running --config), in `gencache key --config` and in
gencache.Cache(config=...), and all three derive the same keys for the same requests (the
config's new layer and per-model normalization included) and read the same sizes ("1G" is 2**30
and "1GB" 10**9 everywhere)."""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import GENCACHE, GENCACHED, Daemon, Runner, check, check_eq  # noqa: E402

import gencache  # noqa: E402

SOURCE_DIR = os.environ.get("GENCACHE_SOURCE_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..")
EXAMPLE = os.path.join(SOURCE_DIR, "examples", "gencache.yaml")
TMP = tempfile.mkdtemp(prefix="gencache-surfaces-test-")
TOKEN = "replace-with-a-long-random-token-0"  # tenant "ops" of the example
DIGEST = "sha256:" + "ab" * 32
REQUESTS = [
    {"model": "sdxl-base-1.0", "prompt": "A  Red Fox", "seed": 7, "width": 832, "height": 480,
     "image": {"digest": DIGEST}, "params": {"upscaler": "esrgan"}},
    {"model": "wan2.2-t2v-5b", "prompt": "A  Red Fox", "negative_prompt": "blur", "seed": 1},
]


def cli_keys(config, req):
    path = os.path.join(TMP, "req.json")
    with open(path, "w") as f:
        json.dump(req, f)
    r = subprocess.run([GENCACHE, "key", "--config", config, "--tenant", "ops", "--json", path],
                       capture_output=True, timeout=20)
    check_eq(r.returncode, 0, "gencache key --config: %r" % r.stderr)
    return json.loads(r.stdout)["keys"]


def t_example_keys_agree():
    r = subprocess.run([GENCACHED, "--check-config", EXAMPLE], capture_output=True, timeout=20)
    check_eq(r.returncode, 0, "--check-config: %r" % r.stderr)
    d = Daemon("--config", EXAMPLE)
    try:
        with gencache.Cache(config=EXAMPLE, data_dir=None) as c:
            for req in REQUESTS:
                st, _, body = d.request("POST", "/v1/keys", body=json.dumps(req),
                                        headers={"Authorization": "Bearer " + TOKEN})
                check_eq(st, 200, "POST /v1/keys: %r" % body)
                daemon = json.loads(body)["keys"]
                cli = cli_keys(EXAMPLE, req)
                py = c.key(req, tenant="ops")
                check_eq(cli, daemon, "CLI and daemon keys for %r" % req)
                check_eq(py, daemon, "Python and daemon keys for %r" % req)
            check("upscaled" in cli_keys(EXAMPLE, REQUESTS[0]), "the example's new layer")
            # The per-model mode of the example (clip for sdxl-base-1.0) is applied by all.
            lower = dict(REQUESTS[0], prompt="a red fox")
            check_eq(c.key(lower, "text_embedding"), c.key(REQUESTS[0], "text_embedding"),
                     "clip mode for sdxl-base-1.0")
            check_eq(c.stats()["tiers"]["mem"]["max_bytes"], 8 << 30, "Python: 8G")
        st, _, body = d.request("GET", "/v1/stats", headers={"Authorization": "Bearer " + TOKEN})
        check_eq(json.loads(body)["tiers"]["mem"]["max_bytes"], 8 << 30, "daemon: 8G")
    finally:
        check_eq(d.stop(), 0, "daemon exit status")


def t_sizes_agree():
    for text, want in (("1G", 1 << 30), ("1GiB", 1 << 30), ("1GB", 10 ** 9), ("512M", 512 << 20),
                       ("1500000", 1500000)):
        p = os.path.join(TMP, "size.yaml")
        with open(p, "w") as f:
            f.write("tiers:\n  memory:\n    max_bytes: %s\n  disk:\n    enabled: false\n" % text)
        d = Daemon("--config", p)
        try:
            st, _, body = d.request("GET", "/v1/stats")
            check_eq(json.loads(body)["tiers"]["mem"]["max_bytes"], want, "daemon %s" % text)
        finally:
            d.stop()
        with gencache.Cache(config=p) as c:
            check_eq(c.stats()["tiers"]["mem"]["max_bytes"], want, "Python %s" % text)
        check_eq(gencache._config.parse_size(text), want, "Python parse_size %s" % text)
        r = subprocess.run([GENCACHED, "--check-config", p, "--max-memory", text],
                           capture_output=True, timeout=20)
        check_eq(r.returncode, 0, "--max-memory %s: %r" % (text, r.stderr))
    # One refusal, worded the same for every reader.
    p = os.path.join(TMP, "bad.yaml")
    with open(p, "w") as f:
        f.write("layers:\n  result:\n    ttl: 1y\n")
    want = "%s:3: layers.result.ttl: expected a duration" % p
    r = subprocess.run([GENCACHED, "--check-config", p], capture_output=True, timeout=20)
    check(want in r.stderr.decode(), "daemon error %r" % r.stderr)
    r = subprocess.run([GENCACHE, "key", "--config", p, "-"], input=b"{}", capture_output=True,
                       timeout=20)
    check(r.returncode == 1 and want in r.stderr.decode(), "CLI error %r" % r.stderr)
    try:
        gencache.Cache(config=p)
        check(False, "Python accepted a bad config")
    except ValueError as e:
        check(want in str(e), "Python error %r" % str(e))


def main():
    r = Runner()
    try:
        r.run("example_keys_agree", t_example_keys_agree)
        r.run("sizes_agree", t_sizes_agree)
    finally:
        import shutil
        shutil.rmtree(TMP, ignore_errors=True)
    r.finish()


if __name__ == "__main__":
    main()

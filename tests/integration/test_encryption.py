"""Encryption at rest through the real daemon: a key file named in gencache.yaml, records in
Redis and on disk that show neither values nor metadata, records readable after a restart and by
a second daemon holding the key, and a tampered record served as a miss and counted in /metrics.
A missing key file is a configuration error that names it.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import GENCACHED, Daemon, Runner, check, check_eq  # noqa: E402
from test_tiers_daemon import Redis, key, value  # noqa: E402

TMP = tempfile.mkdtemp(prefix="gencache-encryption-test-")


def write(name, text):
    p = os.path.join(TMP, name)
    with open(p, "w") as f:
        f.write(text)
    return p


KEY_A = write("a.key", os.urandom(32).hex() + "\n")


def metric(d, name, tier):
    status, _, body = d.request("GET", "/metrics")
    check_eq(status, 200, "/metrics")
    m = re.search(r'^%s\{tier="%s"\} (\d+)$' % (name, tier), body.decode(), re.M)
    check(m is not None, "%s{tier=%s} missing from /metrics" % (name, tier))
    return int(m.group(1))


def test_missing_key_file():
    missing = os.path.join(TMP, "no-such.key")
    cfg = write("missing.yaml", "encryption:\n  key_file: %s\n" % missing)
    r = subprocess.run([GENCACHED, "--check-config", cfg], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=20)
    check(r.returncode != 0, "--check-config accepted a missing key file")
    err = r.stderr.decode()
    check("encryption.key_file" in err and missing in err,
          "the error names neither the key nor the file: %r" % err)
    cfg = write("nokey.yaml", "encryption:\n  previous_key_files: [%s]\n" % KEY_A)
    r = subprocess.run([GENCACHED, "--check-config", cfg], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=20)
    check(r.returncode != 0 and b"key_file or key_env" in r.stderr,
          "a config without a current key was accepted: %r" % r.stderr)
    cfg = write("twice.yaml", "encryption:\n  key_file: %s\n  previous_key_files: [%s]\n"
                % (KEY_A, KEY_A))
    r = subprocess.run([GENCACHED, "--check-config", cfg], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=20)
    check(r.returncode != 0 and b"listed twice" in r.stderr,
          "a key listed twice was accepted: %r" % r.stderr)


def test_sealed_in_redis_and_on_disk():
    cfg = write("enc.yaml", "encryption:\n  key_file: %s\n" % KEY_A)
    r = Redis()
    top = tempfile.mkdtemp(prefix="gencache-enc-")
    data_dir = os.path.join(top, "data")
    a = b = c = None
    try:
        a = Daemon("--config", cfg, "--redis", r.url, data_dir=data_dir)
        body = value(77)
        status, _, _ = a.request("PUT", "/v1/entries/" + key(77), body=body,
                                 headers={"X-Gencache-Tags": "confidential-tag"})
        check_eq(status, 201, "PUT")
        raw = r.command(b"GET", b"gencache:v1:" + key(77).encode())
        check(len(raw) > len(body), "Redis holds the record")
        check(body[:64] not in raw and b"confidential-tag" not in raw,
              "Redis holds plaintext")
        a.stop()
        a = None
        index = open(os.path.join(data_dir, "index", "data.mdb"), "rb").read()
        check(body[:64] not in index and b"confidential-tag" not in index,
              "the disk index holds plaintext")
        # A restart reads its own disk; a second daemon with the key reads Redis.
        a = Daemon("--config", cfg, "--redis", r.url, data_dir=data_dir)
        status, headers, got = a.request("GET", "/v1/entries/" + key(77))
        check_eq((status, got), (200, body), "GET after a restart")
        check_eq(headers.get("x-gencache-tags"), "confidential-tag", "tags after a restart")
        b = Daemon("--config", cfg, "--redis", r.url)
        status, headers, got = b.request("GET", "/v1/entries/" + key(77))
        check_eq((status, got), (200, body), "GET through Redis")
        check_eq(headers.get("x-gencache-tier"), "redis", "tier of the shared hit")
        # One flipped byte in Redis: a third daemon gets a miss, counted.
        rk = b"gencache:v1:" + key(77).encode()
        n = int(r.command(b"STRLEN", rk).strip()[1:])
        byte = r.command(b"GETRANGE", rk, b"%d" % (n - 5), b"%d" % (n - 5)).split(b"\r\n")[1]
        r.command(b"SETRANGE", rk, b"%d" % (n - 5), bytes([byte[0] ^ 1]))
        c = Daemon("--config", cfg, "--redis", r.url)
        status, _, _ = c.request("GET", "/v1/entries/" + key(77))
        check_eq(status, 404, "GET of a tampered record")
        check_eq(metric(c, "gencache_encryption_rejected_total", "redis"), 1,
                 "rejected records in /metrics")
        check_eq(metric(c, "gencache_encryption_rejected_total", "disk"), 0,
                 "nothing rejected on disk")
    finally:
        for d in (a, b, c):
            if d:
                d.stop()
        r.stop()
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    runner = Runner()
    try:
        runner.run("missing_key_file", test_missing_key_file)
        runner.run("sealed_in_redis_and_on_disk", test_sealed_in_redis_and_on_disk)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    runner.finish()

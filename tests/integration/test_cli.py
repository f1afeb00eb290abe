#!/usr/bin/python3
"""The client verbs of the gencache CLI (get, put, del, stats) against a real gencached: byte-exact
round trips through files and pipes, metadata, misses and refusals (exit 1 with the daemon's
message), an unreachable daemon (exit 1), and bad usage (exit 2)."""
import hashlib
import json
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import GENCACHE, Daemon, Runner, check, check_eq  # noqa: E402


def key(name, layer="result"):
    return "%s/%s" % (layer, hashlib.sha256(name.encode()).hexdigest())


def cli(*args, stdin=None, env=None):
    e = dict(os.environ)
    e.pop("GENCACHE_URL", None)
    e.update(env or {})
    return subprocess.run([GENCACHE, *args], input=stdin, capture_output=True, timeout=20, env=e)


def t_put_get_file(d, tmp):
    data = os.urandom(2 * 1024 * 1024 + 5)
    src = os.path.join(tmp, "in.bin")
    with open(src, "wb") as f:
        f.write(data)
    k = key("file")
    r = cli("put", "--url", d.url, "--cost-ms", "2500", "--ttl", "60", "--tags", "x,y",
            "--content-type", "video/mp4", k, src)
    check_eq((r.returncode, r.stderr), (0, b""), "put")
    r = cli("get", "--url", d.url, k)
    check_eq(r.returncode, 0, "get to stdout")
    check(r.stdout == data, "stdout bytes differ (%d vs %d)" % (len(r.stdout), len(data)))
    out = os.path.join(tmp, "out.bin")
    r = cli("get", "--url", d.url, "-o", out, k)
    check_eq(r.returncode, 0, "get -o")
    with open(out, "rb") as f:
        check(f.read() == data, "-o file differs")
    check_eq(sorted(n for n in os.listdir(tmp) if ".tmp." in n), [], "temporary files left")
    r = cli("get", "--url", d.url, "--meta", k)
    check_eq(r.returncode, 0, "get --meta")
    lines = r.stdout.decode().splitlines()
    for want in ("X-Gencache-Cost-Ms: 2500", "X-Gencache-Tier: mem", "X-Gencache-Tags: x,y",
                 "Content-Type: video/mp4", "Content-Length: %d" % len(data)):
        check(want in lines, "%r not in --meta output %r" % (want, lines))
    check(any(line.startswith("ETag: \"") for line in lines), "ETag in --meta")


def t_put_stdin_tensor(d, tmp):
    k = key("tensor", "text_embedding")
    data = bytes(range(256)) * 3  # 768 bytes = 2 x 96 x f32
    r = cli("put", "--url", d.url, "--dtype", "f32", "--shape", "2,96", k, "-", stdin=data)
    check_eq((r.returncode, r.stderr), (0, b""), "put from stdin")
    r = cli("get", "--url", d.url, k)
    check(r.returncode == 0 and r.stdout == data, "tensor bytes")
    r = cli("get", "--url", d.url, "--meta", k)
    check(b"X-Gencache-Dtype: f32" in r.stdout and b"X-Gencache-Shape: 2,96" in r.stdout,
          "tensor meta %r" % r.stdout)
    # The daemon refuses a shape that does not match: exit 1 with its message.
    r = cli("put", "--url", d.url, "--dtype", "f32", "--shape", "3,96", k, "-", stdin=data)
    check_eq(r.returncode, 1, "shape mismatch exit")
    check(b"bytes" in r.stderr and b"HTTP 400" in r.stderr, "shape mismatch message %r" % r.stderr)


def t_env_url(d, tmp):
    k = key("env")
    r = cli("put", k, "-", stdin=b"via env", env={"GENCACHE_URL": d.url + "/"})
    check_eq(r.returncode, 0, "put with $GENCACHE_URL")
    r = cli("get", k, env={"GENCACHE_URL": d.url})
    check_eq((r.returncode, r.stdout), (0, b"via env"), "get with $GENCACHE_URL")


def t_miss_and_del(d, tmp):
    k = key("gone")
    r = cli("put", "--url", d.url, k, "-", stdin=b"soon gone")
    check_eq(r.returncode, 0, "put")
    r = cli("del", "--url", d.url, k)
    check_eq((r.returncode, r.stdout), (0, b""), "del")
    r = cli("del", "--url", d.url, k)
    check_eq(r.returncode, 1, "del of a missing key")
    check(b"not found" in r.stderr, "del miss message %r" % r.stderr)
    out = os.path.join(tmp, "miss.bin")
    r = cli("get", "--url", d.url, "-o", out, k)
    check_eq((r.returncode, r.stdout), (1, b""), "get miss")
    check(b"not found" in r.stderr, "get miss message %r" % r.stderr)
    check(not os.path.exists(out), "-o file created on a miss")
    r = cli("get", "--url", d.url, "--meta", k)
    check_eq(r.returncode, 1, "get --meta miss")


def t_daemon_refusals(d, tmp):
    for args, what in ((["get", "result/XYZ"], b"malformed key"),
                       (["get", "--meta", "result/XYZ"], b"malformed key"),
                       (["get", "nosuch/" + "0" * 64], b"unknown layer"),
                       (["put", "result/" + "A" * 64, "-"], b"malformed key"),
                       (["put", "--tags", "\x01", key("t"), "-"], b"X-Gencache-Tags"),
                       (["put", "--dtype", "f99", "--shape", "1", key("t"), "-"], b"dtype"),
                       (["del", "result/../../etc"], b"HTTP 400")):
        r = cli(args[0], "--url", d.url, *args[1:], stdin=b"data")
        check_eq(r.returncode, 1, "exit for %r" % args)
        check(what in r.stderr, "message for %r: %r" % (args, r.stderr))


def t_stats(d, tmp):
    r = cli("stats", "--url", d.url)
    check_eq(r.returncode, 0, "stats")
    text = r.stdout.decode()
    for word in ("layer", "result", "hit%", "saved_s", "tier", "mem", "evicted"):
        check(word in text, "%r not in stats output:\n%s" % (word, text))
    # 2500 ms saved per hit of the "file" entry: at least two hits above.
    row = [line.split() for line in text.splitlines() if line.startswith("result ")][0]
    check(float(row[4]) >= 5.0, "saved seconds in %r" % row)
    r = cli("stats", "--url", d.url, "--json")
    check_eq(r.returncode, 0, "stats --json")
    doc = json.loads(r.stdout)
    check(doc["layers"]["result"]["hits"] >= 2 and "mem" in doc["tiers"], "stats JSON")


def t_unreachable(d, tmp):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    url = "http://127.0.0.1:%d" % port
    for args in (["get", key("x")], ["put", key("x"), "-"], ["del", key("x")], ["stats"]):
        r = cli(args[0], "--url", url, *args[1:], stdin=b"x")
        check_eq(r.returncode, 1, "exit for %r against no daemon" % args)
        check(b"cannot reach the daemon" in r.stderr, "message %r" % r.stderr)


def t_usage(d, tmp):
    for args in (["get"], ["get", "a", "b"], ["get", "--bogus", key("x")], ["put", key("x")],
                 ["put", "--cost-ms", "abc", key("x"), "-"], ["put", "--ttl", "-5", key("x"), "-"],
                 ["put", "--dtype", "f32", key("x"), "-"], ["del"], ["stats", "extra"],
                 ["get", "--url"]):
        r = cli(*args)
        check_eq(r.returncode, 2, "exit for %r" % args)
        check(r.stderr.startswith(b"gencache: "), "message for %r: %r" % (args, r.stderr))
    r = cli("put", "--url", d.url, key("x"), os.path.join(tmp, "does-not-exist"))
    check_eq(r.returncode, 1, "put of a missing file")
    check(b"cannot read" in r.stderr, "missing file message %r" % r.stderr)
    r = cli("get", "--help")
    check(r.returncode == 0 and b"usage: gencache get" in r.stdout, "get --help")


def main():
    runner = Runner()
    d = Daemon()
    tmp = os.path.join(d.dir, "files")
    os.mkdir(tmp)
    try:
        for name in ("put_get_file", "put_stdin_tensor", "env_url", "miss_and_del",
                     "daemon_refusals", "stats", "unreachable", "usage"):
            runner.run(name, globals()["t_" + name], d, tmp)
        runner.run("daemon_alive", lambda: check(d.alive(), "daemon died"))
    finally:
        rc = d.stop()
    runner.run("daemon_exit", lambda: check_eq(rc, 0, "daemon exit status"))
    runner.finish()


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""gencached's configuration file: every kind of mistake is refused with FILE:LINE: key.path and
exit status 2 (--check-config and --config alike), the commented example passes --check-config,
an empty file gives the built-in defaults, flags override the file, and what the file sets takes
effect in the running daemon (tier limits, layer TTLs, a new layer, per-model normalization,
preferred keys stored pinned, sensitive prompts uncacheable, the disk tier switched off)."""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import GENCACHED, Daemon, Runner, check, check_eq  # noqa: E402

SOURCE_DIR = os.environ.get("GENCACHE_SOURCE_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..")
TMP = tempfile.mkdtemp(prefix="gencache-config-test-")


def write(name, text):
    p = os.path.join(TMP, name)
    with open(p, "w") as f:
        f.write(text)
    return p


def check_config(path, *extra):
    return subprocess.run([GENCACHED, "--check-config", path, *extra], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=20)


def key(name, layer="result"):
    return "%s/%s" % (layer, hashlib.sha256(name.encode()).hexdigest())


# (file text, line, key path, part of the message)
BAD = [
    ("lisen: 127.0.0.1:1\n", 1, "lisen", "unknown key"),
    ("listen: 127.0.0.1:1\ntiers:\n  memory:\n    max_bytes: lots\n", 4,
     "tiers.memory.max_bytes", "expected a size like 1G"),
    ("tiers:\n  memory:\n    max_bytes: [1]\n", 3, "tiers.memory.max_bytes", "expected a size"),
    ("tiers:\n  tape: {}\n", 2, "tiers.tape", "unknown key"),
    ("tiers:\n  gpu:\n    enabled: true\n", 3, "tiers.gpu.enabled", "no GPU tier"),
    ("tiers:\n  memory:\n    enabled: false\n", 3, "tiers.memory.enabled", "cannot be disabled"),
    ("tiers:\n  disk:\n    enabled: maybe\n", 3, "tiers.disk.enabled", "expected true or false"),
    ("tiers:\n  redis:\n    enabled: true\n", 3, "tiers.redis.enabled", "needs a url"),
    ("tiers:\n  redis:\n    url: http://x\n", 3, "tiers.redis.url", "redis://"),
    ("layers:\n  result:\n    ttl: 7x\n", 3, "layers.result.ttl", "expected a duration"),
    ("layers:\n  result:\n    scope: everyone\n", 3, "layers.result.scope", "global, tenant"),
    ("layers:\n  result:\n    policy: lfu\n", 3, "layers.result.policy", "write_back"),
    ("layers:\n  result:\n    prompt_normalization: loud\n", 3,
     "layers.result.prompt_normalization", "exact, safe"),
    ("layers:\n  result:\n    image_match: fuzzy\n", 3, "layers.result.image_match", "exact"),
    ("layers:\n  result:\n    colour: red\n", 3, "layers.result.colour", "unknown key"),
    ("layers:\n  Bad-Name:\n    ttl: 1s\n", 2, "layers.Bad-Name", "a-z"),
    ("layers:\n  extra:\n    ttl: 1s\n", 2, "layers.extra", "needs fields"),
    ("layers:\n  extra:\n    fields: model\n", 3, "layers.extra.fields", "list"),
    ("layers:\n  result:\n    prompt_normalization: safe\n  condition:\n"
     "    prompt_normalization: exact\n", 4, "layers.condition.prompt_normalization", "same mode"),
    ("models:\n  m1:\n    prompt_normalization: 3\n", 3, "models.m1.prompt_normalization",
     "exact"),
    ("tenants:\n  name: a\n", 2, "tenants", "expected a list"),
    ("tenants:\n  - name: a\n", 2, "tenants[0]", "needs a name and a token"),
    ("tenants:\n  - name: a\n    token: short\n", 3, "tenants[0].token", "at least 16"),
    ("tenants:\n  - name: a\n    token: aaaaaaaaaaaaaaaaaaaa\n    priority: urgent\n", 4,
     "tenants[0].priority", "high, normal or batch"),
    ("tenants:\n  - name: a\n    token: aaaaaaaaaaaaaaaaaaaa\n    quota_bytes: -1\n", 4,
     "tenants[0].quota_bytes", "expected a size"),
    ("tenants:\n  - {name: a, token: aaaaaaaaaaaaaaaaaaaa}\n"
     "  - {name: a, token: bbbbbbbbbbbbbbbbbbbb}\n", 3, "tenants[1]", "used twice"),
    ("tenants:\n  - {name: a, token: aaaaaaaaaaaaaaaaaaaa}\n"
     "  - {name: b, token: aaaaaaaaaaaaaaaaaaaa}\n", 3, "tenants[1]", "share a token"),
    ("preferred: result/*\n", 1, "preferred", "list"),
    ("preferred:\n  - nolayer\n", 2, "preferred", "<layer>/"),
    ("sensitive:\n  - ok\n  - \"a(b\"\n", 3, "sensitive", "bad regular expression"),
    ("upstream:\n  url: ftp://x\n", 2, "upstream.url", "http://"),
    ("upstream:\n  timeout: soon\n", 2, "upstream.timeout", "duration"),
    ("prewarm:\n  concurrency: 0\n", 2, "prewarm.concurrency", "from 1 to 1024"),
    ("memory_pressure:\n  warn_ratio: 2\n", 2, "memory_pressure.warn_ratio", "ratio"),
    ("limits:\n  max_body: 0\n", 2, "limits.max_body", "above 0"),
    ("limits:\n  timeout: 100ms\n", 2, "limits.timeout", "from 1s"),
    ("limits:\n  max_header: 1K\n", 2, "limits.max_header", "unknown key"),
    ("listen: a\nlisten: b\n", 2, "listen", "duplicate key"),
    ("log_level: loud\n", 1, "log_level", "expected error, warn"),
    ("- just\n- a list\n", 1, "(top level)", "mapping"),
    ("tiers: {memory: {max_bytes: 1G}\n", 2, "", "YAML syntax error"),
]


def t_bad_configs():
    for i, (text, line, keypath, what) in enumerate(BAD):
        p = write("bad%d.yaml" % i, text)
        r = check_config(p)
        err = r.stderr.decode()
        check_eq(r.returncode, 2, "exit status for %r (stderr %r)" % (text, err))
        want = "%s:%d: %s" % (p, line, keypath)
        check(want in err, "error for %r should name %r: %r" % (text, want, err))
        check(what in err, "error for %r should say %r: %r" % (text, what, err))
    # --config fails the same way, before listening.
    p = write("bad-run.yaml", "tiers:\n  memory:\n    max_bytes: lots\n")
    r = subprocess.run([GENCACHED, "--config", p, "--listen", "127.0.0.1:0"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
    check_eq(r.returncode, 2, "--config with a bad file")
    check(("%s:3: tiers.memory.max_bytes" % p).encode() in r.stderr, "--config error names it")
    r = check_config(os.path.join(TMP, "missing.yaml"))
    check_eq(r.returncode, 2, "missing file")
    check(b"cannot open" in r.stderr, "missing file message")


def t_mangled_example():
    # Every truncation of the example, and the example with one character replaced on each line,
    # either loads or is refused with status 2 and a file:line message: never a crash.
    with open(os.path.join(SOURCE_DIR, "examples", "gencache.yaml")) as f:
        lines = f.read().split("\n")
    variants = ["\n".join(lines[:n]) for n in range(0, len(lines), 3)]
    for i, line in enumerate(lines):
        if line.strip() and not line.lstrip().startswith("#"):
            j = (i * 7) % len(line)
            variants.append("\n".join(lines[:i] + [line[:j] + "\x01{:" [i % 3] + line[j + 1:]]
                                     + lines[i + 1:]))
    for n, text in enumerate(variants):
        p = write("mangled.yaml", text)
        r = check_config(p)
        check(r.returncode in (0, 2), "variant %d: exit %d, %r" % (n, r.returncode, r.stderr))
        if r.returncode == 2:
            check(r.stderr.startswith(("gencached: " + p + ":").encode()) or b"ERROR" in r.stderr,
                  "variant %d message %r" % (n, r.stderr))


def t_apply_errors():
    # Field names are checked by the keyspace when the layers are applied: still exit 2.
    p = write("badfield.yaml", "layers:\n  extra:\n    fields: [\"a=b\"]\n")
    r = check_config(p)
    check_eq(r.returncode, 2, "bad field name: %r" % r.stderr)
    check(b"layers.extra.fields" in r.stderr, "bad field message %r" % r.stderr)
    # Beyond loopback without tenants.
    p = write("open.yaml", "listen: 0.0.0.0:8787\n")
    r = check_config(p)
    check_eq(r.returncode, 2, "non-loopback listen without tenants")
    check(b"loopback" in r.stderr, "loopback message")
    p = write("open-ok.yaml", "listen: 0.0.0.0:8787\ntenants:\n"
              "  - {name: a, token: aaaaaaaaaaaaaaaaaaaa}\n")
    r = check_config(p)
    check_eq(r.returncode, 0, "non-loopback with tenants: %r" % r.stderr)


def t_example():
    p = os.path.join(SOURCE_DIR, "examples", "gencache.yaml")
    r = check_config(p)
    check_eq(r.returncode, 0, "examples/gencache.yaml: %r" % r.stderr)
    out = r.stdout.decode()
    check(": ok" in out and "tenants: 3" in out and "upscaled" in out, "summary: %r" % out)


def t_defaults():
    for text in ("", "# only a comment\n"):
        r = check_config(write("empty.yaml", text))
        check_eq(r.returncode, 0, "empty config: %r" % r.stderr)
        out = r.stdout.decode()
        check("listen: 127.0.0.1:8787" in out, "default listen: %r" % out)
        check("redis: disabled" in out and "tenants: none" in out, "defaults: %r" % out)
    # Flags override the file.
    p = write("mem.yaml", "tiers:\n  memory:\n    max_bytes: 64M\n")
    r = check_config(p, "--max-memory", "32M", "--listen", "127.0.0.1:9999")
    check_eq(r.returncode, 0, "check with flags")
    out = r.stdout.decode()
    check("max_bytes 32M" in out and "127.0.0.1:9999" in out, "flags override: %r" % out)


def t_running():
    conf = write("run.yaml", """
tiers:
  memory:
    max_bytes: 64M
  disk:
    enabled: false
layers:
  result:
    ttl: 90s
  upscaled:
    fields: [model, width]
    scope: global
    ttl: 1h
models:
  exact-model:
    prompt_normalization: exact
preferred:
  - "text_embedding/*"
sensitive:
  - "forbidden[[:space:]]+words"
""")
    d = Daemon("--config", conf)
    try:
        st, _, body = d.request("GET", "/v1/stats")
        doc = json.loads(body)
        check_eq(doc["tiers"]["mem"]["max_bytes"], 64 << 20, "memory limit from the config")
        check("disk" not in doc["tiers"], "disk tier disabled: %r" % list(doc["tiers"]))
        check("upscaled" in doc["layers"], "new layer in stats")
        # Layer TTL.
        k = key("ttl")
        st, _, _ = d.request("PUT", "/v1/entries/" + k, body=b"x")
        check_eq(st, 201, "PUT")
        st, hdrs, _ = d.request("GET", "/v1/entries/" + k)
        check(0 < int(hdrs.get("x-gencache-ttl", "0")) <= 90, "ttl header %r" % hdrs)
        # The new layer stores and derives keys.
        st, _, _ = d.request("PUT", "/v1/entries/" + key("u", "upscaled"), body=b"y")
        check_eq(st, 201, "PUT to a configured layer")
        req = {"model": "exact-model", "prompt": "  A   Cat ", "seed": 1, "width": 64}
        st, _, body = d.request("POST", "/v1/keys", body=json.dumps(req))
        doc = json.loads(body)
        check_eq(st, 200, "keys")
        check("upscaled" in doc["keys"], "upscaled key: %r" % doc)
        check_eq(doc["prompt"], "  A   Cat ", "exact mode for exact-model")
        st, _, body = d.request("POST", "/v1/keys", body=json.dumps(dict(req, model="other")))
        check_eq(json.loads(body)["prompt"], "A Cat", "safe mode for other models")
        # Preferred keys are stored pinned.
        k = key("pin", "text_embedding")
        d.request("PUT", "/v1/entries/" + k, body=b"z")
        st, hdrs, _ = d.request("GET", "/v1/entries/" + k)
        check_eq(hdrs.get("x-gencache-pinned"), "1", "preferred entry pinned")
        # Sensitive prompts: every layer uncacheable, with the reason.
        for field in ("prompt", "negative_prompt"):
            bad = dict(req, **{field: "some FORBIDDEN  words here"})
            st, _, body = d.request("POST", "/v1/keys", body=json.dumps(bad))
            doc = json.loads(body)
            check_eq(st, 200, "sensitive keys status")
            check_eq(doc["keys"], {}, "no keys for a sensitive %s" % field)
            check("result" in doc["uncacheable"] and "sensitive" in doc["reasons"]["result"],
                  "sensitive reason: %r" % doc)
        check(d.alive(), "daemon alive")
    finally:
        check_eq(d.stop(), 0, "exit status")


def main():
    r = Runner()
    try:
        r.run("bad_configs", t_bad_configs)
        r.run("apply_errors", t_apply_errors)
        r.run("mangled_example", t_mangled_example)
        r.run("example", t_example)
        r.run("defaults", t_defaults)
        r.run("running", t_running)
    finally:
        import shutil
        shutil.rmtree(TMP, ignore_errors=True)
    r.finish()


if __name__ == "__main__":
    main()

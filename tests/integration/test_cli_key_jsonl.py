#!/usr/bin/python3
"""`gencache key --jsonl`, the bulk mode: the golden vectors (tests/vectors/keys.json), valid and
invalid interleaved, go through one process per mode and tenant; every output line holds the keys
the vector names (or the error code it names), in input order, one line out per line in; a
malformed line of any kind (not JSON, empty, binary, CRLF-ended, oversize, a bad field) gives an
error object on its own line and the lines after it are still keyed; file and stdin agree;
--layer selects; the exit status says whether any line failed."""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import GENCACHE, Runner, check, check_eq  # noqa: E402

SRC = os.environ.get("GENCACHE_SOURCE_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..")
with open(os.path.join(SRC, "tests", "vectors", "keys.json"), encoding="utf-8") as f:
    VECTORS = json.load(f)


def jsonl(data, *args):
    return subprocess.run([GENCACHE, "key", "--jsonl", *args], input=data, capture_output=True,
                          timeout=60)


def want_keys(v):
    return {layer: e["key"] for layer, e in v["layers"].items() if "key" in e}


def invalid_bytes(v):
    return bytes.fromhex(v["request_hex"]) if "request_hex" in v else v["request"].encode()


def t_vectors():
    groups = {}
    for v in VECTORS["vectors"]:
        if "modes" in v or "\n" in v["request"]:
            continue  # per-model modes need a config; a line cannot hold a newline
        groups.setdefault((v.get("mode"), v.get("tenant")), []).append(("ok", v))
    bad = [v for v in VECTORS["invalid"] if b"\n" not in invalid_bytes(v)]
    check(len(bad) > 30, "invalid vectors used: %d" % len(bad))
    # Each invalid request goes in between the valid ones of its group.
    for i, v in enumerate(bad):
        group = groups.setdefault((v.get("mode"), v.get("tenant")), [])
        group.insert(min(2 * i + 1, len(group)), ("bad", v))
    n = 0
    for (mode, tenant), items in groups.items():
        data = b"".join((v["request"].encode() if kind == "ok" else invalid_bytes(v)) + b"\n"
                        for kind, v in items)
        args = (["--mode", mode] if mode else []) + (["--tenant", tenant] if tenant else [])
        r = jsonl(data, *args)
        lines = r.stdout.decode().split("\n")
        check_eq(lines[-1], "", "output ends with a newline")
        check_eq(len(lines) - 1, len(items), "one line out per line in (%s)" % (args,))
        for i, ((kind, v), line) in enumerate(zip(items, lines)):
            doc = json.loads(line)
            if kind == "ok":
                check_eq(doc.get("keys"), want_keys(v), "%s: keys" % v["name"])
                unc = sorted(layer for layer, e in v["layers"].items() if "key" not in e)
                check_eq(sorted(doc.get("uncacheable", [])), unc, "%s: uncacheable" % v["name"])
            else:
                check_eq(doc["error"]["code"], v["error"], "%s: error code" % v["name"])
                check_eq(doc["error"]["line"], i + 1, "%s: line number" % v["name"])
                check(doc["error"]["message"], "%s: a message" % v["name"])
            n += 1
        check_eq(r.returncode, 1 if any(k == "bad" for k, _ in items) else 0, "exit status")
        check_eq(r.stderr, b"", "nothing on stderr")
    check(n > 100, "lines checked: %d" % n)


def t_malformed_lines():
    good = VECTORS["vectors"][0]
    g = good["request"].encode()
    lines = [b"", b"\x00\xff\xfe binary", b"[1, 2]", b"{\"steps\": -1}", g + b"\r",
             b"{" * 100000, b"{\"prompt\": \"" + b"x" * (1 << 20) + b"\"}", b"   ", g]
    r = jsonl(b"\n".join(lines))  # and no newline after the last line
    out = r.stdout.decode().splitlines()
    check_eq(len(out), len(lines), "one line out per line in")
    docs = [json.loads(o) for o in out]
    for i in (0, 1, 2, 3, 5, 6, 7):
        check("error" in docs[i], "line %d is an error: %r" % (i + 1, out[i][:200]))
        check_eq(docs[i]["error"]["line"], i + 1, "line number")
    check_eq(docs[6]["error"]["code"], "ELIMIT", "oversize line")
    check_eq(docs[4].get("keys"), want_keys(good), "CRLF line keyed as the plain one")
    check_eq(docs[8].get("keys"), want_keys(good), "last line without a newline")
    check_eq(r.returncode, 1, "exit status after errors")


def t_file_stdin_layers():
    data = "".join(v["request"] + "\n" for v in VECTORS["vectors"][:20]
                   if "mode" not in v and "modes" not in v and "tenant" not in v
                   and "\n" not in v["request"]).encode()
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl") as f:
        f.write(data)
        f.flush()
        a = subprocess.run([GENCACHE, "key", "--jsonl", f.name], capture_output=True,
                           timeout=60)
        b = jsonl(data)
        c = jsonl(data, "-")
        d = jsonl(data, "--layer", "text_embedding", "--layer", "result")
    check_eq(a.returncode, 0, "file: exit status")
    check(a.stdout == b.stdout == c.stdout, "file, stdin and - agree")
    for full, sel in zip(a.stdout.decode().splitlines(), d.stdout.decode().splitlines()):
        keys = json.loads(full)["keys"]
        want = {k: keys[k] for k in ("result", "text_embedding") if k in keys}
        check_eq(json.loads(sel)["keys"], want, "--layer selects")
    r = jsonl(data, "--layer", "nope")
    check_eq((r.returncode, r.stdout), (1, b""), "unknown layer: refused before any line")
    check(b"unknown layer" in r.stderr, "unknown layer message %r" % r.stderr)
    r = jsonl(b"", "/nonexistent/requests.jsonl")
    check_eq(r.returncode, 1, "missing file")
    r = jsonl(b"")
    check_eq((r.returncode, r.stdout), (0, b""), "empty input: no output")
    r = subprocess.run([GENCACHE, "key", "--jsonl", "--json", "-"], capture_output=True)
    check_eq(r.returncode, 2, "--jsonl with --json is bad usage")


def main():
    runner = Runner()
    for name in ("vectors", "malformed_lines", "file_stdin_layers"):
        runner.run(name, globals()["t_" + name])
    runner.finish()


if __name__ == "__main__":
    main()

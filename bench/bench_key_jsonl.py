#!/usr/bin/python3
"""bench_key_jsonl.py: requests/s of `gencache key --jsonl` (every default layer's key of each
request line, one process for the whole file) against two baselines measured in the same run on
the same lines: the independent Python implementation of key v1 (tests/integration/keyref.py:
json + hashlib, in-process, no process start counted) and one `gencache key` process per request
(the way scripts did it before the bulk mode). It also checks that the bulk output equals the
Python keys line by line, so the speed is never bought with a wrong answer.

usage: bench/bench_key_jsonl.py [--lines N] [--rounds R] [--per-process N] [--bin DIR]
       (defaults: 20000 lines, 5 rounds (best is printed), 300 per-process runs,
        $GENCACHE_BIN_DIR or build/bin)
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import keyref  # noqa: E402

WORDS = ("fox snow dawn golden light pine trees breath cold air shallow depth field detailed fur "
         "volumetric fog film grain rim lighting slow motion cinematic tracking shot city night "
         "rain neon reflections drone aerial ocean waves sunset portrait studio").split()
MODELS = ("wan2.2-t2v-5b", "wan2.1-i2v-14b", "svd-xt", "cogvideox-5b")


def make_requests(n, seed=7):
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        r = {"model": rnd.choice(MODELS),
             "prompt": " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(8, 40))),
             "negative_prompt": "blurry, low quality", "seed": rnd.randint(0, 2**31),
             "steps": rnd.choice((25, 30, 50)), "guidance": rnd.choice((5.0, 6.5, 7.5)),
             "frames": rnd.choice((16, 49, 81)), "fps": rnd.choice((8, 16, 24)),
             "width": 832, "height": 480, "scheduler": "unipc",
             "params": {"shift": 3.0, "lora": "pixel-art", "lora_scale": 0.8}}
        if i % 3 == 0:
            r["image"] = {"digest": "sha256:%064x" % rnd.getrandbits(256)}
        out.append(json.dumps(r))
    return out


def python_keys(line):
    req = keyref.Request(line.encode())
    keys = {}
    for layer in keyref.LAYER_ORDER:
        k = req.key(layer)  # None: uncacheable in that layer
        if k is not None:
            keys[layer] = k
    return keys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--per-process", type=int, default=300)
    ap.add_argument("--bin", default=os.environ.get("GENCACHE_BIN_DIR")
                    or os.path.join(HERE, "..", "build", "bin"))
    a = ap.parse_args()
    gencache = os.path.join(a.bin, "gencache")
    lines = make_requests(a.lines)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "requests.jsonl")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        size = os.path.getsize(path)

        best_c = None
        for _ in range(a.rounds):
            t0 = time.perf_counter()
            r = subprocess.run([gencache, "key", "--jsonl", path], capture_output=True)
            dt = time.perf_counter() - t0
            if r.returncode != 0:
                sys.exit("gencache key --jsonl failed: %s" % r.stderr.decode()[:500])
            best_c = dt if best_c is None else min(best_c, dt)
        out = r.stdout.decode().splitlines()

        best_py, py_keys = None, None
        for _ in range(max(1, a.rounds // 2)):
            t0 = time.perf_counter()
            keys = [python_keys(line) for line in lines]
            dt = time.perf_counter() - t0
            best_py = dt if best_py is None else min(best_py, dt)
            py_keys = keys

        n_pp = min(a.per_process, a.lines)
        t0 = time.perf_counter()
        for line in lines[:n_pp]:
            subprocess.run([gencache, "key", "-"], input=line.encode(), capture_output=True,
                           check=True)
        per_process = (time.perf_counter() - t0) / n_pp

    if len(out) != len(lines):
        sys.exit("gencache key --jsonl printed %d lines for %d" % (len(out), len(lines)))
    for i, (got, want) in enumerate(zip(out, py_keys)):
        if json.loads(got)["keys"] != want:
            sys.exit("line %d: keys differ from keyref.py:\n%s\n%s" % (i + 1, got, want))

    rate_c = a.lines / best_c
    rate_py = a.lines / best_py
    rate_pp = 1 / per_process
    print("%d requests (%.1f MB JSONL, %d layers each), best of %d runs; keys equal keyref.py's"
          % (a.lines, size / 1e6, len(keyref.LAYER_ORDER), a.rounds))
    print("%-44s %12s %10s" % ("", "requests/s", "vs C bulk"))
    print("%-44s %12.0f %10s" % ("gencache key --jsonl (one process, wall)", rate_c, "1.00"))
    print("%-44s %12.0f %9.1fx" % ("Python json+hashlib (keyref.py, in-process)", rate_py,
                                   rate_c / rate_py))
    print("%-44s %12.0f %9.0fx" % ("gencache key, one process per request", rate_pp,
                                   rate_c / rate_pp))


if __name__ == "__main__":
    main()

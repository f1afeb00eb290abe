#!/usr/bin/python3
"""trace_key_repeats.py: how often a real request's text-embedding key repeats an earlier one, per
prompt normalization mode, on the sd-discord-dream-2 trace (48,967 Stable Diffusion requests).
Prompts are normalized by the C tool in one batch per mode; the keys are the canonical v1 keys of
the text_embedding layer (model, prompt), and of result (the prompt plus seed, steps, guidance,
width, height) for comparison.

usage: bench/trace_key_repeats.py [--bin BUILD/bin] [--trace FILE]"""

import argparse
import hashlib
import json
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def enc_str(s):
    b = s.encode("utf-8")
    return b"s:%d:" % len(b) + b


def enc_num(text):
    if all(c not in text for c in ".eE"):
        return b"i:%d" % int(text)
    x = float(text)
    if x.is_integer() and abs(x) <= 2.0 ** 53:
        return b"i:%d" % int(x)
    return b"f:" + struct.pack(">d", x).hex().encode()


def key(layer, fields):
    doc = b"gencache-key-v1\n" + layer.encode() + b"\n"
    for name in sorted(fields):
        doc += name.encode() + b"=" + fields[name] + b"\n"
    return hashlib.sha256(doc).hexdigest()


def normalize(gencache, mode, prompts):
    data = "".join(json.dumps(p) + "\n" for p in prompts).encode()
    p = subprocess.run([gencache, "normalize", "--mode", mode, "--jsonl", "-"], input=data,
                       capture_output=True, check=True)
    return [json.loads(line) for line in p.stdout.decode().split("\n")[:-1]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("GENCACHE_BIN_DIR",
                                                    os.path.join(HERE, "..", "build", "bin")))
    ap.add_argument("--trace", default=os.path.join(
        os.environ.get("GENCACHE_SHARED_DIR", "/work/shared"), "traces", "sd-discord-dream-2.tsv"))
    args = ap.parse_args()
    gencache = os.path.join(args.bin, "gencache")
    with open(args.trace, encoding="utf-8") as f:
        next(f)
        rows = [line.rstrip("\n").split("\t") for line in f]
    prompts = [r[2] for r in rows]
    n = len(rows)
    model = enc_str("stable-diffusion-v1")
    print(f"{n} requests from {os.path.basename(args.trace)}")
    print(f"{'mode':<11} {'text_embedding repeats':>24} {'distinct keys':>14} {'result repeats':>16}")
    for mode in ("exact", "safe", "clip", "aggressive"):
        norms = normalize(gencache, mode, prompts)
        seen_t, seen_r = set(), set()
        rep_t = rep_r = 0
        for r, p in zip(rows, norms):
            kt = key("text_embedding", {"model": model, "prompt": enc_str(p)})
            fields = {"model": model, "prompt": enc_str(p)}
            for name, col in (("seed", 3), ("steps", 4), ("guidance", 5), ("width", 6),
                              ("height", 7)):
                if r[col] and r[col] != "nan":  # empty or nan: not given
                    fields[name] = enc_num(r[col])
            kr = key("result", fields)
            rep_t += kt in seen_t
            rep_r += kr in seen_r
            seen_t.add(kt)
            seen_r.add(kr)
        print(f"{mode:<11} {rep_t:>9} ({100.0 * rep_t / n:6.2f} %)    {len(seen_t):>14} "
              f"{rep_r:>6} ({100.0 * rep_r / n:5.2f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Approximate step reuse replayed on the real trace (../shared/traces/sd-discord-dream-2.tsv)
through the library (gencache.Trajectory, in process). No text encoder ships here, so each
prompt's embedding is a proxy: a hashed bag of words (lowercased, split on anything but letters
and digits; each distinct word adds +1 or -1, by a bit of its BLAKE2b hash, to one of DIM
coordinates chosen by the rest of the hash), whose cosine similarity tracks word overlap.

In trace order, each request first asks the index (exact search) for a latent of an earlier
request of the same model, size and step count (they form the index's "model"); the default
threshold table (0.70 -> 5, 0.80 -> 10, 0.85 -> 15, 0.90 -> 20, 0.95 -> 25 steps of 50) is
applied to each request's own schedule as fractions of 50 steps, so a match allowing K saves
K/50 of the request's generation time (gen_seconds). Then the request stores its own latents at
the checkpoints 5, 10, 15, 20, 25 (of 50) it computed itself (all of them, or those after the
step it resumed from). Printed: requests served, GPU-seconds saved against the trace's total,
by step, and the median lookup time.

    /usr/bin/python3 bench/trace_trajectory.py [LIMIT] [DIM]   (PYTHONPATH=bindings/python)
"""
import hashlib
import os
import re
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from trace_any_seed import rows  # noqa: E402

import gencache  # noqa: E402

WORD = re.compile(r"[^\W_]+")
CHECKPOINTS = (5, 10, 15, 20, 25)


def embed(prompt, dim):
    v = np.zeros(dim, dtype=np.float32)
    for w in set(WORD.findall(prompt.lower())):
        h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
        v[(h >> 1) % dim] += 1.0 if h & 1 else -1.0
    return v


def main():
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    dim = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    cache = gencache.Cache(mem_max_bytes=4 << 30, mem_max_entries=1 << 22)
    latent = np.zeros(4, dtype=np.float16)  # the bytes do not matter here
    n = served = skipped_empty = 0
    total_s = saved_s = 0.0
    by_step = {}
    times = []
    t0 = time.monotonic()
    for prompt, _seed, steps, cfg, w, h, gen_s in rows(limit):
        n += 1
        total_s += gen_s
        e = embed(prompt, dim)
        if not e.any():  # no words at all: no direction to compare
            skipped_empty += 1
            continue
        model = "sd@%sx%s/%s" % (w or 512, h or 512, steps or 50)
        traj = gencache.Trajectory(cache, {"model": model, "prompt": prompt}, e,
                                   checkpoints=CHECKPOINTS)
        a = time.perf_counter()
        found = traj.resume()
        times.append(time.perf_counter() - a)
        start = 0
        if found is not None:
            served += 1
            start = found.step
            saved_s += gen_s * start / 50.0
            by_step[start] = by_step.get(start, 0) + 1
        for s in CHECKPOINTS:
            if s > start:
                traj.checkpoint(s, latent)
    el = time.monotonic() - t0
    times.sort()
    print("requests replayed: %d (%.0f s); proxy embedding: hashed bag of words, %d-d" % (
        n, el, dim))
    print("requests without a word (not looked up): %d" % skipped_empty)
    print("served from an earlier request's latent: %6d = %5.2f%%" % (served, 100.0 * served / n))
    print("by step skipped (of 50): %s" % ", ".join(
        "%d: %d" % (k, by_step[k]) for k in sorted(by_step)))
    print("GPU-seconds saved: %.0f of %.0f = %.2f%%" % (saved_s, total_s,
                                                        100.0 * saved_s / total_s))
    print("lookup time (Python call included): median %.2f ms, p99 %.2f ms; vectors held at "
          "the end: %d" % (1000 * times[len(times) // 2], 1000 * times[int(0.99 * len(times))],
                           gencache.trajectory_stats(cache)["vectors"]))
    cache.close()


if __name__ == "__main__":
    main()

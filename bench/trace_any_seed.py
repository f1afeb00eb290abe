#!/usr/bin/env python3
"""Seed-free result reuse replayed on the real trace (../shared/traces/sd-discord-dream-2.tsv),
through a real gencached: every request, in order, is looked up in the result layer by its exact
key (POST /v1/lookup with its seed) and as a seed-free request (no seed, "cache": "any_seed");
when its exact key misses it is "generated" and stored with its seed (POST /v1/store). The
daemon's memory holds the whole trace, so this is the infinite-cache case.

Printed: requests served by the exact key, requests the any_seed path serves, and the ceiling
computed offline from the trace (requests whose seed-free recipe - prompt after the safe
normalization, steps, cfg, width, height - appeared earlier), with the share of the bot's own
generation seconds (extra.tsv: gen_seconds) each would save. The served count must equal the
ceiling: a difference is a request the cache could have served and did not.

    /usr/bin/python3 bench/trace_any_seed.py [LIMIT]   (PYTHONPATH=bindings/python;
                                                         GENCACHE_BIN_DIR default build/bin)
"""
import json
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
os.environ.setdefault("GENCACHE_BIN_DIR", os.path.join(HERE, "..", "build", "bin"))
from gencached_fixture import Daemon  # noqa: E402

TRACES = os.path.join(HERE, "..", "..", "shared", "traces")
if not os.path.isdir(TRACES):
    TRACES = "/work/shared/traces"
SAFE = re.compile(r"^[\x20-\x25\x27-\x7e\t\n\r]*$")


def safe_norm(p):
    """DESIGN.md section 2, mode safe: printable ASCII without '&' has its white space runs
    collapsed and its ends trimmed; anything else is left as it is."""
    return " ".join(p.split()) if SAFE.match(p) else p


def rows(limit):
    with open(os.path.join(TRACES, "sd-discord-dream-2.tsv"), encoding="utf-8") as f, \
         open(os.path.join(TRACES, "sd-discord-dream-2.extra.tsv"), encoding="utf-8") as g:
        next(f)
        next(g)
        for i, (line, extra) in enumerate(zip(f, g)):
            if limit and i >= limit:
                break
            _, _, prompt, seed, steps, cfg, w, h = line.rstrip("\n").split("\t")
            gen = extra.rstrip("\n").split("\t")[4]
            # 20 rows lack a seed; a few have cfg "nan", which JSON cannot carry: left out.
            num = lambda x, t: t(x) if x and x.lower() != "nan" else None  # noqa: E731
            yield (prompt, num(seed, int), num(steps, int), num(cfg, float), num(w, int),
                   num(h, int), float(gen or 0))


def main():
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    d = Daemon("--max-memory", "2G")
    conn = [d.connect(timeout=60)]
    odd = {}

    def call(path, body, headers=None):
        """One request on the kept-alive connection (a new one after the daemon closed it)."""
        import http.client
        for attempt in (0, 1):
            try:
                st, hdr, data = d.request("POST", path, body, headers, conn=conn[0])
                break
            except (http.client.RemoteDisconnected, ConnectionError, BrokenPipeError):
                conn[0].close()
                conn[0] = d.connect(timeout=60)
                if attempt:
                    raise
        if st not in (200, 201, 404):
            odd[(st, data[:120])] = odd.get((st, data[:120]), 0) + 1
        return st, hdr, data

    seen_recipe, seen_exact = set(), set()
    n = exact = served = ceiling = exact_ceiling = 0
    sec_total = sec_served = sec_exact = 0.0
    t0 = time.monotonic()
    try:
        for prompt, seed, steps, cfg, w, h, gen in rows(limit):
            n += 1
            sec_total += gen
            recipe = (safe_norm(prompt), steps, cfg, w, h)
            ceiling += recipe in seen_recipe
            exact_ceiling += seed is not None and (recipe, seed) in seen_exact
            if seed is not None:
                seen_recipe.add(recipe)
                seen_exact.add((recipe, seed))
            req = {"model": "sd-v1", "prompt": prompt, "steps": steps, "guidance": cfg,
                   "width": w, "height": h}
            seeded = dict(req, seed=seed)
            hit = False
            if seed is not None:  # a seedless row has no exact key: it is never stored
                st, _, _ = call("/v1/lookup", json.dumps(
                    {"layer": "result", "request": seeded}).encode())
                hit = st == 200
            exact += hit
            sec_exact += gen if hit else 0.0
            st, hdr, _ = call("/v1/lookup", json.dumps(
                {"layer": "result", "request": dict(req, cache="any_seed")}).encode())
            if st == 200:
                served += 1
                sec_served += gen
                assert hdr["x-gencache-match"].startswith(("any_seed", "exact")), hdr
            if not hit and seed is not None:
                call("/v1/store", b"video", {
                    "X-Gencache-Layer": "result", "X-Gencache-Request": json.dumps(seeded),
                    "X-Gencache-Cost-Ms": str(int(gen * 1000))})
    finally:
        conn[0].close()
        d.stop()
    for (st, data), k in sorted(odd.items(), key=lambda x: -x[1]):
        print("HTTP %d x%d: %s" % (st, k, bytes(data).decode("utf-8", "replace")))
    el = time.monotonic() - t0
    print("requests replayed: %d (%.0f s, %.0f requests/s through 2-3 HTTP calls each)" % (
        n, el, n / el))
    print("exact key (seeded):       %6d served = %5.2f%% of requests, %5.2f%% of generation "
          "seconds (offline ceiling %d)" % (exact, 100.0 * exact / n, 100.0 * sec_exact / sec_total,
                                            exact_ceiling))
    print("any_seed (seed-free):     %6d served = %5.2f%% of requests, %5.2f%% of generation "
          "seconds" % (served, 100.0 * served / n, 100.0 * sec_served / sec_total))
    print("infinite-cache ceiling:   %6d = %5.2f%% of requests (seed-free recipe seen before)" % (
        ceiling, 100.0 * ceiling / n))
    print("served / ceiling: %.4f" % (served / ceiling if ceiling else 1.0))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Near-duplicate prompt reuse of text embeddings replayed on the real trace
(../shared/traces/sd-discord-dream-2.tsv) through a real gencached: every request's
text_embedding (model, prompt) is looked up with "cache": "similar_prompt" (POST /v1/lookup), and
stored when nothing serves it (POST /v1/store). Printed: lookups served by the exact key (the
model's safe normalization) and, beyond it, by a similar_prompt match (the same prompt after the
aggressive normalization, radius 0), against the offline count of requests whose aggressively
normalized prompt was seen before (gencache normalize --mode aggressive through the library).

    /usr/bin/python3 bench/trace_similar_prompt.py [LIMIT]   (PYTHONPATH=bindings/python)
"""
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
sys.path.insert(0, HERE)
os.environ.setdefault("GENCACHE_BIN_DIR", os.path.join(HERE, "..", "build", "bin"))
from gencached_fixture import Daemon  # noqa: E402
from trace_any_seed import rows  # noqa: E402

import gencache  # noqa: E402


def main():
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    d = Daemon("--max-memory", "2G")
    conn = d.connect(timeout=60)
    seen = set()
    n = exact = similar = ceiling = 0
    t0 = time.monotonic()
    try:
        for prompt, *_ in rows(limit):
            n += 1
            try:
                norm = gencache.normalize(prompt, mode="aggressive")
            except Exception:  # noqa: BLE001 (a prompt the normalizer refuses)
                norm = None
            ceiling += norm is not None and norm in seen
            if norm is not None:
                seen.add(norm)
            req = {"model": "sd-v1", "prompt": prompt}
            st, h, _ = d.request("POST", "/v1/lookup", json.dumps(
                {"layer": "text_embedding", "request": dict(req, cache="similar_prompt")}).encode(),
                conn=conn)
            if st == 200:
                kind = h["x-gencache-match"].split(";")[0]
                exact += kind == "exact"
                similar += kind == "similar_prompt"
                continue
            st, _, body = d.request("POST", "/v1/store", b"embedding", {
                "X-Gencache-Layer": "text_embedding", "X-Gencache-Request": json.dumps(req)},
                conn=conn)
            assert st == 201, body
    finally:
        conn.close()
        d.stop()
    el = time.monotonic() - t0
    print("requests replayed: %d (%.0f s)" % (n, el))
    print("text_embedding served by the exact key (safe mode):  %6d = %5.2f%%" % (
        exact, 100.0 * exact / n))
    print("served beyond it by similar_prompt (radius 0):        %6d = %5.2f%%" % (
        similar, 100.0 * similar / n))
    print("together:                                             %6d = %5.2f%%" % (
        exact + similar, 100.0 * (exact + similar) / n))
    print("offline: aggressively normalized prompt seen before:  %6d = %5.2f%%" % (
        ceiling, 100.0 * ceiling / n))


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""The memory tier's miss-ratio curve through the daemon: with every key sampled
(tiers.memory.mrc_sample_rate: 1), a cyclic access pattern that a tier twice the size would serve
shows in GET /v1/stats (tiers.mem.mrc: scales 0.5, 2 and 4, each with hit_ratio and
gpu_seconds_saved), in /metrics (gencache_mrc_hit_ratio and gencache_mrc_gpu_seconds_saved,
passing promtool) with the same values, and in `gencache stats`; a config without the curve
shows none."""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import GENCACHE, Daemon, Runner, check, check_eq  # noqa: E402
from test_metrics import parse, promtool, scrape, val  # noqa: E402

VALUE = b"v" * 4000


def key(i):
    return "/v1/entries/image_latent/%064x" % i


def config(tmp, rate, policy):
    path = os.path.join(tmp, "gencache-%s.yaml" % policy)
    with open(path, "w") as f:
        f.write("tiers:\n  memory:\n    max_bytes: 64K\n    policy: %s\n"
                "    mrc_sample_rate: %s\n  disk:\n    enabled: false\n" % (policy, rate))
    return path


def cycle(d, n_keys, rounds):
    """Each round gets every key in order and puts the ones missed (cost 100 ms each)."""
    for _ in range(rounds):
        for i in range(n_keys):
            st, _, _ = d.request("GET", key(i))
            if st == 404:
                st, _, _ = d.request("PUT", key(i), body=VALUE,
                                     headers={"X-Gencache-Cost-Ms": "100"})
                check(st in (200, 201, 204), "put status %d" % st)


def t_curve(tmp):
    for policy in ("lru", "gdsf", "s3fifo"):
        d = Daemon("--config", config(tmp, "1", policy))
        try:
            # 24 values of ~4 KiB cycle through a 64 KiB tier: LRU-like policies miss every
            # time; a tier of twice the size holds them all.
            cycle(d, 24, 4)
            st, _, body = d.request("GET", "/v1/stats")
            check_eq(st, 200)
            mrc = json.loads(body)["tiers"]["mem"]["mrc"]
            check_eq([p["scale"] for p in mrc], [0.5, 2, 4], "scales")
            for p in mrc:
                check(0.0 <= p["hit_ratio"] <= 1.0, "%s: ratio %r" % (policy, p))
                check(p["gpu_seconds_saved"] >= 0, "%s: saved %r" % (policy, p))
            check(mrc[1]["hit_ratio"] >= 0.7, "%s: 2x holds the cycle: %r" % (policy, mrc))
            check_eq(mrc[1]["hit_ratio"], mrc[2]["hit_ratio"], "4x no better than 2x")
            check(abs(mrc[1]["gpu_seconds_saved"] - 72 * 0.1) < 1e-6,
                  "%s: 3 rounds x 24 hits x 0.1 s: %r" % (policy, mrc[1]))
            check(mrc[0]["hit_ratio"] <= mrc[1]["hit_ratio"], "%s: monotone" % policy)
            text = scrape(d)
            promtool(text)
            samples, types = parse(text)
            check_eq(types.get("gencache_mrc_hit_ratio"), "gauge")
            check_eq(types.get("gencache_mrc_gpu_seconds_saved"), "gauge")
            for p in mrc:
                scale = "%g" % p["scale"]
                check(abs(val(samples, "gencache_mrc_hit_ratio", tier="mem", scale=scale) -
                          p["hit_ratio"]) < 1e-5, "metric = JSON at %s" % scale)
                check(abs(val(samples, "gencache_mrc_gpu_seconds_saved", tier="mem",
                              scale=scale) - p["gpu_seconds_saved"]) < 1e-3, "saved metric")
            r = subprocess.run([GENCACHE, "stats", "--url", d.url], capture_output=True,
                               text=True, timeout=30)
            check_eq(r.returncode, 0, r.stderr)
            check(re.search(r"mem at other sizes \(estimated\): 0\.5x [\d.]+% hits, \d+ s saved; "
                            r"2x [\d.]+% hits", r.stdout), r.stdout)
        finally:
            check_eq(d.stop(), 0, "exit status")


def t_no_curve(tmp):
    d = Daemon("--config", config(tmp, "0", "lru"))
    try:
        cycle(d, 4, 2)
        st, _, body = d.request("GET", "/v1/stats")
        check("mrc" not in json.loads(body)["tiers"]["mem"], "no curve at rate 0")
        check("gencache_mrc_hit_ratio" not in scrape(d), "no curve metric at rate 0")
    finally:
        check_eq(d.stop(), 0, "exit status")


def main():
    r = Runner()
    with tempfile.TemporaryDirectory() as tmp:
        r.run("curve", t_curve, tmp)
        r.run("no_curve", t_no_curve, tmp)
    r.finish()


if __name__ == "__main__":
    main()

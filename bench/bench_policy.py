#!/usr/bin/python3
"""Eviction policies on the real request log (../shared/traces), through `gencache replay`:

1. GPU-seconds saved and hit ratio of LRU, GDSF and S3-FIFO side by side, for result (seed-free
   recipe: model, prompt, steps, guidance, width, height), text_embedding and condition at 0.1%,
   1% and 10% of each layer's working set, with each policy's ratio to LRU and to the best of
   LRU and S3-FIFO.
   The same with the three layers sharing one tier (--mixed), where cost per byte differs
   between layers.
2. Replay speed: requests/s of the text_embedding replay loop (the CLI's own clock around the
   gets and puts, keys precomputed), median of 3 runs per policy, against the 200k/s goal.
3. The library's miss-ratio curve at 2x and 4x, estimated during the run at capacity C, against
   the replay measured at 2C and 4C: relative error of hit ratio and of GPU-seconds saved (the
   library's own count, stored costs over hits), at sampling rates 1/16 (default) and 1/4.

Usage: bench/bench_policy.py [BUILD_DIR] [TRACE.tsv]   (pinned to CPU 0 with taskset)
"""
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "build")
TRACE = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
    HERE, "..", "..", "shared", "traces", "sd-discord-dream-2.tsv")
GENCACHE = os.path.join(BUILD, "bin", "gencache")
SEED_FREE = "result=model,prompt,steps,guidance,width,height"
POLICIES = ("lru", "gdsf", "s3fifo")


def replay(*args):
    cmd = ["taskset", "-c", "0", GENCACHE, "replay", "--json", "--no-progress",
           "--layer-fields", SEED_FREE, *args, TRACE]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def side_by_side():
    print("== GPU-seconds saved (hit ratio) by policy; ratios to LRU and to max(LRU, S3-FIFO)")
    print("%-15s %6s %20s %20s %20s %9s %9s %9s" % (
        "layer", "size", "lru", "gdsf", "s3fifo", "gdsf/lru", "gdsf/best", "s3/lru"))
    for layer in ("result", "text_embedding", "condition"):
        rows = replay("--layers", layer, "--capacity", "0.1%,1%,10%")
        by = {(r["policy"], round(r["capacity_pct"], 4)): r for r in rows}
        for pct in (0.1, 1.0, 10.0):
            g = {p: by[(p, pct)] for p in POLICIES}
            s = {p: g[p]["gpu_seconds_saved"] for p in POLICIES}
            best = max(s["lru"], s["s3fifo"])
            print("%-15s %5g%% %20s %20s %20s %9.3f %9.3f %9.3f" % (
                layer, pct, *("%.1f (%.4f)" % (s[p], g[p]["hit_ratio"]) for p in POLICIES),
                s["gdsf"] / s["lru"], s["gdsf"] / best, s["s3fifo"] / s["lru"]))


def mixed():
    print("\n== the three layers through one tier (--mixed), GPU-seconds saved (hit ratio)")
    rows = [r for r in replay("--mixed", "--capacity", "0.1%,1%,10%") if r["layer"] == "all"]
    by = {(r["policy"], round(r["capacity_pct"], 4)): r for r in rows}
    for pct in (0.1, 1.0, 10.0):
        s = {p: by[(p, pct)]["gpu_seconds_saved"] for p in POLICIES}
        print("%-15s %5g%% %20s %20s %20s %9.3f %9.3f %9.3f" % (
            "all (mixed)", pct,
            *("%.1f (%.4f)" % (s[p], by[(p, pct)]["hit_ratio"]) for p in POLICIES),
            s["gdsf"] / s["lru"], s["gdsf"] / max(s["lru"], s["s3fifo"]), s["s3fifo"] / s["lru"]))


def speed():
    print("\n== replay speed, text_embedding at 1%, median of 3 runs (requests/s, one core)")
    for p in POLICIES:
        rates = [replay("--layers", "text_embedding", "--capacity", "1%", "--policy", p)[0]
                 ["requests_per_second"] for _ in range(3)]
        m = statistics.median(rates)
        print("%-7s %9.0f requests/s  (%.2fx the 200k/s goal)" % (p, m, m / 200000))


def mrc():
    print("\n== miss-ratio curve: estimate at capacity C vs replay measured at 2C and 4C")
    print("%-15s %-7s %5s %7s %5s %8s %8s %7s %10s %10s %7s" % (
        "layer", "policy", "C", "rate", "x", "hr est", "hr meas", "err", "gpu est", "gpu meas",
        "err"))
    for layer in ("result", "text_embedding", "condition"):
        for policy in ("lru", "gdsf"):
            for rate in (1 / 16, 1 / 4):
                rows = replay("--layers", layer, "--policy", policy, "--capacity", "1%,2%,4%",
                              "--mrc", str(rate))
                base = rows[0]
                for i, x in ((1, 2), (2, 4)):
                    est, meas = base["mrc"][i], rows[i]
                    print("%-15s %-7s %5s %7.4f %4dx %8.4f %8.4f %+6.1f%% %10.1f %10.1f %+6.1f%%" % (
                        layer, policy, "1%", rate, x, est["hit_ratio"], meas["hit_ratio"],
                        100 * (est["hit_ratio"] / meas["hit_ratio"] - 1),
                        est["gpu_seconds_saved"], meas["gpu_seconds_saved_stored"],
                        100 * (est["gpu_seconds_saved"] / meas["gpu_seconds_saved_stored"] - 1)))


def main():
    print("trace %s; gencache %s; pinned to CPU 0 (shared machine: timings are noisy)" % (
        TRACE, GENCACHE))
    side_by_side()
    mixed()
    speed()
    mrc()


if __name__ == "__main__":
    main()

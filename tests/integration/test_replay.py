#!/usr/bin/python3
"""`gencache replay` on a small committed trace (tests/vectors/replay_small.tsv) whose answers
were worked out by hand for a text_embedding tier of three 1000-byte entries: LRU hits 3 times
and saves 6 GPU-seconds, GDSF keeps the costly prompt and hits 4 times for 16, S3-FIFO sends the
one-hit wonder out of its small queue and hits 3 times for 6. The keys are the library's (a
prompt differing only in white space is the same embedding), sizes follow the size model, and
bad input of every kind is refused with a message and exit status 1 or 2."""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import GENCACHE, Runner, check, check_eq  # noqa: E402

SRC = os.environ.get("GENCACHE_SOURCE_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..")
TRACE = os.path.join(SRC, "tests", "vectors", "replay_small.tsv")
FIELDS = ("layer", "policy", "capacity_bytes", "requests", "hits", "hit_ratio", "byte_hit_ratio",
          "gpu_seconds_saved", "gpu_seconds_total")


def replay(*args, trace=TRACE):
    return subprocess.run([GENCACHE, "replay", *args, trace], capture_output=True, timeout=120)


def lines(r):
    check_eq(r.returncode, 0, "exit status (stderr %r)" % r.stderr)
    return [json.loads(x) for x in r.stdout.decode().splitlines()]


def t_known_answers():
    r = replay("--layers", "text_embedding", "--capacity", "3000,100%", "--size",
               "text_embedding=1000", "--scale", "1", "--cost-share", "text_embedding=1",
               "--json")
    runs = {(o["policy"], o["capacity_bytes"]): o for o in lines(r)}
    check_eq(len(runs), 6, "three policies, two capacities")
    for o in runs.values():
        for f in FIELDS:
            check(f in o, "field %s in %r" % (f, o))
        check_eq((o["layer"], o["requests"], o["gpu_seconds_total"]), ("text_embedding", 10, 32.0))
        check_eq(o["working_set_bytes"], 4000, "four distinct prompts after normalization")
    want = {"lru": (3, 6.0), "gdsf": (4, 16.0), "s3fifo": (3, 6.0)}
    for policy, (hits, saved) in want.items():
        o = runs[(policy, 3000)]
        check_eq((o["hits"], o["gpu_seconds_saved"]), (hits, saved), policy + " at 3000 bytes")
        check_eq(o["hit_ratio"], hits / 10)
        check_eq(o["byte_hit_ratio"], hits / 10, "equal sizes: byte hit ratio = hit ratio")
        o = runs[(policy, 4000)]
        check_eq((o["hits"], o["gpu_seconds_saved"]), (6, 18.0), policy + ": all fits")


def t_result_layer_and_recipe():
    # Default recipe: seeds differ, only the last row repeats the first (seed 1).
    o = lines(replay("--layers", "result", "--policy", "lru", "--capacity", "100%", "--json"))[0]
    check_eq((o["requests"], o["hits"]), (10, 1))
    check_eq(o["working_set_bytes"], 9 * 512 * 512 * 3, "w*h*3*n_images per distinct result")
    check_eq(o["gpu_seconds_saved"], 2.0, "the repeat's own gen_seconds, share 1")
    # Seed-free: the prompt decides.
    o = lines(replay("--layers", "result", "--policy", "lru", "--capacity", "100%",
                     "--layer-fields", "result=model,prompt,steps,guidance,width,height",
                     "--json"))[0]
    check_eq(o["hits"], 6)
    # A scaled replay gives the same answers.
    a = lines(replay("--layers", "text_embedding", "--capacity", "50%", "--json"))
    b = lines(replay("--layers", "text_embedding", "--capacity", "50%", "--scale", "1",
                     "--json"))
    check_eq([(x["policy"], x["hits"]) for x in a], [(x["policy"], x["hits"]) for x in b])
    check(a[0]["scale"] > 1, "auto scale above 1 for embeddings: %r" % a[0])
    # Text output: a header and one line per run.
    r = replay("--layers", "text_embedding", "--no-progress")
    check_eq(r.returncode, 0)
    out = r.stdout.decode().splitlines()
    check_eq(len(out), 1 + 9, "header + 3 policies x 3 capacities: %r" % out)
    check(out[0].split()[:3] == ["layer", "policy", "capacity"], out[0])


def t_mixed_and_mrc():
    rows = lines(replay("--layers", "text_embedding,result", "--policy", "lru", "--capacity",
                        "100%", "--mixed", "--mrc", "1", "--scale", "1", "--json"))
    check_eq([r["layer"] for r in rows], ["text_embedding", "result", "all"])
    total = rows[2]
    check(all(r["mixed"] for r in rows), "rows of a mixed run say so")
    check_eq(total["working_set_bytes"], 4 * 118272 + 9 * 512 * 512 * 3)
    for f in ("requests", "hits"):
        check_eq(total[f], rows[0][f] + rows[1][f], f)
    check_eq((rows[0]["hits"], rows[1]["hits"]), (6, 1), "all fits: every repeat hits")
    # Every key sampled: the estimate for twice the size is what the run measured (all fits).
    check_eq([p["scale"] for p in total["mrc"]], [0.5, 2, 4])
    check_eq(total["mrc"][1]["hit_ratio"], total["hit_ratio"])
    r = replay("--mrc", "0")
    check_eq(r.returncode, 2, "--mrc 0")


def t_bad_input():
    for args, code, msg in [
        (("--policy", "mru"), 2, b"unknown policy"),
        (("--capacity", "0%"), 2, b"bad capacity"),
        (("--capacity", "12Q"), 2, b"bad capacity"),
        (("--layer-fields", "result"), 2, b"--layer-fields"),
        (("--cost-share", "nolayer=1"), 2, b"not replayed"),
        (("--cost-share", "result=-1"), 2, b"--cost-share"),
        (("--layers", "nosuch"), 1, b"unknown layer"),
        (("--layer-fields", "result=a=b"), 1, b"--layer-fields result"),
    ]:
        r = replay(*args)
        check_eq(r.returncode, code, "%r: %r" % (args, r.stderr))
        check(msg in r.stderr, "%r: message %r" % (args, r.stderr))
    # A layer no row has a key in (no image in the log): reported, the others still replayed.
    r = replay("--layers", "image_latent,text_embedding", "--policy", "lru", "--json")
    check_eq(r.returncode, 1)
    check(b"no request of the trace has a key in layer image_latent" in r.stderr, r.stderr)
    check_eq([json.loads(x)["layer"] for x in r.stdout.decode().splitlines()],
             ["text_embedding"] * 3)
    r = subprocess.run([GENCACHE, "replay"], capture_output=True)
    check_eq(r.returncode, 2, "no trace")
    r = replay(trace="/nonexistent/trace.tsv")
    check_eq(r.returncode, 1)
    check(b"No such file" in r.stderr, r.stderr)
    with tempfile.TemporaryDirectory() as d:
        bad = os.path.join(d, "bad.tsv")
        with open(bad, "w") as f:
            f.write("prompt\tseed\nok\t1\nshort\n")
        r = replay(trace=bad)
        check_eq(r.returncode, 1)
        check(b"bad.tsv:3: 1 columns, the header has 2" in r.stderr, r.stderr)
        with open(bad, "w") as f:
            f.write("prompt\tsteps\na\t-3\n")
        r = replay(trace=bad)
        check_eq(r.returncode, 1, "a request the library refuses")
        check(b"row 2" in r.stderr and b"steps" in r.stderr, r.stderr)
        # A companion file must be row-aligned.
        main = os.path.join(d, "t.tsv")
        with open(main, "w") as f:
            f.write("prompt\na\nb\n")
        with open(os.path.join(d, "t.extra.tsv"), "w") as f:
            f.write("gen_seconds\n1.0\n")
        r = replay(trace=main)
        check_eq(r.returncode, 1)
        check(b"row-aligned" in r.stderr, r.stderr)
        r = replay("--extra", "", "--layers", "text_embedding", "--json", trace=main)
        check_eq(len(lines(r)), 9, "--extra '' ignores the companion")


def main():
    runner = Runner()
    for name in ("known_answers", "result_layer_and_recipe", "mixed_and_mrc", "bad_input"):
        runner.run(name, globals()["t_" + name])
    runner.finish()


if __name__ == "__main__":
    main()

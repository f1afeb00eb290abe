#!/usr/bin/env python3
"""Recall and false matches of perceptual lookups, through a real gencached (POST /v1/store,
POST /v1/lookup) with image_match perceptual on image_latent and the default guard.

Corpus: the real PNG and JPEG files the tests use (Debian's imagemagick-6-doc), except those too
small to halve (a side under 32 pixels) or featureless (fewer than min_detail = 8 pHash bits
set: the guard refuses them by design). Variants made with Pillow from each: JPEG quality 70, a
50% downscale (Lanczos), +10% brightness. Families of derived files (rose*, logo*, bluebells*,
...: the name up to its first '-', '_' or '.'; reconstruct.jpg is the rose picture) are never
compared with each other.

Recall: every original is stored (model "all"), every variant looked up; a hit must serve its own
original's key, or that of another stored file of the same picture (wizard.png for a variant of
wizard.jpg: counted apart, as "same picture"); a hit on another family is a wrong match. False matches: the families are split in two halves, each stored under its own
model; every original and variant of one half is looked up under the other half's model, where
only distinct images are stored: any hit is a false match. Prints both, per variant kind.

    /usr/bin/python3 bench/reuse_recall.py [PHASH_RADIUS]   (default: the guard's default, 8;
        GENCACHE_BIN_DIR: where gencached is, default build/bin; PYTHONPATH=bindings/python)
"""
import glob
import json
import os
import re
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
os.environ.setdefault("GENCACHE_BIN_DIR", os.path.join(HERE, "..", "build", "bin"))
from gencached_fixture import Daemon  # noqa: E402

import gencache  # noqa: E402
from PIL import Image, ImageEnhance  # noqa: E402

IM = "/usr/share/doc/imagemagick-6-common/html/images/"
KINDS = ("q70", "half", "bright")


def sig(path):
    with Image.open(path) as im:
        w, h = im.size
    return {"digest": gencache.image_digest(path), "phash": gencache.image_hash(path, "phash"),
            "dhash": gencache.image_hash(path, "dhash"), "width": w, "height": h}


def make_variants(path, tmp):
    base = os.path.join(tmp, os.path.basename(path).rsplit(".", 1)[0])
    img = Image.open(path).convert("RGB")
    out = {"q70": base + "-q70.jpg", "half": base + "-half.png", "bright": base + "-bright.png"}
    img.save(out["q70"], quality=70)
    img.resize((img.width // 2, img.height // 2), Image.LANCZOS).save(out["half"])
    ImageEnhance.Brightness(img).enhance(1.1).save(out["bright"])
    return out


def main():
    tmp = tempfile.mkdtemp(prefix="gencache-recall-")
    conf = os.path.join(tmp, "gencache.yaml")
    with open(conf, "w") as f:
        f.write("layers:\n  image_latent:\n    image_match: perceptual\n")
        if len(sys.argv) > 1:
            f.write("perceptual:\n  phash_radius: %d\n" % int(sys.argv[1]))
    files = sorted(glob.glob(IM + "*.png") + glob.glob(IM + "*.jpg"))
    corpus, skipped = [], []
    for p in files:
        s = sig(p)
        if min(s["width"], s["height"]) < 32 or bin(int(s["phash"], 16)).count("1") < 8:
            skipped.append(os.path.basename(p))
            continue
        corpus.append((p, s))
    alias = {"reconstruct": "rose"}
    family = {p: re.split(r"[-_.]", os.path.basename(p))[0] for p, _ in corpus}
    family = {p: alias.get(f, f) for p, f in family.items()}
    by_key = {}
    fams = sorted(set(family.values()))
    half_a = set(fams[0::2])
    d = Daemon("--config", conf)

    def store(model, s, value):
        req = {"model": model, "image": s}
        st, _, body = d.request("POST", "/v1/store", value, {
            "X-Gencache-Layer": "image_latent", "X-Gencache-Request": json.dumps(req)})
        assert st == 201, body
        return json.loads(body)["key"]

    def lookup(model, s):
        body = json.dumps({"layer": "image_latent", "request": {"model": model, "image": s}})
        st, h, _ = d.request("POST", "/v1/lookup", body.encode(),
                             {"Content-Type": "application/json"})
        return (h.get("x-gencache-key"), h.get("x-gencache-match", "")) if st == 200 else None

    try:
        keys = {}
        for p, s in corpus:
            keys[p] = store("all", s, p.encode())
            by_key[keys[p]] = p
            store("A" if family[p] in half_a else "B", s, p.encode())
        variants = {p: {k: sig(v) for k, v in make_variants(p, tmp).items()} for p, _ in corpus}
        hits = {k: 0 for k in KINDS}
        same = {k: 0 for k in KINDS}
        wrong = 0
        distances = []
        for p, _ in corpus:
            for k in KINDS:
                r = lookup("all", variants[p][k])
                got = by_key.get(r[0]) if r else None
                if got == p:
                    hits[k] += 1
                elif got and family[got] == family[p]:
                    same[k] += 1
                    print("  same picture: %s %s -> %s" % (os.path.basename(p), k,
                                                          os.path.basename(got)))
                elif r:
                    wrong += 1
                    print("  WRONG match: %s %s -> %s" % (os.path.basename(p), k, r))
                else:
                    print("  miss: %s %s" % (os.path.basename(p), k))
                if got:
                    distances.append(int(r[1].split("distance=")[1].split(";")[0]))
        false_pairs, false_hits = 0, 0
        for p, s in corpus:
            other = "B" if family[p] in half_a else "A"
            stored_other = sum(1 for q, _ in corpus if (family[q] in half_a) == (other == "A"))
            for q in [s] + [variants[p][k] for k in KINDS]:
                false_pairs += stored_other
                r = lookup(other, q)
                if r:
                    false_hits += 1
                    print("  false match: %s -> %s" % (os.path.basename(p), r))
        n = len(corpus)
        total = sum(hits.values())
        print("guard: pHash radius %s" % (sys.argv[1] if len(sys.argv) > 1 else "8 (default)"))
        print("corpus: %d real images in %d families (%d skipped: %s)" % (
            n, len(fams), len(skipped), ", ".join(skipped)))
        total_same = sum(same.values())
        for k in KINDS:
            print("recall %-6s %d/%d = %.1f%% (own original %d, same picture %d)" % (
                k, hits[k] + same[k], n, 100.0 * (hits[k] + same[k]) / n, hits[k], same[k]))
        print("recall all    %d/%d = %.1f%% (own original %d, same picture %d; median pHash "
              "distance of the hits: %d)" % (total + total_same, 3 * n,
                                             100.0 * (total + total_same) / (3 * n), total,
                                             total_same, sorted(distances)[len(distances) // 2]))
        print("wrong image served for a variant: %d" % wrong)
        print("false matches between distinct images: %d of %d lookups (%d image pairs)" % (
            false_hits, 4 * n, false_pairs))
    finally:
        d.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

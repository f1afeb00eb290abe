#!/usr/bin/env python3
"""Recall and false matches of perceptual lookups, through a real gencached (POST /v1/store,
POST /v1/lookup) with image_match perceptual on image_latent, and the distance distributions
that the guard's defaults are chosen from.

Corpora, all real files that Debian packages install; each is cut to files whose sides are 32
pixels or more and whose pHash sets at least min_detail = 8 bits (the guard refuses featureless
images by design), and to one file per pixel digest:
  goal     the PNG and JPEG files of imagemagick-6-doc's images/ that the tests use, as they are
           (the corpus of the goal: >= 95% recall per variant kind, 0 false matches);
  more     further pictures: imagemagick-6-doc's patterns/, www/ and API pages, the images of
           other packages' documentation under /usr/share/doc, the GNOME wallpapers
           (gnome-backgrounds), each flattened onto white where it has transparency, as a video
           model receives it;
  icons    adwaita-icon-theme, the largest size of each name, flattened onto white: many are
           the same glyph with one small mark changed (battery levels, volume steps), which a
           perceptual hash is built to confuse; reported apart, as a stress test of the guard.
Variants made with Pillow from each file: JPEG quality 70, a 50% downscale (Lanczos), +10%
brightness. Families of derived files (rose*, logo*, bluebells*, ...: the name up to its first
'-', '_' or '.'; reconstruct.jpg is the rose picture; a wallpaper's light and dark versions; an
icon's symbolic and mirrored versions) are never compared with each other.

Recall: each corpus's originals are stored (goal and more in one pool, icons in another), every
variant looked up; a hit must serve its own original's key, or that of another stored file of
the same family (counted apart, as "same picture"); a hit on another family is a wrong match.
False matches: each pool's families are split in two halves, each stored under its own model;
every original and variant of one half is looked up under the other half's model, where only
distinct images are stored: any hit is a false match. The daemon runs the guard; this script
only counts. It also prints, from the signatures, the histograms of pHash and dHash distances of
benign pairs (an original and its variant) and of distinct pairs whose aspect ratios pass the
guard, and what other guards would have done on the same pairs.

    /usr/bin/python3 bench/reuse_recall.py [--phash-radius R] [--dhash-radius R]
        [--combined-radius S] [--goal-only | --no-icons]
    (default: the daemon's defaults; GENCACHE_BIN_DIR: where gencached is, default build/bin;
    PYTHONPATH=bindings/python)
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
os.environ.setdefault("GENCACHE_BIN_DIR", os.path.join(HERE, "..", "build", "bin"))
from gencached_fixture import Daemon  # noqa: E402

import gencache  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageEnhance  # noqa: E402

IM = "/usr/share/doc/imagemagick-6-common/html/"
KINDS = ("q70", "half", "bright")
MIN_DETAIL = 8
ASPECT = 0.02
# (pHash radius, dHash radius, combined radius; 0: none) of the what-if table; the first is the
# guard of gencache before the combined radius.
GUARDS = ((8, 12, 0), (10, 12, 0), (12, 12, 0), (10, 10, 0), (10, 12, 16), (10, 12, 15),
          (10, 12, 14), (12, 12, 14), (10, 12, 13), (10, 12, 12))


def flattened(im):
    """The image as a video model takes it: RGB, transparency composited onto white."""
    im.load()
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im if im.mode in ("RGB", "L") else im.convert("RGB")


def sig(im, size=None):
    """The image's signature; im is a PIL image, or a file of the given size."""
    w, h = size or im.size
    return {"digest": gencache.image_digest(im), "phash": gencache.image_hash(im, "phash"),
            "dhash": gencache.image_hash(im, "dhash"), "width": w, "height": h}


def variants(im):
    rgb = im.convert("RGB")
    out = {}
    q = os.path.join(TMP, "q70.jpg")
    rgb.save(q, quality=70)
    with Image.open(q) as j:
        j.load()
        out["q70"] = sig(j)
    out["half"] = sig(rgb.resize((im.width // 2, im.height // 2), Image.LANCZOS))
    out["bright"] = sig(ImageEnhance.Brightness(rgb).enhance(1.1))
    return out


def stem(path):
    return os.path.basename(path).rsplit(".", 1)[0]


def sources(goal_only):
    """(corpus, path, family, flatten) for every candidate file."""
    out = [("goal", p, {"reconstruct": "rose"}.get(re.split(r"[-_.]", stem(p))[0],
                                                    re.split(r"[-_.]", stem(p))[0]), False)
           for p in sorted(glob.glob(IM + "images/*.png") + glob.glob(IM + "images/*.jpg"))]
    if goal_only:
        return out
    seen = set(os.path.realpath(p) for _, p, _, _ in out)
    more = []
    for sub in ("images/patterns/", "www/Magick++/", "www/api/MagickCore/", "www/"):
        more += sorted(glob.glob(IM + sub + "*.png") + glob.glob(IM + sub + "*.jpg"))
    for p in sorted(glob.glob("/usr/share/doc/**/*.png", recursive=True) +
                    glob.glob("/usr/share/doc/**/*.jpg", recursive=True)):
        if not p.startswith(IM):
            more.append(p)
    for p in more:
        if os.path.realpath(p) not in seen:
            seen.add(os.path.realpath(p))
            out.append(("more", p, "doc:" + re.split(r"[-_.]", stem(p))[0], True))
    for p in sorted(glob.glob("/usr/share/backgrounds/gnome/*.webp")):
        out.append(("more", p, "wallpaper:" + re.sub(r"-[dl]$", "", stem(p)), True))
    largest = {}
    for p in glob.glob("/usr/share/icons/Adwaita/*/*/*.png"):
        size = re.match(r"(\d+)x\d+$", p.split("/")[-3])
        if size:
            n = stem(p)
            if n not in largest or largest[n][0] < int(size.group(1)):
                largest[n] = (int(size.group(1)), p)
    for n, (_, p) in sorted(largest.items()):
        fam = re.sub(r"(\.symbolic|-symbolic|-rtl|-ltr)", "", n)
        out.append(("icons", p, "icon:" + fam, True))
    return out


def popcount(x):
    return bin(x).count("1")


def dist(a, b):
    return (popcount(int(a["phash"], 16) ^ int(b["phash"], 16)),
            popcount(int(a["dhash"], 16) ^ int(b["dhash"], 16)))


def passes(pd, dd, guard):
    """Whether distances pass a guard (numbers, or numpy arrays: then an array of booleans)."""
    r, rd, s = guard
    return (pd <= r) & (dd <= rd) & ((pd + dd <= s) if s else (pd >= 0))


def histogram(title, values, top=24):
    counts = [0] * (top + 2)
    for v in values:
        counts[min(int(v), top + 1)] += 1
    print("  %-44s %s" % (title, " ".join("%5d" % c for c in counts)))


POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def hamming(a, b):
    """Hamming distances between the uint64 arrays a (column) and b (row), as a matrix."""
    x = (a[:, None] ^ b[None, :]).view(np.uint8).reshape(len(a), len(b), 8)
    return POPCOUNT8[x].sum(axis=2, dtype=np.int64)


def distinct_pairs(items, var):
    """Per pool: (originals: pHash, dHash distances of each unordered pair of distinct originals
    whose aspect ratios pass; lookups: the same for every (original or variant, distinct stored
    original) pair whose aspect ratios pass, the pairs a lookup meets; the count of all pairs)."""
    out = {}
    for pool in ("pictures", "icons"):
        sel = [it for it in items if (it[0] == "icons") == (pool == "icons")]
        if len(sel) < 2:
            continue
        fam = np.array([it[2] for it in sel])
        other = fam[:, None] != fam[None, :]

        def arrays(sigs):
            return (np.array([int(x["phash"], 16) for x in sigs], np.uint64),
                    np.array([int(x["dhash"], 16) for x in sigs], np.uint64),
                    np.array([x["width"] / x["height"] for x in sigs]))
        op, od, oa = arrays([it[3] for it in sel])
        lookups_p, lookups_d = [], []
        originals = None
        for k in ("original",) + KINDS:
            qp, qd, qa = arrays([it[3] if k == "original" else var[it[1]][k] for it in sel])
            ok = other & (np.abs(qa[:, None] - oa[None, :]) /
                          np.maximum(qa[:, None], oa[None, :]) <= ASPECT)
            pd, dd = hamming(qp, op), hamming(qd, od)
            if k == "original":
                upper = np.triu(ok, 1)
                originals = (pd[upper], dd[upper], int(np.triu(other, 1).sum()))
            lookups_p.append(pd[ok])
            lookups_d.append(dd[ok])
        out[pool] = originals + (np.concatenate(lookups_p), np.concatenate(lookups_d))
    return out


def distributions(items, same, var):
    """Histograms of benign and of distinct pairs, and the what-if table of GUARDS."""
    print("distance histograms (columns: distance 0..24, then >24):")
    print("  %-44s %s" % ("", " ".join("%5d" % d for d in range(25)) + "  >24"))
    for corpus in ("goal", "more", "icons"):
        for k in KINDS:
            pairs = same.get((corpus, k), [])
            if pairs:
                histogram("benign %s %s pHash (%d)" % (corpus, k, len(pairs)),
                          [p for p, _ in pairs])
                histogram("benign %s %s dHash" % (corpus, k), [d for _, d in pairs])
                histogram("benign %s %s pHash + dHash" % (corpus, k), [p + d for p, d in pairs])
    distinct = distinct_pairs(items, var)
    for pool, (pd, dd, n, lp, ld) in distinct.items():
        histogram("distinct %s pHash (%d of %d pairs)" % (pool, len(pd), n), pd)
        histogram("distinct %s dHash" % pool, dd)
        histogram("distinct %s pHash + dHash" % pool, pd + dd)
        histogram("distinct %s lookups pHash + dHash (%d)" % (pool, len(lp)), lp + ld)
    print("what-if, from the signatures (pHash radius / dHash radius / combined radius, 0 = none):"
          " benign pairs passed per corpus and kind; distinct pairs passed (originals; lookups:"
          " an original or variant against a distinct stored original)")
    for g in GUARDS:
        row = []
        for corpus in ("goal", "more", "icons"):
            for k in KINDS:
                pairs = same.get((corpus, k), [])
                if pairs:
                    ok = sum(1 for p, d in pairs if passes(p, d, g))
                    row.append("%s %s %.1f%%" % (corpus, k, 100.0 * ok / len(pairs)))
        for pool, (pd, dd, n, lp, ld) in distinct.items():
            row.append("distinct %s %d; lookups %d" % (pool, int(passes(pd, dd, g).sum()),
                                                      int(passes(lp, ld, g).sum())))
        print("  %2d/%2d/%2d: %s" % (g + (", ".join(row),)))


def main():
    global TMP
    ap = argparse.ArgumentParser()
    ap.add_argument("phash", nargs="?", type=int, help="the same as --phash-radius")
    ap.add_argument("--phash-radius", type=int)
    ap.add_argument("--dhash-radius", type=int)
    ap.add_argument("--combined-radius", type=int)
    ap.add_argument("--goal-only", action="store_true", help="only the goal corpus")
    ap.add_argument("--no-icons", action="store_true", help="the goal and more corpora only")
    args = ap.parse_args()
    if args.phash is not None and args.phash_radius is None:
        args.phash_radius = args.phash
    TMP = tempfile.mkdtemp(prefix="gencache-recall-")
    conf = os.path.join(TMP, "gencache.yaml")
    guard = {"phash_radius": args.phash_radius, "dhash_radius": args.dhash_radius,
             "combined_radius": args.combined_radius}
    guard = {k: v for k, v in guard.items() if v is not None}
    with open(conf, "w") as f:
        f.write("layers:\n  image_latent:\n    image_match: perceptual\n")
        if guard:
            f.write("perceptual:\n" + "".join("  %s: %d\n" % kv for kv in guard.items()))

    items, skipped, digests, var = [], {}, set(), {}
    for corpus, p, fam, flatten in sources(args.goal_only):
        if corpus == "icons" and args.no_icons:
            continue
        try:
            with Image.open(p) as im:
                im.load()
                img = flattened(im) if flatten else im.copy()
        except OSError:
            skipped.setdefault(corpus, []).append(os.path.basename(p))
            continue
        # The goal corpus is hashed from the files, as the tests hash them.
        s = sig(img) if flatten else sig(p, img.size)
        if (min(img.size) < 32 or popcount(int(s["phash"], 16)) < MIN_DETAIL or
                s["digest"] in digests):
            if s["digest"] not in digests:
                skipped.setdefault(corpus, []).append(os.path.basename(p))
            continue
        digests.add(s["digest"])
        items.append((corpus, p, fam, s))
        var[p] = variants(img)
    same = {}
    for c, p, _, s in items:
        for k in KINDS:
            same.setdefault((c, k), []).append(dist(s, var[p][k]))

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
        pool_of = {"goal": "pictures", "more": "pictures", "icons": "icons"}
        by_key, family = {}, {}
        pools = {}
        for c, p, f, s in items:
            family[p] = f
            pools.setdefault(pool_of[c], set()).add(f)
        halves = {pool: set(sorted(fams)[0::2]) for pool, fams in pools.items()}
        half_of = {}
        for c, p, f, s in items:
            pool = pool_of[c]
            by_key[store("all-" + pool, s, p.encode())] = p
            half_of[p] = pool + ("-A" if f in halves[pool] else "-B")
            by_key[store(half_of[p], s, p.encode())] = p
        hits, same_pic, wrong = {}, {}, {}
        for c, p, f, s in items:
            for k in KINDS:
                r = lookup("all-" + pool_of[c], var[p][k])
                got = by_key.get(r[0]) if r else None
                if got == p:
                    hits[(c, k)] = hits.get((c, k), 0) + 1
                elif got and family[got] == f:
                    same_pic[(c, k)] = same_pic.get((c, k), 0) + 1
                elif r:
                    wrong[c] = wrong.get(c, 0) + 1
                    if c != "icons":
                            print("  WRONG match: %s %s -> %s" % (p, k, got))
                elif c == "goal":
                    print("  miss: %s %s (pHash %d, dHash %d)" % ((os.path.basename(p), k) +
                                                                  dist(s, var[p][k])))
        false_hits, false_lookups, false_pairs = {}, {}, {}
        stored = {}
        for c, p, f, s in items:
            stored.setdefault(half_of[p], []).append(s)
        for c, p, f, s in items:
            pool = pool_of[c]
            other = pool + ("-B" if half_of[p].endswith("-A") else "-A")
            for q in [s] + [var[p][k] for k in KINDS]:
                false_lookups[pool] = false_lookups.get(pool, 0) + 1
                false_pairs[pool] = false_pairs.get(pool, 0) + len(stored.get(other, []))
                r = lookup(other, q)
                if r:
                    false_hits[pool] = false_hits.get(pool, 0) + 1
                    got = by_key.get(r[0])
                    if pool == "pictures":
                        print("  false match: %s -> %s (%s)" % (p, got, r[1]))
        summary = subprocess.run([os.path.join(os.environ["GENCACHE_BIN_DIR"], "gencached"),
                                  "--check-config", conf], capture_output=True, text=True).stdout
        print("guard: " + ("".join(line for line in summary.splitlines(True)
                                   if line.startswith("perceptual:")).strip() or "?"))
        for c in ("goal", "more", "icons"):
            n = sum(1 for it in items if it[0] == c)
            if not n:
                continue
            print("corpus %s: %d real images in %d families (%d skipped: too small, featureless "
                  "or unreadable%s)" % (
                      c, n, len(set(it[2] for it in items if it[0] == c)),
                      len(skipped.get(c, [])),
                      ": " + ", ".join(skipped[c]) if c == "goal" and c in skipped else ""))
        distributions(items, same, var)
        for c in ("goal", "more", "icons"):
            n = sum(1 for it in items if it[0] == c)
            if not n:
                continue
            total = tsame = 0
            for k in KINDS:
                h, sp = hits.get((c, k), 0), same_pic.get((c, k), 0)
                total += h
                tsame += sp
                print("recall %s %-6s %d/%d = %.1f%% (own original %d, same picture %d)" % (
                    c, k, h + sp, n, 100.0 * (h + sp) / n, h, sp))
            print("recall %s all    %d/%d = %.1f%% (own original %d, same picture %d); wrong "
                  "image served for a variant: %d" % (c, total + tsame, 3 * n,
                                                      100.0 * (total + tsame) / (3 * n), total,
                                                      tsame, wrong.get(c, 0)))
        for pool in ("pictures", "icons"):
            if pool in false_lookups:
                print("false matches between distinct %s: %d of %d lookups (%d image pairs)" % (
                    pool, false_hits.get(pool, 0), false_lookups[pool], false_pairs[pool]))
    finally:
        d.stop()
        shutil.rmtree(TMP, ignore_errors=True)


TMP = None

if __name__ == "__main__":
    main()

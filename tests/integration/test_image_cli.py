#!/usr/bin/python3
"""The image verbs of the gencache CLI on real files (Debian's imagemagick-6-doc):
- `imgid`: the pixel digest ignores the container and its metadata (PNG re-saved with another
  compression level and text/dpi/ICC chunks, Adam7 interlacing, palette vs RGB, WebP lossless,
  gray vs R=G=B colour, opaque RGBA vs RGB), equals the formula of DESIGN.md computed here in
  Python, and changes when one sample changes;
- `similar`: JPEG re-encodes at quality 70, 50% downscales and +10% brightness of every image of
  a set of distinct real images are found, and no image of the set matches another;
- unhappy paths: truncated files, garbage, a PNG header claiming 100000 x 100000, missing files
  (reported, exit 1, the other files still processed) and bad usage (exit 2)."""
import hashlib
import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np
from PIL import Image, ImageEnhance, PngImagePlugin

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_image_hashes import write_png  # noqa: E402

BIN = os.environ.get("GENCACHE_BIN_DIR", "build/bin")
GENCACHE = os.path.join(BIN, "gencache")
IM = "/usr/share/doc/imagemagick-6-common/html/"

# Distinct real images with detail (photos, renderings, drawings). Variants of one image that the
# package also ships (rose.jpg, reconstruct.jpg, bluebells_*, logo-sm-*) are left out: they are
# near duplicates of each other by design.
DISTINCT = ["images/examples.jpg", "images/configure.jpg", "images/wizard.jpg",
            "images/t-shirt.png", "images/piechart.png", "images/julia-set.png",
            "images/cylinder_shaded.png", "images/granite.png", "images/fuzzy-magick.png",
            "images/bluebells_lin.jpg", "images/rose.png", "images/script.png",
            "images/logo.png", "images/transloadit.png", "www/Magick++/ImageMagick.png",
            "www/Magick++/Image.png", "www/Magick++/Cache.png",
            "www/Magick++/Drawable_example_1.png", "www/Magick++/Magick++.png",
            "www/Magick++/montage-sample-framed.jpg", "www/Magick++/thumbnail-anatomy-plain.jpg",
            "images/frame.jpg", "images/difference.png", "images/affine.png",
            "images/annotate.png", "images/arc.png", "images/imade_art2.jpg",
            "images/montage.jpg", "images/objects.png", "images/sprite.jpg"]

failures = []
passed = [0]


def check(cond, what):
    if cond:
        passed[0] += 1
    else:
        failures.append(what)
        print("FAIL:", what)


def cli(*args):
    return subprocess.run([GENCACHE, *args], capture_output=True, text=True, timeout=120)


def digests(paths):
    r = cli("imgid", *paths)
    out = {}
    for line in r.stdout.splitlines():
        d, p = line.split("  ", 1)
        out[p] = d
    return r, out


def reference_digest(im):
    """DESIGN.md section 3 with the canonical rule of docs/image.md, for 8-bit images."""
    a = np.asarray(im.convert("RGBA") if im.mode in ("RGBA", "LA", "P") else im.convert("RGB"))
    if a.shape[2] == 4 and (a[..., 3] == 255).all():
        a = a[..., :3]
    colour = not ((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())
    chans = [0, 1, 2] if colour else [0]
    if a.shape[2] == 4:
        chans.append(3)
    a = np.ascontiguousarray(a[..., chans])
    h, w = a.shape[:2]
    head = b"gencache-img-v1 %d %d %d 8\n" % (w, h, len(chans))
    return "sha256:" + hashlib.sha256(head + a.tobytes()).hexdigest()


def t_digest_invariance(tmp):
    rose = Image.open(IM + "images/rose.png")
    rose.load()
    logo = Image.open(IM + "images/red-ball.png")  # RGBA with real transparency
    logo.load()
    gray = Image.open(IM + "images/objects.png")  # L
    gray.load()
    files = {}

    def save(name, img, **kw):
        p = os.path.join(tmp, name)
        img.save(p, **kw)
        files[name] = p
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "same pixels, other metadata")
    info.add_text("Software", "test", zip=True)
    save("rose_c0.png", rose, compress_level=0)
    save("rose_c9_meta.png", rose, compress_level=9, pnginfo=info, dpi=(300, 300),
         icc_profile=b"\0" * 128)
    save("rose_rgba.png", rose.convert("RGBA"))
    save("rose.webp", rose, lossless=True)
    save("rose_rgba.webp", rose.convert("RGBA"), lossless=True)
    pal = rose.quantize(colors=256)
    save("rose_p.png", pal)
    save("rose_p_as_rgb.png", pal.convert("RGB"))
    save("logo.png", logo)
    save("logo.webp", logo, lossless=True, exact=True)
    save("gray.png", gray)
    save("gray_as_rgb.png", gray.convert("RGB"))
    save("gray.webp", gray, lossless=True)
    p = os.path.join(tmp, "rose_adam7.png")
    write_png(p, np.asarray(rose), 2, interlace=True)
    files["rose_adam7.png"] = p
    changed = rose.copy()
    px = changed.load()
    r, g, b = px[35, 20]
    px[35, 20] = (r, g, b ^ 1)
    save("rose_one_pixel.png", changed)
    save("rose_q95.jpg", rose, quality=95)
    shutil.copy(IM + "images/rose.png", os.path.join(tmp, "rose_orig.png"))
    files["rose_orig.png"] = os.path.join(tmp, "rose_orig.png")

    r, d = digests(list(files.values()))
    check(r.returncode == 0, "imgid exit %d: %s" % (r.returncode, r.stderr))
    want = reference_digest(rose)
    for name in ("rose_orig.png", "rose_c0.png", "rose_c9_meta.png", "rose_rgba.png",
                 "rose.webp", "rose_rgba.webp", "rose_adam7.png"):
        check(d.get(files[name]) == want, "digest of %s: %s, want %s" %
              (name, d.get(files[name]), want))
    check(d[files["rose_p.png"]] == d[files["rose_p_as_rgb.png"]], "palette == its RGB")
    check(d[files["rose_p.png"]] == reference_digest(pal), "palette digest formula")
    check(d[files["logo.png"]] == d[files["logo.webp"]], "RGBA png == RGBA webp lossless")
    check(d[files["logo.png"]] == reference_digest(logo), "RGBA digest formula")
    check(d[files["logo.png"]] != reference_digest(logo.convert("RGB")), "alpha counts")
    check(d[files["gray.png"]] == d[files["gray_as_rgb.png"]] == d[files["gray.webp"]],
          "gray png == R=G=B png == webp")
    check(d[files["gray.png"]] == reference_digest(gray), "gray digest formula")
    check(d[files["rose_one_pixel.png"]] != want, "one changed sample changes the digest")
    check(d[files["rose_q95.jpg"]] != want, "a lossy re-encode changes the digest")
    for p, v in d.items():
        check(len(v) == 71 and v.startswith("sha256:"), "digest format %r" % v)


def flattened(src, tmp, tag):
    """The image as a video model takes it: RGB, transparency composited onto white. (The
    hashes ignore alpha, as imagehash does, so the hidden colour of transparent pixels would
    count, and Pillow's resize premultiplies it away.)"""
    im = Image.open(src)
    im.load()
    if im.mode in ("RGBA", "LA", "P"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        p = os.path.join(tmp, tag + "_flat.png")
        Image.alpha_composite(white, rgba).convert("RGB").save(p)
        return p
    return src


def variants_of(src, tmp, tag):
    im = Image.open(src)
    im.load()
    rgb = im.convert("RGB")
    base = os.path.join(tmp, tag)
    out = {}
    p = base + "_q70.jpg"
    rgb.save(p, quality=70)
    out["jpeg q70"] = p
    p = base + "_half.png"
    im.resize((max(1, im.size[0] // 2), max(1, im.size[1] // 2)), Image.LANCZOS).save(p)
    out["50% downscale"] = p
    p = base + "_bright.png"
    ImageEnhance.Brightness(rgb).enhance(1.1).save(p)
    out["+10% brightness"] = p
    return out


def t_near_duplicates(tmp):
    distinct = [flattened(IM + n, tmp, "d%d" % i) for i, n in enumerate(DISTINCT)]
    found = missed = 0
    for i, src in enumerate(distinct):
        var = variants_of(src, tmp, "nd%d" % i)
        others = [d for d in distinct if d != src]
        r = cli("similar", src, *var.values(), *others)
        hits = {}
        for line in r.stdout.splitlines():
            dist, path = line.split("  ", 1)
            hits[path] = int(dist)
        printed = [int(line.split("  ", 1)[0]) for line in r.stdout.splitlines()]
        check(printed == sorted(printed), "similar prints nearest first: %r" % printed)
        for kind, p in var.items():
            if p in hits:
                found += 1
            else:
                missed += 1
                print("  missed: %s of %s" % (kind, src))
        false = [p for p in hits if p in others]
        check(not false, "%s matched distinct images %s" % (src, false))
        check(r.returncode == (0 if hits else 1), "similar exit status %d" % r.returncode)
    recall = found / float(found + missed)
    print("near-duplicate recall: %d of %d (%.1f%%)" % (found, found + missed, 100 * recall))
    check(recall >= 0.95, "recall %.3f below 0.95" % recall)
    # The radius is honoured: at 0 only exact hash matches remain.
    var = variants_of(IM + "images/examples.jpg", tmp, "rad")
    r = cli("similar", "--radius", "0", IM + "images/examples.jpg", IM + "images/examples.jpg",
            *var.values())
    lines = r.stdout.splitlines()
    check(lines and lines[0] == "0  " + IM + "images/examples.jpg", "radius 0 finds itself")
    check(all(line.startswith("0  ") for line in lines), "radius 0: only distance 0")


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def t_hostile(tmp):
    bad = {}

    def write(name, data):
        p = os.path.join(tmp, name)
        with open(p, "wb") as f:
            f.write(data)
        bad[name] = p
    for src in ("images/rose.png", "images/wizard.jpg"):
        data = open(IM + src, "rb").read()
        ext = src.rsplit(".", 1)[1]
        write("cut_half." + ext, data[:len(data) // 2])
        write("cut_head." + ext, data[:30])
        write("cut_tail." + ext, data[:-30])
    webp = io.BytesIO()
    Image.open(IM + "images/rose.png").save(webp, "WEBP", lossless=True)
    write("cut.webp", webp.getvalue()[:-15])
    noise = np.random.RandomState(5).randint(0, 256, 4096).astype(np.uint8)
    write("garbage.png", noise.tobytes())
    write("empty.jpg", b"")
    write("text.png", b"this is not an image\n" * 20)
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    write("huge.png", b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) +
          png_chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + png_chunk(b"IEND", b""))
    good = IM + "images/rose.png"
    missing = os.path.join(tmp, "missing.png")
    for verb in (["imgid"], ["imghash"], ["imghash", "--algo", "dhash", "--bits", "256"]):
        args = verb + [good] + list(bad.values()) + [missing, good]
        r = cli(*args)
        check(r.returncode == 1, "%s with bad files: exit %d" % (verb, r.returncode))
        lines = r.stdout.splitlines()
        check(len(lines) == 2 and all(line.endswith("  " + good) for line in lines),
              "%s: the good files are still processed: %r" % (verb, lines))
        for name, p in bad.items():
            check(p in r.stderr, "%s: %s reported on stderr" % (verb, name))
        check(missing in r.stderr, "%s: the missing file is reported" % verb)
        check("ELIMIT" in r.stderr and "EPARSE" in r.stderr and "EUNSUPPORTED" in r.stderr,
              "%s: the reasons are named: %s" % (verb, r.stderr))
    r = cli("similar", bad["cut_half.png"], good)
    check(r.returncode == 1 and bad["cut_half.png"] in r.stderr, "similar: bad query")
    r = cli("similar", good, bad["garbage.png"], good)
    check(r.returncode == 1 and r.stdout == "0  %s\n" % good, "similar: a bad candidate")


def t_usage():
    good = IM + "images/rose.png"
    for args in (["imgid"], ["imghash"], ["imghash", "--algo", "md5", good],
                 ["imghash", "--bits", "128", good], ["imghash", "--bogus", good],
                 ["similar", good], ["similar", "--radius", "x", good, good],
                 ["similar", "--radius", "65", good, good], ["similar"]):
        r = cli(*args)
        check(r.returncode == 2 and r.stderr.startswith("gencache: "),
              "usage error %r: exit %d %r" % (args, r.returncode, r.stderr))
    r = cli("imghash", "--algo=ahash", "--bits=256", good)
    check(r.returncode == 0 and len(r.stdout.split("  ")[0]) == 64, "--opt=value form")
    r = cli("imghash", "--help")
    check(r.returncode == 0 and "--algo" in r.stdout, "imghash --help")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        t_digest_invariance(tmp)
        t_near_duplicates(tmp)
        t_hostile(tmp)
        t_usage()
    print("%d passed, %d failed" % (passed[0], len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

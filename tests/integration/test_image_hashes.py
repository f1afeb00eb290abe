#!/usr/bin/python3
"""Perceptual hashes of `gencache imghash` against a reference run of the Python imagehash
algorithms (average_hash, dhash, phash of imagehash 4.3, written out below over Debian's Pillow
and scipy, since Debian ships no python3-imagehash): all three algorithms at 64 and 256 bits must
agree bit for bit on every image. The images are the real PNG and JPEG files of Debian's
imagemagick-6-doc (photos, drawings, icons with alpha, gray, palette, bilevel) plus variants made
from them with Pillow: other modes, 16-bit PNGs, progressive and gray JPEGs, WebP lossless and
lossy, 16-bit and Adam7-interlaced PNGs, odd and tiny sizes."""
import glob
import os
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import scipy.fftpack
from PIL import Image

BIN = os.environ.get("GENCACHE_BIN_DIR", "build/bin")
GENCACHE = os.path.join(BIN, "gencache")
IM = "/usr/share/doc/imagemagick-6-common/html/"


# ---- the reference: imagehash 4.3's algorithms over Pillow and scipy -----------------------------

def to_hex(bits):
    s = "".join("1" if b else "0" for b in bits.flatten())
    return "{:0>{w}x}".format(int(s, 2), w=(len(s) + 3) // 4)


def average_hash(image, hash_size):
    pixels = np.asarray(image.convert("L").resize((hash_size, hash_size), Image.LANCZOS))
    return to_hex(pixels > pixels.mean())


def dhash(image, hash_size):
    pixels = np.asarray(image.convert("L").resize((hash_size + 1, hash_size), Image.LANCZOS))
    return to_hex(pixels[:, 1:] > pixels[:, :-1])


def phash(image, hash_size):
    n = hash_size * 4
    pixels = np.asarray(image.convert("L").resize((n, n), Image.LANCZOS))
    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)
    low = dct[:hash_size, :hash_size]
    return to_hex(low > np.median(low))


ALGOS = {"ahash": average_hash, "dhash": dhash, "phash": phash}


# ---- the corpus ----------------------------------------------------------------------------------

def real_files():
    files = sorted(glob.glob(IM + "images/*.png") + glob.glob(IM + "images/*.jpg") +
                   glob.glob(IM + "images/patterns/*.png") + glob.glob(IM + "www/Magick++/*.png") +
                   glob.glob(IM + "www/Magick++/*.jpg"))
    if len(files) < 50:
        sys.exit("FAIL: imagemagick-6-doc's images are missing (scripts/install-deps.sh)")
    return files


# Adam7: (first row, first column, row step, column step) of each pass.
ADAM7 = [(0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2),
         (1, 0, 2, 1)]


def write_png(path, arr, color_type, interlace=False):
    """Writes a PNG that Pillow cannot: 16-bit samples, or Adam7 interlacing. arr is uint8 or
    uint16 of shape (h, w[, c]); every scanline uses filter 0."""
    h, w = arr.shape[:2]
    depth = 16 if arr.dtype == np.uint16 else 8
    dt = ">u2" if depth == 16 else "u1"
    if interlace:
        raw = b""
        for y0, x0, dy, dx in ADAM7:
            sub = arr[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += b"".join(b"\x00" + row.astype(dt).tobytes() for row in sub)
    else:
        raw = b"".join(b"\x00" + arr[y].astype(dt).tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" +
                chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0,
                                           1 if interlace else 0)) +
                chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def variants(tmp, files):
    """Files in other layouts and containers, made from a few of the real images."""
    out = []
    picks = [IM + n for n in ("images/wizard.jpg", "images/rose.png", "images/t-shirt.png",
                              "images/examples.jpg", "images/red-ball.png",
                              "www/Magick++/Cache.png", "images/granite.png")]
    for i, src in enumerate(picks):
        im = Image.open(src)
        im.load()
        if im.size[0] > 400:
            im = im.resize((im.size[0] // 3, im.size[1] // 3), Image.BILINEAR)
        rgb, rgba = im.convert("RGB"), im.convert("RGBA")
        base = os.path.join(tmp, "v%d_" % i)

        def save(name, img, **kw):
            p = base + name
            img.save(p, **kw)
            out.append(p)
        save("l.png", rgb.convert("L"))
        save("la.png", rgba.convert("LA"))
        save("p.png", rgb.convert("P", palette=Image.ADAPTIVE, colors=64))
        save("p_trns.png", rgb.convert("P", palette=Image.ADAPTIVE, colors=32), transparency=0)
        save("bilevel.png", rgb.convert("1"))
        save("q70.jpg", rgb, quality=70)
        save("progressive.jpg", rgb, quality=90, progressive=True)
        save("gray.jpg", rgb.convert("L"), quality=85)
        save("444.jpg", rgb, quality=95, subsampling=0)
        save("lossless.webp", rgb, lossless=True)
        save("lossless_alpha.webp", rgba, lossless=True)
        save("lossy.webp", rgb, quality=75)
        save("lossy_alpha.webp", rgba, quality=75)
        save("crop_odd.png", rgb.crop((1, 2, min(rgb.size[0], 38), min(rgb.size[1], 29))))
        save("crop_row.png", rgb.crop((0, 5, rgb.size[0], 6)))
        save("crop_col.png", rgb.crop((3, 0, 4, rgb.size[1])))
        save("pixel.png", rgb.crop((5, 5, 6, 6)))
        save("small.png", rgb.resize((9, 7), Image.BILINEAR))
        a8 = np.asarray(rgba).astype(np.uint16)
        wide = a8 * 257 + (np.arange(a8.size, dtype=np.uint16).reshape(a8.shape) % 251)
        for name, arr, ct, il in (("rgb16.png", wide[..., :3], 2, False),
                                  ("rgba16.png", wide, 6, False),
                                  ("la16.png", wide[..., [0, 3]], 4, False),
                                  ("gray16.png", wide[..., 0], 0, False),
                                  ("gray16_low.png", a8[..., 1], 0, False),
                                  ("interlaced.png", np.asarray(rgb), 2, True),
                                  ("interlaced_rgba16.png", wide, 6, True)):
            p = base + name
            write_png(p, np.ascontiguousarray(arr), ct, il)
            out.append(p)
    return out


def main():
    failures = 0
    checks = 0
    with tempfile.TemporaryDirectory() as tmp:
        files = real_files() + variants(tmp, None)
        ref = {}
        for f in files:
            im = Image.open(f)
            im.load()
            ref[f] = {(a, b): fn(im, 8 if b == 64 else 16) for a, fn in ALGOS.items()
                      for b in (64, 256)}
        for algo in ALGOS:
            for bits in (64, 256):
                r = subprocess.run([GENCACHE, "imghash", "--algo", algo, "--bits", str(bits)] +
                                   files, capture_output=True, text=True, timeout=300)
                if r.returncode != 0:
                    print("FAIL: imghash %s %d exited %d: %s" % (algo, bits, r.returncode,
                                                                r.stderr[-2000:]))
                    failures += 1
                    continue
                got = {}
                for line in r.stdout.splitlines():
                    hexv, path = line.split("  ", 1)
                    got[path] = hexv
                for f in files:
                    checks += 1
                    want = ref[f][(algo, bits)]
                    if got.get(f) != want:
                        failures += 1
                        print("FAIL: %s %s/%d: gencache %s, reference %s" %
                              (f, algo, bits, got.get(f), want))
        print("compared %d files x 6 hashes" % len(files))
    print("%d passed, %d failed" % (checks - failures, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

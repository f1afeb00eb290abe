#!/usr/bin/python3
"""Companion of bench_image.c: times the Python reference of pHash (imagehash 4.3's phash:
Pillow convert("L"), Lanczos resize to 32 x 32, scipy.fftpack DCT on both axes, median) on the
raw RGB image the C benchmark wrote, and prints the median and the fastest seconds and the
hash it got.

usage: bench_image_ref.py RAW_RGB_FILE WIDTH HEIGHT ROUNDS"""
import sys
import time

import numpy as np
import scipy.fftpack
from PIL import Image


def phash(image, hash_size=8):
    n = hash_size * 4
    pixels = np.asarray(image.convert("L").resize((n, n), Image.LANCZOS))
    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)
    low = dct[:hash_size, :hash_size]
    bits = "".join("1" if b else "0" for b in (low > np.median(low)).flatten())
    return "{:016x}".format(int(bits, 2))


def main():
    path, w, h, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    with open(path, "rb") as f:
        im = Image.frombytes("RGB", (w, h), f.read())
    result = phash(im)
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        phash(im)
        times.append(time.perf_counter() - t)
    times.sort()
    print("%.9f %.9f %s" % (times[len(times) // 2], times[0], result))


if __name__ == "__main__":
    main()

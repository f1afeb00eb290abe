"""Image identity through the C image module (src/image/): the pixel digest that enters keys and
the perceptual hashes, for a file path, a numpy array (H x W, H x W x 1|3|4 uint8) or a PIL image.
A file is decoded by libgencache itself; pixels already in memory are handed over as they are,
so an array and the PNG it was saved to give the same digest.
"""
from __future__ import annotations

import ctypes
import os
from typing import Any, Optional

from . import _lib
from ._lib import lib

ALGOS = {"ahash": 0, "dhash": 1, "phash": 2}
_PIXEL_FORMAT = {1: 1, 3: 3, 4: 4}  # channels -> gencache_pixel_format


def _pixels(obj: Any) -> tuple[Any, int, int, int]:
    """(contiguous uint8 array, width, height, channels) from a numpy array or PIL image."""
    import numpy as np
    if hasattr(obj, "mode") and hasattr(obj, "getbands"):  # a PIL image
        img = obj
        if img.mode not in ("L", "RGB", "RGBA"):
            has_alpha = "A" in img.getbands() or "transparency" in img.info
            img = img.convert("RGBA" if has_alpha else ("L" if img.mode in ("1", "LA", "I", "F")
                                                        and "A" not in img.getbands()
                                                        else "RGB"))
        a = np.asarray(img)
    elif isinstance(obj, np.ndarray):
        a = obj
    else:
        raise TypeError("expected a path, numpy array or PIL image, got %s"
                        % type(obj).__name__)
    if a.dtype != np.uint8:
        raise TypeError("image arrays must be uint8, got %s" % a.dtype)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in _PIXEL_FORMAT:
        raise ValueError("image arrays are H x W or H x W x 1|3|4, got shape %s" % (a.shape,))
    a = np.ascontiguousarray(a)
    return a, a.shape[1], a.shape[0], a.shape[2]


class _Image:
    """A decoded gencache_image, freed on close."""

    def __init__(self, obj: Any) -> None:
        p = ctypes.c_void_p()
        if isinstance(obj, (str, bytes, os.PathLike)):
            _lib.require("image decoding", "gencache_image_decode_file")
            path = os.fsencode(obj)
            _lib.check(lib.gencache_image_decode_file(path, None, ctypes.byref(p)),
                       "decoding %s" % os.fsdecode(path))
        else:
            _lib.require("images from pixels", "gencache_image_from_pixels")
            a, w, h, c = _pixels(obj)
            if w == 0 or h == 0:
                raise ValueError("an image needs at least one pixel")
            _lib.check(lib.gencache_image_from_pixels(a.ctypes.data, w, h, w * c,
                                                      _PIXEL_FORMAT[c], ctypes.byref(p)),
                       "image")
        self.ptr: Optional[int] = p.value

    def close(self) -> None:
        ptr, self.ptr = self.ptr, None
        if ptr:
            lib.gencache_image_free(ptr)

    def __enter__(self) -> "_Image":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def image_digest(image: Any) -> str:
    """The pixel digest "sha256:<hex>" (DESIGN.md section 3) of a file path, numpy array or PIL
    image."""
    out = ctypes.create_string_buffer(_lib.DIGEST_MAX)
    if isinstance(image, (str, bytes, os.PathLike)):
        _lib.require("image digests", "gencache_image_digest_file")
        path = os.fsencode(image)
        _lib.check(lib.gencache_image_digest_file(path, out), "digest of %s"
                   % os.fsdecode(path))
    else:
        _lib.require("image digests", "gencache_image_digest")
        with _Image(image) as img:
            _lib.check(lib.gencache_image_digest(img.ptr, out), "image digest")
    return out.value.decode("ascii")


def image_hash(image: Any, algo: str = "phash", bits: int = 64) -> str:
    """A perceptual hash (ahash, dhash, phash; 64 or 256 bits) as the lowercase hex string the
    Python imagehash library prints for the same image."""
    _lib.require("perceptual hashes", "gencache_image_hash")
    if algo not in ALGOS:
        raise ValueError("unknown hash algorithm %r (expected ahash, dhash or phash)" % (algo,))
    if bits not in (64, 256):
        raise ValueError("bits must be 64 or 256, not %r" % (bits,))
    hexbuf = ctypes.create_string_buffer(_lib.HASH_HEX_MAX)
    with _Image(image) as img:
        _lib.check(lib.gencache_image_hash(img.ptr, ALGOS[algo], bits, None, hexbuf),
                   "image hash")
    return hexbuf.value.decode("ascii")


"""gencache: a cache for generative-video inference, from Python.

    import gencache
    cache = gencache.Cache(mem_max_bytes=2 << 30)          # in-process, over libgencache
    key = cache.key({"model": "m", "prompt": "a cat"}, "text_embedding")
    emb = cache.get_or_compute(key, lambda: encode("a cat"))  # computed once, then shared
    client = gencache.Client("http://127.0.0.1:8787")       # the gencached daemon

The package loads the shared library with ctypes (no compiler involved): $GENCACHE_LIB, else a
libgencache.so next to this package, else a build tree of the source checkout
(build*/src/libgencache.so), else the system's (ctypes.util.find_library). See docs/python.md.
"""
from __future__ import annotations

from ._lib import GencacheError, NotFound, has as _has, library_path, lib as _clib
from ._cache import Cache
from ._handle import Handle
from ._client import Client, RemoteEntry
from ._image import image_digest, image_hash
from ._keys import Keyspace, key, normalize
from ._tenant import Forbidden, QuotaExceeded, TenantView
from ._chunks import Chunk, chunk_plan
from ._device import DeviceTier
from ._safetensors import SafetensorsFile, load_safetensors, save_safetensors
from ._trajectory import Resume, Trajectory
from ._trajectory import set_thresholds as set_trajectory_thresholds
from ._trajectory import stats as trajectory_stats

__all__ = ["Cache", "Client", "Handle", "RemoteEntry", "Keyspace", "GencacheError", "NotFound",
           "TenantView", "QuotaExceeded", "Forbidden",
           "key", "normalize", "image_digest", "image_hash", "library_path", "version",
           "available", "Chunk", "chunk_plan", "SafetensorsFile", "load_safetensors",
           "save_safetensors", "DeviceTier", "Trajectory", "Resume",
           "set_trajectory_thresholds", "trajectory_stats"]


def version() -> str:
    """The loaded libgencache's version string."""
    return str(_clib.gencache_version().decode("ascii"))


__version__ = version()  # the package is versioned with the library it binds


def available(feature: str) -> bool:
    """Whether the loaded library provides a feature: "keys", "images", "hashes", "codecs",
    "int8", "sessions", "kv", "trajectory"."""
    names = {
        "keys": ("gencache_keyspace_new", "gencache_request_parse_ex", "gencache_request_key",
                 "gencache_normalize"),
        "images": ("gencache_image_digest_file", "gencache_image_from_pixels",
                   "gencache_image_digest"),
        "hashes": ("gencache_image_hash",),
        "codecs": ("gencache_tensor_convert",),
        "int8": ("gencache_quant_encode", "gencache_quant_decode", "gencache_quant_info_get"),
        "sessions": ("gencache_session_open", "gencache_session_put", "gencache_session_get",
                     "gencache_session_step", "gencache_session_close"),
        "kv": ("gencache_kv_new", "gencache_kv_append", "gencache_kv_retrieve",
               "gencache_kv_prune", "gencache_kv_free"),
        "trajectory": ("gencache_trajectory_store", "gencache_trajectory_lookup"),
    }
    if feature not in names:
        raise ValueError("unknown feature %r" % (feature,))
    return _has(*names[feature])

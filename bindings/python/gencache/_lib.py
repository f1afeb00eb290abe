"""The ctypes layer over libgencache: finding the shared library, the C structs, the function
prototypes and the error type.

Every function of include/gencache.h that the package uses is declared here once, with its
argument and result types, so a wrong call fails in Python rather than corrupting memory. A
function the loaded library does not export is simply left out (``has(name)`` says which are
there): the package then refuses the features built on it with GencacheError(EUNSUPPORTED)
instead of failing to import.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
from types import ModuleType
from typing import Any, Iterator, Optional, Union

__all__ = ["lib", "has", "check", "GencacheError", "NotFound", "library_path"]

# ---- errors ---------------------------------------------------------------------------------

# Error names and codes are the library's (gencache_errname(), filled in below once it is
# loaded): code -> name ("ENOTFOUND"), and name -> code. Codes are never renumbered.
ERRNAMES: dict[int, str] = {}
CODES: dict[str, int] = {}


class GencacheError(Exception):
    """A failed libgencache call (or daemon request). ``code`` is the negative GENCACHE_E* value,
    ``name`` its name without the prefix ("ENOTFOUND"), ``status`` the HTTP status for errors
    that came from a daemon (else None)."""

    def __init__(self, code: int, message: Optional[str] = None, what: Optional[str] = None,
                 status: Optional[int] = None) -> None:
        self.code = int(code)
        self.name = errname(self.code)
        self.status = status
        msg = message or strerror(self.code)
        text = "%s: %s" % (self.name, msg)
        if what:
            text = "%s: %s" % (what, text)
        super().__init__(text)
        self.message = msg


class NotFound(GencacheError, KeyError):
    """GENCACHE_ENOTFOUND: a miss, an unknown layer, an absent session value."""

    def __str__(self) -> str:  # KeyError would otherwise print the repr of the message
        return Exception.__str__(self)


def errname(code: int) -> str:
    name = ERRNAMES.get(int(code))
    if name is None:
        name = str(lib.gencache_errname(int(code)).decode("ascii"))
    return name


def strerror(code: int) -> str:
    if has("gencache_strerror"):
        return str(lib.gencache_strerror(int(code)).decode("utf-8", "replace"))
    return errname(code)


def error(code: int, what: Optional[str] = None, message: Optional[str] = None,
          status: Optional[int] = None) -> GencacheError:
    cls = NotFound if code == ENOTFOUND else GencacheError
    return cls(code, message, what, status)


def check(rc: int, what: Optional[str] = None) -> int:
    """Raises the GencacheError for a negative return code; returns rc otherwise."""
    if rc < 0:
        raise error(rc, what)
    return rc


def unsupported(feature: str) -> GencacheError:
    return GencacheError(CODES["EUNSUPPORTED"],
                         "%s is not available in the loaded libgencache (%s)"
                         % (feature, library_path))


# ---- finding the library ----------------------------------------------------------------------

def _candidates() -> Iterator[str]:
    """Where the library may be, in the order the package documents."""
    env = os.environ.get("GENCACHE_LIB")
    if env:
        yield env
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("libgencache.so", "libgencache.so.0", "libgencache.dylib"):
        yield os.path.join(here, name)
    # The build trees of a source checkout: bindings/python/gencache -> the repository root.
    # Sanitizer builds cannot be loaded into a plain interpreter, so they come last.
    root = os.path.normpath(os.path.join(here, "..", "..", ".."))
    trees = sorted(glob.glob(os.path.join(root, "build*", "src", "libgencache.so")))
    plain = [t for t in trees if not any(s in t for s in ("asan", "tsan", "san"))]
    preferred = os.path.join(root, "build", "src", "libgencache.so")
    if preferred in plain:
        plain.remove(preferred)
        plain.insert(0, preferred)
    yield from plain
    found = ctypes.util.find_library("gencache")
    if found:
        yield found


def _load() -> tuple[ctypes.CDLL, str]:
    errors = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            if path == os.environ.get("GENCACHE_LIB"):
                errors.append("%s (from $GENCACHE_LIB): no such file" % path)
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            errors.append("%s: %s" % (path, e))
            if path == os.environ.get("GENCACHE_LIB"):
                break  # an explicit choice that fails is an error, not a hint to look elsewhere
    raise ImportError("gencache: cannot load libgencache (set $GENCACHE_LIB to the built "
                      "libgencache.so): " + ("; ".join(errors) or "not found"))


lib, library_path = _load()

# ---- C types ----------------------------------------------------------------------------------

c_char_p = ctypes.c_char_p
c_void_p = ctypes.c_void_p
c_int = ctypes.c_int
c_uint = ctypes.c_uint
c_size_t = ctypes.c_size_t
c_u32 = ctypes.c_uint32
c_u64 = ctypes.c_uint64
c_i64 = ctypes.c_int64
P = ctypes.POINTER

MAX_DIMS = 8
MAX_LAYERS = 32
MAX_TIERS = 8
KEY_MAX = 98
DIGEST_MAX = 72
HASH_HEX_MAX = 65

LOG_FN = ctypes.CFUNCTYPE(None, c_void_p, c_int, c_char_p)
CLOCK_FN = ctypes.CFUNCTYPE(c_u64, c_void_p)


class Options(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size_t), ("mem_max_bytes", c_u64), ("mem_max_entries", c_u64),
        ("mem_shards", c_uint), ("ghost_max_entries", c_u64), ("verify_mem_reads", c_int),
        ("log_fn", LOG_FN), ("log_userdata", c_void_p), ("log_level", c_int),
        ("clock_fn", CLOCK_FN), ("clock_userdata", c_void_p), ("allocator", c_void_p),
        ("data_dir", c_char_p), ("disk_max_bytes", c_u64), ("disk_max_entries", c_u64),
        ("redis_url", c_char_p), ("redis_timeout_ms", c_u32), ("redis_max_value_bytes", c_u64),
        ("writeback_max_bytes", c_u64), ("mem_max_pinned_bytes", c_u64),
        ("pressure_warn_ratio", ctypes.c_double), ("pressure_ttl_ms", c_u64),
        ("mem_policy", c_int), ("mrc_sample_rate", ctypes.c_double),
        ("redis_bloom_fp_rate", ctypes.c_double), ("redis_bloom_capacity", c_u64),
        ("encryption_keys", ctypes.POINTER(c_char_p)), ("n_encryption_keys", c_size_t),
    ]


class LayerOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size_t), ("name", c_char_p), ("scope", c_int), ("ttl_ms", c_u64),
        ("sliding_ttl", c_int), ("write_through", c_int),
        # appended in 0.2
        ("fields", ctypes.POINTER(c_char_p)), ("n_fields", c_size_t), ("shared", c_int),
        ("prompt_normalization", c_int), ("eviction", c_int), ("image_match", c_int),
    ]


class Meta(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size_t), ("content_type", c_char_p), ("tenant", c_char_p),
        ("model", c_char_p), ("tags", c_char_p), ("dtype", c_int), ("ndim", c_u32),
        ("shape", c_i64 * MAX_DIMS), ("cost_ms", c_u64), ("ttl_ms", c_u64), ("pinned", c_int),
        ("key", c_char_p), ("layer", c_char_p), ("size", c_u64), ("checksum", c_u64),
        ("created_ms", c_u64), ("expires_ms", c_u64), ("last_access_ms", c_u64),
        ("hits", c_u64), ("tier", c_char_p),
    ]


class Filter(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size_t), ("key", c_char_p), ("layer", c_char_p), ("tenant", c_char_p),
        ("tag", c_char_p), ("model", c_char_p), ("older_than_ms", c_u64),
    ]


class LayerStats(ctypes.Structure):
    _fields_ = [
        ("layer", c_char_p), ("lookups", c_u64), ("hits", c_u64), ("misses", c_u64),
        ("ghost_hits", c_u64), ("puts", c_u64), ("cost_ms_saved", c_u64),
    ]


class TierStats(ctypes.Structure):
    _fields_ = [
        ("tier", c_char_p), ("bytes", c_u64), ("entries", c_u64), ("max_bytes", c_u64),
        ("max_entries", c_u64), ("pinned_entries", c_u64), ("evictions_capacity", c_u64),
        ("evictions_expired", c_u64), ("evictions_corrupt", c_u64), ("backend_errors", c_u64),
        ("hits", c_u64), ("pinned_bytes", c_u64), ("pins_refused", c_u64),
        ("crypt_rejected", c_u64), ("redirects", c_u64), ("filter_skips", c_u64),
        ("invalidations_published", c_u64),
    ]


class Stats(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size_t), ("n_layers", c_u32), ("layers", LayerStats * MAX_LAYERS),
        ("n_tiers", c_u32), ("tiers", TierStats * MAX_TIERS), ("invalidated", c_u64),
    ]


class MrcPoint(ctypes.Structure):
    _fields_ = [("scale", ctypes.c_double), ("hit_ratio", ctypes.c_double),
                ("gpu_seconds_saved", ctypes.c_double), ("lookups", c_u64)]


MRC_POINTS = 3


class Mrc(ctypes.Structure):
    _fields_ = [("struct_size", c_size_t), ("sample_rate", ctypes.c_double),
                ("n_points", c_u32), ("points", MrcPoint * MRC_POINTS)]


class TenantOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size_t), ("name", c_char_p), ("priority", c_int),
        ("quota_bytes", c_u64), ("admin", c_int),
    ]


class Caller(ctypes.Structure):
    _fields_ = [("struct_size", c_size_t), ("tenant", c_char_p), ("cost_ms", c_u64)]


class TenantStats(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size_t), ("tenant", c_char_p), ("priority", c_int),
        ("quota_bytes", c_u64), ("bytes", c_u64), ("entries", c_u64), ("n_layers", c_u32),
        ("layers", LayerStats * MAX_LAYERS),
    ]


class ClaimOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size_t), ("wait_timeout_ms", c_u32), ("lease_timeout_ms", c_u32),
        ("tenant", c_char_p),
    ]


class ClaimResult(ctypes.Structure):
    _fields_ = [("kind", c_int), ("waited", c_int), ("handle", c_void_p), ("lease", c_void_p)]


CLAIM_HIT, CLAIM_LEASE = 1, 2


class TensorDesc(ctypes.Structure):
    _fields_ = [
        ("dtype", c_int), ("ndim", c_u32), ("shape", c_i64 * MAX_DIMS), ("byte_order", c_int),
    ]


class QuantOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size_t), ("codec", c_int), ("axis", c_u32), ("group_size", c_u32),
    ]


class QuantInfo(ctypes.Structure):
    _fields_ = [
        ("codec", c_int), ("axis", c_u32), ("group_size", c_u32), ("n_scales", c_u64),
        ("scales_offset", c_u64), ("data_offset", c_u64), ("desc", TensorDesc),
    ]


class EncodeOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size_t), ("codec", c_int), ("axis", c_u32), ("group_size", c_u32),
    ]


class DecodeInfo(ctypes.Structure):
    _fields_ = [
        ("codec", c_int), ("desc", TensorDesc), ("size", c_u64), ("needs_decode", c_int),
        ("content_type", c_void_p), ("content_type_len", c_size_t),
    ]


class SessionOptions(ctypes.Structure):
    _fields_ = [("struct_size", c_size_t), ("ttl_ms", c_u64), ("max_bytes", c_u64)]


class SessionStats(ctypes.Structure):
    _fields_ = [("step", c_u64), ("entries", c_u64), ("bytes", c_u64), ("reaped", c_int)]


class KvBlock(ctypes.Structure):
    _fields_ = [
        ("layer", c_u32), ("first_pos", c_i64), ("n_positions", c_u64), ("dtype", c_int),
        ("k", c_void_p), ("v", c_void_p), ("k_row_bytes", c_u64), ("v_row_bytes", c_u64),
        ("k_scales", P(ctypes.c_float)), ("v_scales", P(ctypes.c_float)),
    ]


KV_OFFLOAD_FN = ctypes.CFUNCTYPE(None, c_void_p, P(KvBlock))


class KvOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size_t), ("n_layers", c_u32), ("dtype", c_int), ("k_elems", c_u64),
        ("v_elems", c_u64), ("int8", c_int), ("initial_positions", c_u64),
        ("offload", KV_OFFLOAD_FN), ("offload_userdata", c_void_p), ("cache", c_void_p),
    ]


class KvView(ctypes.Structure):
    _fields_ = [("k", c_void_p), ("v", c_void_p), ("first_pos", c_i64), ("n_positions", c_u64)]


class KvStats(ctypes.Structure):
    _fields_ = [
        ("positions", c_u64), ("bytes", c_u64), ("bytes_offloaded", c_u64),
        ("bytes_dropped", c_u64),
    ]


class SafetensorsTensor(ctypes.Structure):
    _fields_ = [
        ("name", c_char_p), ("dtype", c_int), ("ndim", c_u32), ("shape", c_i64 * MAX_DIMS),
        ("data", c_void_p), ("size", c_u64),
    ]


class SafetensorsOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size_t), ("max_header_bytes", c_u64), ("errbuf", c_void_p),
        ("errbuf_size", c_size_t),
    ]


class ChunkOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size_t), ("shape", c_i64 * 5), ("dtype", c_int),
        ("bytes_per_frame", c_u64), ("budget_bytes", c_u64), ("overlap", c_u32),
    ]


class Chunk(ctypes.Structure):
    _fields_ = [("start", c_i64), ("frames", c_i64), ("overlap", c_i64)]


# Approximate step reuse (gencache/reuse.h).
class TrajectoryThreshold(ctypes.Structure):
    _fields_ = [("similarity", ctypes.c_float), ("step", c_uint)]


class TrajectoryMatch(ctypes.Structure):
    _fields_ = [("struct_size", c_size_t), ("key", ctypes.c_char * KEY_MAX), ("step", c_uint),
                ("similarity", ctypes.c_float)]


class TrajectoryStats(ctypes.Structure):
    _fields_ = [("struct_size", c_size_t), ("vectors", c_u64), ("hits", c_u64),
                ("misses", c_u64), ("steps_skipped", c_u64)]


# ---- prototypes -------------------------------------------------------------------------------

_PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "gencache_tenant_options_init": (None, [P(TenantOptions)]),
    "gencache_tenant_define": (c_int, [c_void_p, P(TenantOptions)]),
    "gencache_tenant_get": (c_int, [c_void_p, c_char_p, P(TenantOptions)]),
    "gencache_caller_init": (None, [P(Caller)]),
    "gencache_get_as": (c_int, [c_void_p, P(Caller), c_char_p, P(c_void_p)]),
    "gencache_peek_as": (c_int, [c_void_p, P(Caller), c_char_p, P(c_void_p)]),
    "gencache_put_as": (c_int, [c_void_p, P(Caller), c_char_p, c_void_p, c_size_t, P(Meta)]),
    "gencache_del_as": (c_int, [c_void_p, P(Caller), c_char_p]),
    "gencache_invalidate_as": (c_int, [c_void_p, P(Caller), P(Filter), P(c_u64)]),
    "gencache_tenant_stats_get": (c_int, [c_void_p, c_char_p, P(TenantStats)]),
    "gencache_demote": (c_int, [c_void_p, P(Filter), P(c_u64)]),
    "gencache_flush": (c_int, [c_void_p, P(c_u64)]),
    # core
    "gencache_version": (c_char_p, []),
    "gencache_strerror": (c_char_p, [c_int]),
    "gencache_errname": (c_char_p, [c_int]),
    "gencache_dtype_name": (c_char_p, [c_int]),
    "gencache_dtype_size": (c_size_t, [c_int]),
    "gencache_options_init": (None, [P(Options)]),
    "gencache_open": (c_int, [P(c_void_p), P(Options)]),
    "gencache_close": (None, [c_void_p]),
    "gencache_layer_options_init": (None, [P(LayerOptions)]),
    "gencache_layer_define": (c_int, [c_void_p, P(LayerOptions)]),
    "gencache_layer_get": (c_int, [c_void_p, c_char_p, P(LayerOptions)]),
    "gencache_layer_count": (c_size_t, [c_void_p]),
    "gencache_layer_name": (c_char_p, [c_void_p, c_size_t]),
    "gencache_key_check": (c_int, [c_void_p, c_char_p]),
    # config (include/gencache/config.h)
    "gencache_parse_size": (c_int, [c_char_p, P(c_u64)]),
    "gencache_parse_duration_ms": (c_int, [c_char_p, P(c_u64)]),
    "gencache_config_load": (c_int, [c_char_p, P(c_void_p), c_char_p, c_size_t]),
    "gencache_config_parse": (c_int, [c_char_p, c_char_p, c_size_t, P(c_void_p), c_char_p,
                                      c_size_t]),
    "gencache_config_free": (None, [c_void_p]),
    "gencache_config_preferred": (c_char_p, [c_void_p, c_size_t]),
    "gencache_config_options": (c_int, [c_void_p, P(Options)]),
    "gencache_open_config": (c_int, [P(c_void_p), c_void_p, P(Options)]),
    "gencache_meta_init": (None, [P(Meta)]),
    "gencache_put": (c_int, [c_void_p, c_char_p, c_void_p, c_size_t, P(Meta)]),
    "gencache_get": (c_int, [c_void_p, c_char_p, P(c_void_p)]),
    "gencache_peek": (c_int, [c_void_p, c_char_p, P(c_void_p)]),
    "gencache_handle_data": (c_void_p, [c_void_p]),
    "gencache_handle_size": (c_size_t, [c_void_p]),
    "gencache_handle_meta": (P(Meta), [c_void_p]),
    "gencache_handle_retain": (c_void_p, [c_void_p]),
    "gencache_handle_release": (None, [c_void_p]),
    "gencache_del": (c_int, [c_void_p, c_char_p]),
    "gencache_filter_init": (None, [P(Filter)]),
    "gencache_invalidate": (c_int, [c_void_p, P(Filter), P(c_u64)]),
    "gencache_maintain": (c_int, [c_void_p, P(c_u64)]),
    "gencache_stats_get": (c_int, [c_void_p, P(Stats)]),
    "gencache_mrc_get": (c_int, [c_void_p, P(Mrc)]),
    # single flight (include/gencache/coalesce.h); gencache_claim blocks with the GIL released
    "gencache_claim_options_init": (None, [P(ClaimOptions)]),
    "gencache_claim": (c_int, [c_void_p, c_char_p, P(ClaimOptions), P(ClaimResult)]),
    "gencache_lease_fulfil": (c_int, [c_void_p, c_void_p, c_size_t, P(Meta)]),
    "gencache_lease_abandon": (c_int, [c_void_p]),
    "gencache_lease_fail": (c_int, [c_void_p, c_int]),
    # keys
    "gencache_norm_mode_parse": (c_int, [c_char_p, P(c_int)]),
    "gencache_normalize": (c_int, [c_int, c_char_p, c_size_t, P(c_void_p), P(c_size_t)]),
    "gencache_free": (None, [c_void_p]),
    "gencache_keyspace_new": (c_int, [P(c_void_p)]),
    "gencache_keyspace_free": (None, [c_void_p]),
    "gencache_keyspace_from_cache": (c_int, [c_void_p, P(c_void_p)]),
    "gencache_keyspace_set_layer": (c_int, [c_void_p, c_char_p, P(c_char_p), c_size_t, c_int]),
    "gencache_keyspace_set_mode": (c_int, [c_void_p, c_char_p, c_int]),
    "gencache_keyspace_add_synonym": (c_int, [c_void_p, c_char_p, c_char_p]),
    "gencache_keyspace_layer_count": (c_size_t, [c_void_p]),
    "gencache_keyspace_layer_name": (c_char_p, [c_void_p, c_size_t]),
    "gencache_request_parse_ex": (c_int, [c_void_p, c_char_p, c_size_t, c_uint, P(c_void_p),
                                          c_char_p, c_size_t]),
    "gencache_request_set_tenant": (c_int, [c_void_p, c_char_p]),
    "gencache_request_key": (c_int, [c_void_p, c_char_p, c_char_p, c_size_t]),
    "gencache_request_canonical": (c_int, [c_void_p, c_char_p, P(c_void_p), P(c_size_t)]),
    "gencache_request_prompt": (c_char_p, [c_void_p]),
    "gencache_request_free": (None, [c_void_p]),
    # images
    "gencache_image_digest_file": (c_int, [c_char_p, c_char_p]),
    "gencache_image_decode_file": (c_int, [c_char_p, c_void_p, P(c_void_p)]),
    "gencache_image_decode_memory": (c_int, [c_void_p, c_size_t, c_void_p, P(c_void_p)]),
    "gencache_image_from_pixels": (c_int, [c_void_p, c_u32, c_u32, c_size_t, c_int,
                                           P(c_void_p)]),
    "gencache_image_free": (None, [c_void_p]),
    "gencache_image_digest": (c_int, [c_void_p, c_char_p]),
    "gencache_image_hash": (c_int, [c_void_p, c_int, c_uint, c_void_p, c_char_p]),
    # tensors and codecs
    "gencache_codec_parse": (c_int, [c_char_p, P(c_int)]),
    "gencache_tensor_convert": (c_int, [c_int, c_void_p, c_int, c_void_p, c_size_t]),
    "gencache_quant_options_init": (None, [P(QuantOptions)]),
    "gencache_quant_size": (c_int, [P(TensorDesc), P(QuantOptions), P(c_size_t)]),
    "gencache_quant_encode": (c_int, [P(TensorDesc), c_void_p, c_size_t, P(QuantOptions),
                                      c_void_p, c_size_t, P(c_size_t)]),
    "gencache_quant_info_get": (c_int, [c_void_p, c_size_t, P(QuantInfo)]),
    "gencache_quant_decode": (c_int, [c_void_p, c_size_t, c_int, c_void_p, c_size_t,
                                      P(c_size_t)]),
    # storing tensors with a codec, reading them back (include/gencache/codec.h)
    "gencache_encode_options_init": (None, [P(EncodeOptions)]),
    "gencache_put_tensor": (c_int, [c_void_p, c_char_p, c_void_p, c_size_t, P(Meta),
                                    P(EncodeOptions)]),
    "gencache_tensor_encode": (c_int, [c_void_p, c_size_t, P(Meta), P(EncodeOptions),
                                       P(c_void_p)]),
    "gencache_encoded_data": (c_void_p, [c_void_p]),
    "gencache_encoded_size": (c_size_t, [c_void_p]),
    "gencache_encoded_meta": (P(Meta), [c_void_p]),
    "gencache_encoded_free": (None, [c_void_p]),
    "gencache_tensor_needs_decode": (c_int, [P(Meta), c_int]),
    "gencache_handle_decode_info": (c_int, [c_void_p, c_int, P(DecodeInfo)]),
    "gencache_handle_decode": (c_int, [c_void_p, c_int, c_void_p, c_size_t, P(c_size_t)]),
    # safetensors files and the chunk planner (include/gencache/tensor.h)
    "gencache_safetensors_options_init": (None, [P(SafetensorsOptions)]),
    "gencache_safetensors_parse": (c_int, [c_void_p, c_size_t, P(SafetensorsOptions),
                                           P(c_void_p)]),
    "gencache_safetensors_open": (c_int, [c_char_p, P(SafetensorsOptions), P(c_void_p)]),
    "gencache_safetensors_close": (None, [c_void_p]),
    "gencache_safetensors_count": (c_size_t, [c_void_p]),
    "gencache_safetensors_get": (c_int, [c_void_p, c_size_t, P(SafetensorsTensor)]),
    "gencache_safetensors_find": (c_int, [c_void_p, c_char_p, P(SafetensorsTensor)]),
    "gencache_safetensors_metadata": (c_char_p, [c_void_p, c_char_p]),
    "gencache_safetensors_write": (c_int, [c_char_p, P(SafetensorsTensor), c_size_t,
                                           P(c_char_p), c_size_t]),
    "gencache_chunk_options_init": (None, [P(ChunkOptions)]),
    "gencache_chunk_plan": (c_int, [P(ChunkOptions), P(Chunk), c_size_t, P(c_size_t)]),
    # sessions
    "gencache_session_options_init": (None, [P(SessionOptions)]),
    "gencache_session_open": (c_int, [c_void_p, c_char_p, P(SessionOptions), P(c_void_p)]),
    "gencache_session_put": (c_int, [c_void_p, c_char_p, c_void_p, c_size_t, P(Meta), c_u32,
                                     c_uint]),
    "gencache_session_get": (c_int, [c_void_p, c_char_p, P(c_void_p), P(c_size_t),
                                     P(TensorDesc)]),
    "gencache_session_step": (c_int, [c_void_p, P(c_u64)]),
    "gencache_session_stats_get": (c_int, [c_void_p, P(SessionStats)]),
    "gencache_session_close": (None, [c_void_p]),
    "gencache_session_reap": (c_int, [c_void_p, c_u64, P(c_u64)]),
    # KV windows
    "gencache_kv_options_init": (None, [P(KvOptions)]),
    "gencache_kv_new": (c_int, [P(KvOptions), P(c_void_p)]),
    "gencache_kv_append": (c_int, [c_void_p, c_u32, c_i64, c_void_p, c_void_p]),
    "gencache_kv_retrieve": (c_int, [c_void_p, c_u32, c_i64, P(KvView)]),
    "gencache_kv_prune": (c_int, [c_void_p, c_u64, P(c_u64)]),
    "gencache_kv_stats_get": (c_int, [c_void_p, P(KvStats)]),
    "gencache_kv_free": (None, [c_void_p]),
    # approximate step reuse
    "gencache_trajectory_store": (c_int, [c_void_p, P(Caller), c_void_p, c_char_p, c_uint, c_int,
                                          c_void_p, c_size_t, c_void_p, c_size_t, P(Meta),
                                          c_char_p]),
    "gencache_trajectory_lookup": (c_int, [c_void_p, P(Caller), c_char_p, c_char_p, c_int,
                                           c_void_p, c_size_t, P(c_void_p), P(TrajectoryMatch)]),
    "gencache_trajectory_set_thresholds": (c_int, [c_void_p, c_char_p, P(TrajectoryThreshold),
                                                   c_size_t]),
    "gencache_trajectory_get_thresholds": (c_int, [c_void_p, c_char_p, P(TrajectoryThreshold),
                                                   c_size_t, P(c_size_t)]),
    "gencache_trajectory_stats_get": (c_int, [c_void_p, P(TrajectoryStats)]),
}

_available: set[str] = set()
for _name, (_res, _args) in _PROTOTYPES.items():
    try:
        _fn = getattr(lib, _name)
    except AttributeError:
        continue
    _fn.restype = _res
    _fn.argtypes = _args
    _available.add(_name)



def _check_layouts() -> None:
    """The structs above mirror the C API's by hand: a field the header gained and this file did
    not would let C write past a ctypes buffer and corrupt the interpreter's memory, so each
    option struct's size is checked against what the library's _init() says it is (its
    struct_size field), once, at import. A mismatch is an ImportError that names the struct."""
    for init, cls in (("gencache_options_init", Options),
                      ("gencache_layer_options_init", LayerOptions),
                      ("gencache_meta_init", Meta), ("gencache_filter_init", Filter),
                      ("gencache_caller_init", Caller),
                      ("gencache_tenant_options_init", TenantOptions),
                      ("gencache_claim_options_init", ClaimOptions),
                      ("gencache_encode_options_init", EncodeOptions),
                      ("gencache_quant_options_init", QuantOptions),
                      ("gencache_session_options_init", SessionOptions),
                      ("gencache_kv_options_init", KvOptions),
                      ("gencache_safetensors_options_init", SafetensorsOptions),
                      ("gencache_chunk_options_init", ChunkOptions)):
        if init not in _available:
            continue
        buf = (ctypes.c_ubyte * 4096)()  # room for any size the library may write
        fn = getattr(lib, init)
        fn.argtypes = [ctypes.c_void_p]
        fn(ctypes.addressof(buf))
        fn.argtypes = _PROTOTYPES[init][1]
        want = c_size_t.from_buffer(buf).value
        if want != ctypes.sizeof(cls):
            raise ImportError("gencache: the library's %s is %d bytes, this package's %s is %d: "
                              "the package and %s do not match" % (
                                  init[:-5], want, cls.__name__, ctypes.sizeof(cls),
                                  library_path))


_check_layouts()


def _error_table() -> dict[int, str]:
    """code -> name for every code the library knows: gencache_errname() from 0 down to the
    first code it calls EUNKNOWN (the table is contiguous and only ever grows at the end)."""
    table: dict[int, str] = {}
    code = 0
    while True:
        name = lib.gencache_errname(code).decode("ascii")
        if name == "EUNKNOWN" or code < -4096:
            return table
        table[code] = name
        code -= 1


ERRNAMES.update(_error_table())
CODES.update({name: code for code, name in ERRNAMES.items()})
ENOTFOUND = CODES["ENOTFOUND"]


def has(*names: str) -> bool:
    """True when the loaded library exports every function named."""
    return all(n in _available for n in names)


def require(feature: str, *names: str) -> None:
    if not has(*names):
        raise unsupported(feature)


def cstr(s: Union[str, bytes, None], what: str = "string") -> Optional[bytes]:
    """A Python str (or bytes) as NUL-terminated UTF-8 for the C API; None stays NULL."""
    if s is None:
        return None
    if isinstance(s, bytes):
        b = s
    elif isinstance(s, str):
        b = s.encode("utf-8")
    else:
        raise TypeError("%s must be str, not %s" % (what, type(s).__name__))
    if b"\0" in b:
        raise ValueError("%s contains a NUL character" % what)
    return b


def pystr(b: Optional[bytes]) -> Optional[str]:
    return None if b is None else b.decode("utf-8", "replace")



# ---- the C extension (gencache/_fast.c) ---------------------------------------------------------

def _fast_candidates() -> Iterator[str]:
    """Where the extension may be: installed beside this file, else the build tree of the loaded
    library (<tree>/src/libgencache.so -> <tree>/bindings/python/gencache/_fast.*.so)."""
    import importlib.machinery
    here = os.path.dirname(os.path.abspath(__file__))
    tree = os.path.dirname(os.path.dirname(os.path.abspath(library_path)))
    for d in (here, os.path.join(tree, "bindings", "python", "gencache")):
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            yield os.path.join(d, "_fast" + suffix)


def _load_fast() -> Optional[ModuleType]:
    """The extension module bound to the loaded library, or None: $GENCACHE_NO_EXTENSION=1, or
    none was built (the package then runs on ctypes alone)."""
    if os.environ.get("GENCACHE_NO_EXTENSION") not in (None, "", "0"):
        return None
    import importlib.util
    for path in _fast_candidates():
        if not os.path.exists(path):
            continue
        spec = importlib.util.spec_from_file_location(__package__ + "._fast", path)
        if spec is None or spec.loader is None:
            continue
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        names = ("gencache_get", "gencache_peek", "gencache_handle_data", "gencache_handle_size",
                 "gencache_handle_meta", "gencache_handle_retain", "gencache_handle_release",
                 "gencache_meta_init")
        addresses = {n: ctypes.cast(getattr(lib, n), c_void_p).value for n in names}
        from ._tensors import torch_from_numpy
        mod.bind(addresses, error, torch_from_numpy)
        return mod
    return None

fast: Optional[ModuleType] = _load_fast()
fast_path: Optional[str] = getattr(fast, "__file__", None)

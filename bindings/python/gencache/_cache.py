"""gencache.Cache: an in-process cache over libgencache.

Lookups hand out read handles on the cache's own memory (no copy); tensors come back as
read-only numpy arrays or torch tensors sharing that memory. A Cache may be used from many
threads: each call is counted in and out, and close() waits for the calls in progress before it
closes the C cache, so no call ever runs on a closed cache (the C API forbids that).
"""
from __future__ import annotations

import ctypes
import os
import itertools
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Union

from . import _config
from . import _lib, _tenant
from . import _tensors as T
from ._coalesce import Flights
from ._stage import StageMixin
from ._handle import Handle, _Ref
from ._image import image_digest, image_hash
from ._keys import Keyspace, normalize
from ._lib import lib, cstr
from ._keys import Request
from ._device import DeviceTier, exact_keys, preferred_patterns

if TYPE_CHECKING:
    from ._session import KVWindow, Session

_c_get = lib.gencache_get
_c_meta_addr = lib["gencache_handle_meta"]  # a second function object: returns the address
_c_meta_addr.restype = ctypes.c_void_p
_c_meta_addr.argtypes = [ctypes.c_void_p]
_Meta_at = _lib.Meta.from_address  # reading the struct in place is faster than POINTER.contents
_c_data = lib.gencache_handle_data
_c_size = lib.gencache_handle_size
_c_release = lib.gencache_handle_release
_string_at = ctypes.string_at
_fast = _lib.fast  # the C extension, or None: the ctypes path below
_FastRef = getattr(_fast, "Ref", None)
_KINDS = {None: 0, "numpy": 1, "torch": 2}
_DEFAULT_DEVICE_BYTES = 1 << 30
_QUANT_CT = T.QUANT_CONTENT_TYPE.encode()
_TORCH_CT = T.CT_TORCH.encode()


_SCOPES = {"global": 0, "tenant": 1, "session": 2}
_LOG_LEVELS = {"error": 0, "warn": 1, "info": 2, "debug": 3}
_OPTION_FIELDS = ("mem_max_bytes", "mem_max_entries", "mem_shards", "ghost_max_entries",
                  "verify_mem_reads", "disk_max_bytes", "disk_max_entries", "redis_timeout_ms",
                  "redis_max_value_bytes", "writeback_max_bytes", "mem_max_pinned_bytes")


def _ms(seconds: Optional[float], what: str) -> int:
    if seconds is None:
        return 0
    if seconds < 0:
        raise ValueError("%s must not be negative" % what)
    return int(round(seconds * 1000))


def _bytes_arg(data: Any) -> tuple[Any, int, Any]:
    """(pointer, size, keep-alive) for any contiguous buffer, without a copy when possible."""
    if isinstance(data, bytes):
        return data, len(data), data
    mv = memoryview(data)
    if not mv.c_contiguous:
        raise ValueError("the buffer must be contiguous")
    mv = mv.cast("B")
    if len(mv) == 0:
        return b"", 0, None
    if not mv.readonly:
        buf = (ctypes.c_char * len(mv)).from_buffer(mv)
        return ctypes.addressof(buf), len(mv), (buf, mv)
    try:
        import numpy as np
        a = np.frombuffer(mv, dtype=np.uint8)
        return a.ctypes.data, len(mv), a
    except ImportError:
        b = mv.tobytes()
        return b, len(b), b


class Cache(StageMixin):
    """An in-process cache (gencache_open). Options, by keyword or from `config` (a gencache.yaml
    path, or a dict of the same keys, read by the library's loader; keywords win): mem_max_bytes, mem_max_entries, mem_shards,
    ghost_max_entries, verify_mem_reads, data_dir (disk tier), disk_max_bytes,
    disk_max_entries, redis_url, redis_timeout_ms, redis_max_value_bytes; layers
    ({name: {fields, scope, ttl_s, sliding_ttl, write_through, shared,
    prompt_normalization}}); modes ({model or None:
    normalization mode}); log (a callable(level_name, message), called from any thread);
    device, device_bytes (default 1 GiB), device_preferred: a device tier (gencache.DeviceTier)
    keeping recently used tensors resident on that torch device ("cuda:0", or any torch device),
    served by get_tensor(key, device=<it>); device_preferred are key patterns (the config's
    `preferred:` too) loaded at start when they name one key, on every put otherwise, and
    dropped from the device last."""

    def __init__(self, config: Union[None, str, "os.PathLike[str]", dict[str, Any]] = None,
                 **options: Any) -> None:
        # The file (or dict) is read by the library; keywords override what it sets.
        cfg = _config.load(config)
        self._mu = threading.Lock()
        self._enters = itertools.count()  # calls that began (see _enter)
        self._leaves = itertools.count()  # calls that ended
        self._ptr = None
        self._core = None
        self.device_tier: Optional[DeviceTier] = None
        self._flights = Flights(self)
        # Open sessions and KV windows, closed first.
        self._children: weakref.WeakSet[Any] = weakref.WeakSet()
        o = _lib.Options()
        lib.gencache_options_init(ctypes.byref(o))
        if cfg is not None:
            lib.gencache_config_options(cfg.ptr, ctypes.byref(o))
        opts = dict(options)
        policy = opts.pop("mem_policy", None)
        if policy is not None:  # "lru", "gdsf" or "s3fifo"
            policies = ("lru", "gdsf", "s3fifo")
            if policy not in policies:
                raise ValueError("mem_policy: expected one of %s, got %r" % (policies, policy))
            o.mem_policy = policies.index(policy)
        rate = opts.pop("mrc_sample_rate", None)
        if rate is not None:
            o.mrc_sample_rate = float(rate)
        for name in _OPTION_FIELDS:
            if opts.get(name) is not None:
                setattr(o, name, int(opts.pop(name)))
            else:
                opts.pop(name, None)
        # The C strings must stay alive while gencache_open() runs; it copies what it keeps.
        if "data_dir" in opts:
            data_dir = opts.pop("data_dir")
            o.data_dir = cstr(None if data_dir is None else str(data_dir), "data_dir")
        if "redis_url" in opts:
            o.redis_url = cstr(opts.pop("redis_url"), "redis_url")
        log = opts.pop("log", None)
        self._log_cb = None
        if log is not None:
            names = {v: k for k, v in _LOG_LEVELS.items()}

            def log_cb(_userdata: Any, level: int, message: Optional[bytes]) -> None:
                try:
                    log(names.get(level, str(level)), _lib.pystr(message))
                except Exception:  # an exception must never unwind into C
                    pass

            self._log_cb = _lib.LOG_FN(log_cb)  # kept alive as long as the cache
            o.log_fn = self._log_cb
            o.log_level = _LOG_LEVELS.get(opts.pop("log_level", "info"), 2)
        layers = opts.pop("layers", None) or {}
        modes = opts.pop("modes", None) or {}
        device = opts.pop("device", None)
        device_bytes = opts.pop("device_bytes", None)
        device_preferred = list(opts.pop("device_preferred", None) or [])
        if device is not None:
            # The config's `preferred:` entries are the device tier's too.
            device_preferred += preferred_patterns(cfg.ptr if cfg is not None else None)
        if opts:
            raise TypeError("unknown Cache option(s): %s" % ", ".join(sorted(opts)))
        p = ctypes.c_void_p()
        try:
            if cfg is not None:
                rc = lib.gencache_open_config(ctypes.byref(p), cfg.ptr, ctypes.byref(o))
            else:
                rc = lib.gencache_open(ctypes.byref(p), ctypes.byref(o))
            _lib.check(rc, "gencache_open")
        finally:
            if cfg is not None:
                cfg.free()
        self._ptr = p.value
        if _fast is not None:
            self._core = _fast.Core(self._ptr)  # the hot lookups, in C
        self._keyspace = None
        try:
            # The view of the cache's own layer registry: keys follow define_layer() and the
            # config's layers. Made now, not on first use, so threads never race to create it.
            if _lib.has("gencache_keyspace_from_cache"):
                self._keyspace = Keyspace(self._ptr)
            for mode_model, mode in modes.items():
                self.keyspace.set_mode(mode, mode_model)
            for name, spec in layers.items():
                self.define_layer(name, **spec)
            if device is not None:
                self.device_tier = DeviceTier(
                    self, device, _DEFAULT_DEVICE_BYTES if device_bytes is None
                    else _config.parse_size(device_bytes, "device_bytes"), device_preferred)
                self.device_tier.load(exact_keys(device_preferred))
        except BaseException:
            self.close()
            raise

    # ---- lifetime -------------------------------------------------------------------------------
    # Calls in progress are counted without a lock (this runs twice per call, on the hot path of
    # every lookup): a call first counts itself in (_enters), then reads the C pointer; close()
    # first clears the pointer, then waits until as many calls have left as have entered. A
    # call that counted itself in before the pointer was cleared is waited for; one that came
    # later sees None and leaves. next() on itertools.count is atomic under the GIL.
    def _enter(self) -> int:
        next(self._enters)
        ptr = self._ptr
        if ptr is None:
            next(self._leaves)
            raise ValueError("the cache is closed")
        return ptr

    def _leave(self) -> None:
        next(self._leaves)

    def _in_progress(self) -> int:
        # Leaves first, then enters: equal counts then mean nobody was inside in between.
        left = int(repr(self._leaves)[6:-1])
        entered = int(repr(self._enters)[6:-1])
        return entered - left

    def close(self) -> None:
        """Waits for calls in progress, then closes the cache. Handles and the arrays made from
        them stay valid; sessions and KV windows still open are closed first. Closing twice
        does nothing."""
        for child in list(getattr(self, "_children", ())):
            child.close()
        tier = getattr(self, "device_tier", None)
        if tier is not None:
            tier.clear()
        with self._mu:  # one closer
            ptr, self._ptr = self._ptr, None
        core = getattr(self, "_core", None)
        if core is not None:
            core.detach()  # refuses new calls, waits for those inside
        if ptr:
            delay = 0.0001
            while self._in_progress():
                time.sleep(delay)
                delay = min(delay * 2, 0.01)
            lib.gencache_close(ptr)

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def __enter__(self) -> "Cache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_mu", None) is not None:
            self.close()

    # ---- layers and keys ------------------------------------------------------------------------
    @property
    def keyspace(self) -> Keyspace:
        """The Keyspace behind key(): layer recipes and normalization modes."""
        if self._keyspace is None:
            raise _lib.unsupported("key derivation")
        return self._keyspace

    def define_layer(self, name: str, fields: Optional[Sequence[str]] = None,
                     scope: Optional[str] = None, ttl_s: Union[None, float, str] = None,
                     sliding_ttl: Optional[bool] = None, write_through: Optional[bool] = None,
                     prompt_normalization: Optional[str] = None,
                     shared: Optional[bool] = None) -> None:
        """Defines a layer in the cache's layer registry, or changes a known one: its key recipe
        (`fields`, kept when None), scope, TTL, write policy, whether entries may go to Redis,
        and prompt_normalization (the default mode of models without one). Keys from key()
        follow at once. Call it before the cache is used."""
        if scope is not None and scope not in _SCOPES:
            raise ValueError("scope must be global, tenant or session, not %r" % (scope,))
        lo = _lib.LayerOptions()
        lib.gencache_layer_options_init(ctypes.byref(lo))
        bname = cstr(name, "layer")
        ptr = self._enter()
        try:
            lib.gencache_layer_get(ptr, bname, ctypes.byref(lo))  # a new layer keeps the defaults
            lo.name = bname
            keep = None
            if fields is not None:
                names = [cstr(f, "field") for f in fields]
                keep = (ctypes.c_char_p * max(len(names), 1))(*names)
                lo.fields = ctypes.cast(keep, ctypes.POINTER(ctypes.c_char_p))
                lo.n_fields = len(names)
            else:
                lo.fields = None
                lo.n_fields = 0
            if scope is not None:
                lo.scope = _SCOPES[scope]
            if ttl_s is not None:
                lo.ttl_ms = _ms(_config.parse_seconds(ttl_s), "ttl_s")
            if sliding_ttl is not None:
                lo.sliding_ttl = int(bool(sliding_ttl))
            if write_through is not None:
                lo.write_through = int(bool(write_through))
            if shared is not None:
                lo.shared = int(bool(shared))
            if prompt_normalization is not None:
                from ._keys import mode_code
                lo.prompt_normalization = mode_code(prompt_normalization)
            _lib.check(lib.gencache_layer_define(ptr, ctypes.byref(lo)), "layer %r" % name)
            del keep
        finally:
            self._leave()

    def has_layer(self, name: str) -> bool:
        lo = _lib.LayerOptions()
        ptr = self._enter()
        try:
            return bool(lib.gencache_layer_get(ptr, cstr(name, "layer"), ctypes.byref(lo)) == 0)
        finally:
            self._leave()

    def key(self, request: Request, layer: Optional[str] = None,
            tenant: Optional[str] = None) -> Any:
        """The key "<layer>/<hex>" of a request (dict or JSON) for `layer`, exactly as the C API
        and the CLI derive it; with no layer, {layer: key} for every layer it has a key in. An
        "image" given as a path, numpy array or PIL image is replaced by its pixel digest."""
        return self.keyspace.key(request, layer, tenant)

    def canonical(self, request: Request, layer: str, tenant: Optional[str] = None) -> str:
        """The canonical document whose SHA-256 is the key."""
        return self.keyspace.canonical(request, layer, tenant)

    normalize = staticmethod(normalize)
    image_digest = staticmethod(image_digest)
    image_hash = staticmethod(image_hash)

    # ---- bytes ----------------------------------------------------------------------------------
    def put(self, key: str, data: Any, *, cost_s: float = 0.0,
            ttl_s: Union[None, float, str] = None, tags: Union[str, Sequence[str], None] = None,
            content_type: Optional[str] = None, model: Optional[str] = None,
            tenant: Optional[str] = None, pinned: bool = False, dtype: Optional[str] = None,
            shape: Optional[Sequence[int]] = None) -> None:
        """Stores `data` (bytes or any contiguous buffer; a numpy array or torch tensor goes to
        put_tensor()) under `key`. cost_s: seconds it took to compute (what a hit saves).
        dtype/shape describe raw tensor bytes. Raises GencacheError (EINVAL, ETOOBIG, EFULL,
        NotFound for an unknown layer)."""
        if T.is_numpy(data) or T.is_torch(data):
            return self.put_tensor(key, data, cost_s=cost_s, ttl_s=ttl_s, tags=tags,
                                   model=model, tenant=tenant, pinned=pinned)
        ptr, size, keep = _bytes_arg(data)
        shape_t = None
        dcode = T.NONE
        if dtype is not None:
            dcode = T.dtype_code(dtype)
            shape_t = tuple(shape) if shape is not None else (size // T.ITEMSIZE[dcode],)
        self._put(key, ptr, size, cost_s=cost_s, ttl_s=ttl_s, tags=tags,
                  content_type=content_type, model=model, tenant=tenant, pinned=pinned,
                  dtype=dcode, shape=shape_t)
        del keep

    def _put(self, key: str, ptr: Any, size: int, *, cost_s: float, ttl_s: Any, tags: Any,
             content_type: Optional[str], model: Optional[str], tenant: Optional[str],
             pinned: bool, dtype: int, shape: Optional[Sequence[int]],
             encode: Optional[_lib.EncodeOptions] = None) -> None:
        m = _lib.Meta()
        lib.gencache_meta_init(ctypes.byref(m))
        m.content_type = cstr(content_type, "content_type")
        m.tenant = cstr(tenant, "tenant")
        m.model = cstr(model, "model")
        if tags is not None and not isinstance(tags, str):
            tags = ",".join(tags)
        m.tags = cstr(tags, "tags")
        m.cost_ms = _ms(cost_s, "cost_s")
        m.ttl_ms = _ms(None if ttl_s is None else _config.parse_seconds(ttl_s), "ttl_s")
        m.pinned = int(bool(pinned))
        if dtype != T.NONE and shape is not None:
            if len(shape) > _lib.MAX_DIMS:
                raise ValueError("tensors have at most %d dimensions" % _lib.MAX_DIMS)
            m.dtype = dtype
            m.ndim = len(shape)
            for i, d in enumerate(shape):
                m.shape[i] = int(d)
        bkey = cstr(key, "key")
        lease = self._flights.take_lease(key)  # get_or_compute storing what it computed
        cptr = self._enter()
        try:
            enc = ctypes.c_void_p()
            mp = ctypes.byref(m)
            if encode is not None and lease:
                # The lease stores what it is given: encode first, so the waiters get the
                # same stored form as a plain put_tensor would leave.
                rc = lib.gencache_tensor_encode(ptr, size, mp, ctypes.byref(encode),
                                                ctypes.byref(enc))
                if rc == 0:
                    ptr = lib.gencache_encoded_data(enc)
                    size = lib.gencache_encoded_size(enc)
                    mp = lib.gencache_encoded_meta(enc)
            else:
                rc = 0
            if rc != 0:
                lib.gencache_lease_abandon(lease)
            elif lease:
                rc = lib.gencache_lease_fulfil(lease, ptr, size, mp)
                if rc == _lib.CODES["ETIMEDOUT"]:  # the lease passed on: store all the same
                    rc = lib.gencache_put(cptr, bkey, ptr, size, mp)
            elif encode is None:
                rc = lib.gencache_put(cptr, bkey, ptr, size, mp)
            else:
                rc = lib.gencache_put_tensor(cptr, bkey, ptr, size, mp, ctypes.byref(encode))
            if enc:
                lib.gencache_encoded_free(enc)
        finally:
            self._leave()
        _lib.check(rc, "put %s" % key)
        tier = self.device_tier
        if tier is not None and tier.drop(key, "stale") | tier.is_preferred(key):
            tier.refresh(key)  # a preferred entry (or one that was resident) goes to the device

    def _lookup(self, key: str, fn: Any) -> Optional[Handle]:
        out = ctypes.c_void_p()
        bkey = cstr(key, "key")
        ptr = self._enter()
        try:
            rc = fn(ptr, bkey, ctypes.byref(out))
        finally:
            self._leave()
        if rc == -3:  # ENOTFOUND: a miss
            return None
        _lib.check(rc, "get %s" % key)
        return Handle(out.value or 0)

    def get(self, key: str, *, cost_s: Optional[float] = None) -> Optional[Handle]:
        """A Handle on the stored value (no copy), or None on a miss. Counts as an access.
        cost_s: what computing the value would cost this request; a hit credits that to the
        layer's savings instead of the cost stored with the entry."""
        if cost_s is None:
            return self._lookup(key, lib.gencache_get)
        return self.as_owner(cost_s)._lookup(key, lib.gencache_get_as)

    def as_owner(self, cost_s: Optional[float] = None) -> _tenant.TenantView:
        """The owner's view with a per-request cost (TenantView with no tenant)."""
        return _tenant.TenantView(self, None, cost_s=cost_s)

    def peek(self, key: str) -> Optional[Handle]:
        """Like get(), but counts no access and extends no expiry."""
        return self._lookup(key, lib.gencache_peek)

    def get_bytes(self, key: str) -> Optional[bytes]:
        """A copy of the stored bytes, or None on a miss."""
        core = self._core
        if core is not None:
            found: Optional[bytes] = core.get_bytes(key)
            return found
        bkey = key.encode() if type(key) is str else (cstr(key, "key") or b"")
        if b"\0" in bkey:
            raise ValueError("key contains a NUL character")
        out = ctypes.c_void_p()
        ptr = self._enter()
        try:
            rc = _c_get(ptr, bkey, out)
        finally:
            self._leave()
        if rc:
            if rc == _lib.ENOTFOUND:
                return None
            _lib.check(rc, "get %s" % key)
        h = out.value
        try:
            return _string_at(_c_data(h), _c_size(h))
        finally:
            _c_release(h)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, (str, bytes)):
            return False
        h = self.peek(key)  # type: ignore[arg-type]
        if h is None:
            return False
        h.close()
        return True

    def delete(self, key: str) -> bool:
        """Removes `key` from every tier. Returns True when something was removed, False when
        nothing was stored. Handles on the value stay valid."""
        bkey = cstr(key, "key")
        ptr = self._enter()
        try:
            rc = lib.gencache_del(ptr, bkey)
        finally:
            self._leave()
        if self.device_tier is not None:
            self.device_tier.drop(key, "stale")
        if rc == -3:
            return False
        _lib.check(rc, "delete %s" % key)
        return True

    def invalidate(self, key: Optional[str] = None, *, layer: Optional[str] = None,
                   tenant: Optional[str] = None, tag: Optional[str] = None,
                   model: Optional[str] = None, older_than_s: Optional[float] = None) -> int:
        """Removes every entry matching all the given criteria; returns how many. At least one
        criterion is required (nothing is removed by accident)."""
        f = _lib.Filter()
        lib.gencache_filter_init(ctypes.byref(f))
        f.key, f.layer, f.tenant = cstr(key), cstr(layer), cstr(tenant)
        f.tag, f.model = cstr(tag), cstr(model)
        f.older_than_ms = _ms(older_than_s, "older_than_s")
        n = ctypes.c_uint64()
        ptr = self._enter()
        try:
            rc = lib.gencache_invalidate(ptr, ctypes.byref(f), ctypes.byref(n))
        finally:
            self._leave()
        _lib.check(rc, "invalidate")
        if self.device_tier is not None and n.value:
            self.device_tier.prune()
        return int(n.value)

    def maintain(self) -> int:
        """Removes expired entries now; returns how many."""
        n = ctypes.c_uint64()
        ptr = self._enter()
        try:
            rc = lib.gencache_maintain(ptr, ctypes.byref(n))
        finally:
            self._leave()
        _lib.check(rc, "maintain")
        return n.value

    def stats(self) -> dict[str, Any]:
        """Counters: {"layers": {name: {...}}, "tiers": {name: {...}}, "invalidated": n}."""
        s = _lib.Stats()
        s.struct_size = ctypes.sizeof(s)
        ptr = self._enter()
        try:
            rc = lib.gencache_stats_get(ptr, ctypes.byref(s))
            _lib.check(rc, "stats")
            layers = {}
            for i in range(min(s.n_layers, _lib.MAX_LAYERS)):
                ls = s.layers[i]
                layers[_lib.pystr(ls.layer)] = {
                    f: getattr(ls, f) for f, _ in _lib.LayerStats._fields_ if f != "layer"}
            tiers = {}
            for i in range(min(s.n_tiers, _lib.MAX_TIERS)):
                ts = s.tiers[i]
                tiers[_lib.pystr(ts.tier)] = {
                    f: getattr(ts, f) for f, _ in _lib.TierStats._fields_ if f != "tier"}
            m = _lib.Mrc()
            m.struct_size = ctypes.sizeof(m)
            _lib.check(lib.gencache_mrc_get(ptr, ctypes.byref(m)), "stats")
            if m.n_points and s.n_tiers:
                # The memory tier's miss-ratio curve, as GET /v1/stats shows it.
                tiers[_lib.pystr(s.tiers[0].tier)]["mrc"] = [
                    {"scale": p.scale, "hit_ratio": p.hit_ratio,
                     "gpu_seconds_saved": p.gpu_seconds_saved}
                    for p in m.points[:min(m.n_points, _lib.MRC_POINTS)]]
        finally:
            self._leave()
        return {"layers": layers, "tiers": tiers, "invalidated": s.invalidated}

    # ---- tenants --------------------------------------------------------------------------------
    def define_tenant(self, name: str, *, priority: str = "normal", quota_bytes: int = 0,
                      admin: bool = False) -> None:
        """Defines (or redefines) a tenant: priority "high", "normal" or "batch", a quota of live
        bytes (0: none), and whether it is an admin. A config's `tenants:` are defined already."""
        _tenant.define(self, name, priority=priority, quota_bytes=quota_bytes, admin=admin)

    def as_tenant(self, name: str) -> _tenant.TenantView:
        """A view of the cache on tenant `name`'s behalf, with the rules the daemon applies to a
        token's tenant (namespaces, shared-entry ownership, quota): see TenantView."""
        return _tenant.TenantView(self, name)

    def tenant_stats(self, name: str) -> dict[str, Any]:
        """A tenant's counters and usage, as the daemon's GET /v1/stats shows them to it."""
        return _tenant.stats(self, name)

    # ---- tensors --------------------------------------------------------------------------------
    def put_tensor(self, key: str, tensor: Any, *, cost_s: float = 0.0,
                   codec: Optional[str] = None, axis: int = 0, group_size: int = 128,
                   ttl_s: Union[None, float, str] = None,
                   tags: Union[str, Sequence[str], None] = None, model: Optional[str] = None,
                   tenant: Optional[str] = None, pinned: bool = False) -> None:
        """Stores a numpy array or torch tensor (f32, f16, bf16, i8, u8, i32, i64) with its dtype
        and shape. codec: None/"none" (exact bytes), "f16"/"bf16" (floats narrowed), "int8",
        "int8-channel" (along `axis`) or "int8-group" (`group_size` elements per scale). The
        library encodes and marks the entry (gencache_put_tensor), exactly as the daemon does
        for X-Gencache-Codec, so either reads what the other stored."""
        from . import _codec
        opts = _codec.encode_options(codec, axis, group_size)
        prep = T.prepare(tensor)
        ct = T.CT_TORCH if prep.kind == "torch" else T.CT_NUMPY
        try:
            self._put(key, prep.ptr, prep.size, content_type=ct, dtype=prep.dtype,
                      shape=prep.shape, cost_s=cost_s, ttl_s=ttl_s, tags=tags, model=model,
                      tenant=tenant, pinned=pinned, encode=opts)
        except _lib.GencacheError as e:
            if e.name == "EUNSUPPORTED":
                raise TypeError("codec %s takes an f32, f16 or bf16 tensor, not %s"
                                % (codec, T.DTYPE_NAMES.get(prep.dtype))) from None
            raise
        del prep

    def get_tensor(self, key: str, device: Any = None, *, dtype: Optional[str] = None,
                   kind: Optional[str] = None, copy: bool = False) -> Any:
        """The tensor stored under `key`, or None on a miss. kind: "numpy" or "torch" (default:
        what was stored; bf16 and any device imply torch). Without dtype, device or copy the
        result shares the cache's memory read-only (no copy): numpy marks it non-writable; a
        torch tensor must not be written (.clone() it). Quantized entries are dequantized to
        the stored dtype, or `dtype`."""
        tier = self.device_tier
        if (tier is not None and device is not None and dtype is None and not copy and
                kind in (None, "torch") and tier.matches(device)):
            return tier.get(key)  # resident on the device, or promoted there now
        core = self._core
        if core is not None and device is None and dtype is None and not copy and kind in _KINDS:
            # The hot path of a pipeline's hits, in C: the view (or tensor), None on a miss, or
            # a reference for the general path below.
            r = core.get_tensor(key, _KINDS[kind])
            if type(r) is not _FastRef:
                return r
            with Handle(r.ptr, r) as h:
                return tensor_from_handle(h, device=device, dtype=dtype, kind=kind, copy=copy)
        # The ctypes path: the use count (_enter/_leave) and the key conversion written inline.
        bkey = key.encode() if type(key) is str else (cstr(key, "key") or b"")
        if b"\0" in bkey:
            raise ValueError("key contains a NUL character")
        out = ctypes.c_void_p()
        next(self._enters)
        ptr = self._ptr
        if ptr is None:
            next(self._leaves)
            raise ValueError("the cache is closed")
        try:
            rc = _c_get(ptr, bkey, out)
        finally:
            next(self._leaves)
        if rc:
            if rc == -3:
                return None
            _lib.check(rc, "get %s" % key)
        ref = _Ref(out.value)  # released when the last view of it goes
        m = _Meta_at(_c_meta_addr(ref.ptr))
        ct = m.content_type
        dt = m.dtype
        if (dt == T.NONE or dtype is not None or device is not None or copy or
                (kind is not None and (kind not in ("numpy", "torch") or
                                       (kind == "numpy" and dt == T.BF16))) or
                (ct is not None and ct.startswith(_QUANT_CT))):
            with Handle(ref.ptr or 0, ref) as h:
                return tensor_from_handle(h, device=device, dtype=dtype, kind=kind, copy=copy)
        # The common case, kept short: a view of the stored tensor as it was put. The view
        # takes over this lookup's reference, so the bytes live exactly as long as the view.
        arr = ref.view(_c_data(ref.ptr), tuple(m.shape[:m.ndim]), T.TYPESTR[dt])
        if kind == "torch" or (kind is None and (ct == _TORCH_CT or dt == T.BF16)):
            return T.torch_from_numpy(arr, dt)
        return arr

    # ---- hooks of the compute-once helpers (gencache._stage.StageMixin) -------------------------
    def _compute_once(self, key: str, device: Any, fn: Callable[[], Any],
                      store: Callable[[Any, float], Any]) -> tuple[Any, str]:
        # The library's single flight: shared with C callers of this cache, blocking in C.
        return self._flights.run(key, fn, store, lambda h: value_from_handle(h, device=device))

    def _lookup_value(self, key: str, device: Any) -> tuple[bool, Any]:
        h = self.get(key)
        if h is None:
            return False, None
        with h:
            return True, value_from_handle(h, device=device)

    def _ensure_layer(self, layer: str, fields: Sequence[str]) -> None:
        if not self.has_layer(layer) or layer not in self.keyspace.layers():
            self.define_layer(layer, fields=fields)

    # ---- sessions and KV windows ----------------------------------------------------------------
    def session(self, session_id: str, *, ttl_s: Optional[float] = None,
                max_bytes: Optional[int] = None) -> "Session":
        """Opens a generation session (gencache_session_open): step-scoped values."""
        from ._session import Session
        return Session(self, session_id, ttl_s=ttl_s, max_bytes=max_bytes)

    def kv_window(self, n_layers: int, k_elems: int, v_elems: int, *, dtype: str = "f16",
                  int8: bool = False, initial_positions: Optional[int] = None,
                  offload: Optional[Callable[[dict[str, Any]], None]] = None,
                  charge_cache: bool = True) -> "KVWindow":
        """A KV window (gencache_kv_new) whose buffers count against this cache's budget."""
        from ._session import KVWindow
        return KVWindow(n_layers, k_elems, v_elems, dtype=dtype, int8=int8,
                        initial_positions=initial_positions, offload=offload,
                        cache=self if charge_cache else None)

    def __repr__(self) -> str:
        return "<gencache.Cache %s>" % ("closed" if self.closed else "open")


def value_from_handle(h: Handle, device: Any = None) -> Any:
    """What get_or_compute() returns on a hit: a tensor for a tensor entry, else bytes."""
    from . import _codec
    ct = h.content_type
    if h.shape is not None or ct.startswith(T.QUANT_CONTENT_TYPE) or _codec.needs_decode(h):
        return tensor_from_handle(h, device=device)
    return h.bytes()


def tensor_from_handle(h: Handle, device: Any = None, dtype: Optional[str] = None,
                       kind: Optional[str] = None, copy: bool = False) -> Any:
    from . import _codec
    ct = h.content_type
    if ct.startswith(T.QUANT_CONTENT_TYPE):  # an int8 entry of an older package version
        origin = "torch" if ct.endswith("origin=torch") else "numpy"
        arr, code = _codec.dequantize_legacy(h, dtype)
        return _codec.finish(arr, code, origin, device, kind, copy=False)
    if _codec.needs_decode(h, dtype):
        # An int8 payload or a conversion: the library decodes, into a new array.
        arr, code, ct = _codec.decode(h, dtype)
        origin = "torch" if ct == T.CT_TORCH else "numpy"
        return _codec.finish(arr, code, origin, device, kind, copy=False)
    if h.shape is None:
        raise TypeError("%s is not a tensor entry" % h.meta["key"])
    origin = "torch" if ct == T.CT_TORCH else "numpy"
    return _codec.finish(h.array(), h._dtype, origin, device, kind, copy)

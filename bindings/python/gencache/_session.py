"""Sessions (step-lifetime values of one generation) and KV windows (attention keys and values
per layer) over src/session/.

Unlike read handles, the C API gives these values no reference count: a session value's bytes
are freed by the step that expires it, and a KV view is invalidated by the next append, prune or
retrieve. Python code cannot be trusted to drop a view in time, so both objects hand out copies,
taken under a lock that also serializes step/put/close, so a copy never reads freed memory.
"""
from __future__ import annotations

import ctypes
import threading
from typing import TYPE_CHECKING, Any, Callable, Optional

from . import _lib
from . import _tensors as T
from ._lib import lib, cstr

if TYPE_CHECKING:
    from ._cache import Cache

PERSISTENT = 1
_INT64_MAX = (1 << 63) - 1


def _desc_shape(desc: Any) -> tuple[int, ...]:
    return tuple(desc.shape[i] for i in range(min(desc.ndim, _lib.MAX_DIMS)))


class Session:
    """A generation session (gencache_session_open). Values put with steps=N live for N steps
    from the current one; persistent=True keeps one for the whole session. Close it (or use it
    as a context manager) before the cache is closed; Cache.close() closes it otherwise."""

    def __init__(self, cache: "Cache", session_id: str, ttl_s: Optional[float] = None,
                 max_bytes: Optional[int] = None) -> None:
        _lib.require("sessions", "gencache_session_open", "gencache_session_put",
                     "gencache_session_get", "gencache_session_step", "gencache_session_close")
        self._cache = cache
        self._lock = threading.Lock()
        self.id = session_id
        o = _lib.SessionOptions()
        lib.gencache_session_options_init(ctypes.byref(o))
        if ttl_s is not None:
            o.ttl_ms = int(round(ttl_s * 1000))
        if max_bytes is not None:
            o.max_bytes = int(max_bytes)
        p = ctypes.c_void_p()
        cptr = cache._enter()
        try:
            rc = lib.gencache_session_open(cptr, cstr(session_id, "session id"), ctypes.byref(o),
                                           ctypes.byref(p))
        finally:
            cache._leave()
        _lib.check(rc, "session %r" % session_id)
        self._ptr = p.value
        cache._children.add(self)

    def _live(self) -> int:
        if self._ptr is None:
            raise ValueError("the session is closed")
        return self._ptr

    def put(self, name: str, value: Any, steps: int = 1, persistent: bool = False) -> None:
        """Stores a copy of `value` (bytes, numpy array or torch tensor) under `name`."""
        m = None
        if T.is_numpy(value) or T.is_torch(value):
            prep = T.prepare(value)
            m = _lib.Meta()
            lib.gencache_meta_init(ctypes.byref(m))
            m.dtype = prep.dtype
            m.ndim = len(prep.shape)
            for i, d in enumerate(prep.shape):
                m.shape[i] = d
            ptr: Any = prep.ptr or None
            size = prep.size
            keep: Any = prep
        else:
            keep = bytes(value)
            ptr, size = keep, len(keep)
        with self._lock:
            rc = lib.gencache_session_put(self._live(), cstr(name, "name"), ptr, size,
                                          ctypes.byref(m) if m is not None else None,
                                          int(steps), PERSISTENT if persistent else 0)
        del keep
        _lib.check(rc, "session put %r" % name)

    def get(self, name: str, kind: Optional[str] = None) -> Any:
        """A copy of the value: a numpy array (torch for bf16, or kind="torch") for a tensor,
        else bytes; None when it is absent or expired."""
        data = ctypes.c_void_p()
        size = ctypes.c_size_t()
        desc = _lib.TensorDesc()
        with self._lock:
            rc = lib.gencache_session_get(self._live(), cstr(name, "name"), ctypes.byref(data),
                                          ctypes.byref(size), ctypes.byref(desc))
            if rc == -3:
                return None
            _lib.check(rc, "session get %r" % name)
            raw = ctypes.string_at(data.value or 0, size.value) if size.value else b""
        if desc.dtype == T.NONE:
            return raw
        from . import _codec
        arr = T.from_bytes_numpy(bytearray(raw), desc.dtype, _desc_shape(desc))
        return _codec.finish(arr, desc.dtype, "numpy", None, kind, False)

    def step(self) -> int:
        """Advances one step, freeing the values that expire; returns the bytes given back."""
        freed = ctypes.c_uint64()
        with self._lock:
            rc = lib.gencache_session_step(self._live(), ctypes.byref(freed))
        _lib.check(rc, "session step")
        return int(freed.value)

    def stats(self) -> dict[str, Any]:
        s = _lib.SessionStats()
        with self._lock:
            rc = lib.gencache_session_stats_get(self._live(), ctypes.byref(s))
        _lib.check(rc, "session stats")
        return {"step": s.step, "entries": s.entries, "bytes": s.bytes,
                "reaped": bool(s.reaped)}

    def close(self) -> None:
        with self._lock:
            ptr, self._ptr = self._ptr, None
        if ptr:
            lib.gencache_session_close(ptr)
            self._cache._children.discard(self)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_ptr", None):
            self.close()


class KVWindow:
    """Attention K and V rows per layer (gencache_kv_new). append() takes one position's K and
    V (k_elems and v_elems elements of the window's dtype); retrieve() returns copies of a
    layer's rows as (k, v, first_pos) with k of shape (n, k_elems). offload: a callable(block)
    receiving pruned rows as a dict (layer, first_pos, n_positions, dtype, k, v bytes, scales
    for int8 rows) on the pruning thread."""

    def __init__(self, n_layers: int, k_elems: int, v_elems: int, dtype: str = "f16",
                 int8: bool = False, initial_positions: Optional[int] = None,
                 offload: Optional[Callable[[dict[str, Any]], None]] = None,
                 cache: Optional["Cache"] = None) -> None:
        _lib.require("KV windows", "gencache_kv_new", "gencache_kv_append",
                     "gencache_kv_retrieve", "gencache_kv_prune", "gencache_kv_free")
        self._lock = threading.Lock()
        self._cache = cache
        self.n_layers, self.k_elems, self.v_elems = int(n_layers), int(k_elems), int(v_elems)
        self.dtype = T.dtype_code(dtype)
        self.int8 = bool(int8)
        o = _lib.KvOptions()
        lib.gencache_kv_options_init(ctypes.byref(o))
        o.n_layers, o.dtype, o.k_elems, o.v_elems = n_layers, self.dtype, k_elems, v_elems
        o.int8 = int(self.int8)
        if initial_positions is not None:
            o.initial_positions = int(initial_positions)
        self._offload_cb: Any = None
        if offload is not None:
            def cb(_userdata: Any, block_p: Any) -> None:
                b = block_p.contents
                n = b.n_positions
                blk = {"layer": b.layer, "first_pos": b.first_pos, "n_positions": n,
                       "dtype": T.DTYPE_NAMES.get(b.dtype),
                       "k": ctypes.string_at(b.k, b.k_row_bytes * n) if n else b"",
                       "v": ctypes.string_at(b.v, b.v_row_bytes * n) if n else b"",
                       "k_scales": [b.k_scales[i] for i in range(n)] if b.k_scales else None,
                       "v_scales": [b.v_scales[i] for i in range(n)] if b.v_scales else None}
                try:
                    assert offload is not None
                    offload(blk)
                except Exception:  # never unwind into C
                    pass
            self._offload_cb = _lib.KV_OFFLOAD_FN(cb)
            o.offload = self._offload_cb
        cptr = None
        if cache is not None:
            cptr = cache._enter()
            o.cache = cptr
        try:
            p = ctypes.c_void_p()
            rc = lib.gencache_kv_new(ctypes.byref(o), ctypes.byref(p))
        finally:
            if cache is not None:
                cache._leave()
        _lib.check(rc, "kv window")
        self._ptr = p.value
        if cache is not None:
            cache._children.add(self)

    def _live(self) -> int:
        if self._ptr is None:
            raise ValueError("the KV window is freed")
        return self._ptr

    def _row(self, x: Any, elems: int, what: str) -> Any:
        prep = T.prepare(x)
        if prep.dtype != self.dtype:
            raise TypeError("%s: expected dtype %s, got %s" % (
                what, T.DTYPE_NAMES[self.dtype], T.DTYPE_NAMES[prep.dtype]))
        if prep.size != elems * T.ITEMSIZE[self.dtype]:
            raise ValueError("%s: expected %d elements, got %d bytes" % (what, elems,
                                                                         prep.size))
        return prep

    def append(self, layer: int, pos: int, k: Any, v: Any) -> None:
        kp = self._row(k, self.k_elems, "k")
        vp = self._row(v, self.v_elems, "v")
        with self._lock:
            rc = lib.gencache_kv_append(self._live(), int(layer), int(pos), kp.ptr, vp.ptr)
        _lib.check(rc, "kv append")

    def retrieve(self, layer: int, end_pos: Optional[int] = None,
                 kind: Optional[str] = None) -> Optional[tuple[Any, Any, int]]:
        """(k, v, first_pos): copies of the layer's rows before end_pos (None: all), or None
        when there is none."""
        view = _lib.KvView()
        with self._lock:
            rc = lib.gencache_kv_retrieve(self._live(), int(layer),
                                          _INT64_MAX if end_pos is None else int(end_pos),
                                          ctypes.byref(view))
            if rc == -3:
                return None
            _lib.check(rc, "kv retrieve")
            n = view.n_positions
            item = T.ITEMSIZE[self.dtype]
            kb = bytearray(ctypes.string_at(view.k, n * self.k_elems * item)) if n else b""
            vb = bytearray(ctypes.string_at(view.v, n * self.v_elems * item)) if n else b""
        from . import _codec
        k = T.from_bytes_numpy(kb, self.dtype, (n, self.k_elems))
        v = T.from_bytes_numpy(vb, self.dtype, (n, self.v_elems))
        return (_codec.finish(k, self.dtype, "numpy", None, kind, False),
                _codec.finish(v, self.dtype, "numpy", None, kind, False), view.first_pos)

    def prune(self, keep_last_n: int) -> int:
        """Keeps the last keep_last_n positions of every layer; returns the bytes removed."""
        moved = ctypes.c_uint64()
        with self._lock:
            rc = lib.gencache_kv_prune(self._live(), int(keep_last_n), ctypes.byref(moved))
        _lib.check(rc, "kv prune")
        return int(moved.value)

    def stats(self) -> dict[str, Any]:
        s = _lib.KvStats()
        with self._lock:
            rc = lib.gencache_kv_stats_get(self._live(), ctypes.byref(s))
        _lib.check(rc, "kv stats")
        return {f: getattr(s, f) for f, _ in _lib.KvStats._fields_}

    def close(self) -> None:
        with self._lock:
            ptr, self._ptr = self._ptr, None
        if ptr:
            lib.gencache_kv_free(ptr)
            if self._cache is not None:
                self._cache._children.discard(self)

    free = close

    def __enter__(self) -> "KVWindow":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_ptr", None):
            self.close()

"""Read handles: a stored value's bytes, exposed without a copy.

A Handle owns one reference to a gencache_handle. Every view made from it (a numpy array, a
memoryview, a torch tensor) takes a reference of its own (gencache_handle_retain) held by the
object the view keeps alive (the array's .base, the memoryview's exporter), so closing the
Handle, evicting the entry or closing the cache never frees bytes a live view still reads: the
C library frees them with the last reference.
"""
from __future__ import annotations

import ctypes
from typing import Any, Optional

from . import _lib
from . import _tensors as T
from ._lib import lib


class _Ref:
    """One reference to a gencache_handle, released when this object is collected.

    It is also what numpy reads a view through: view() sets __array_interface__ (the data
    pointer, flagged read-only, with dtype and shape) and numpy keeps this object as the
    array's .base, so the reference lives exactly as long as the array and anything made from
    it. One object per view keeps the hot path of Cache.get_tensor() short."""
    __slots__ = ("ptr", "__array_interface__", "__weakref__")

    def __init__(self, ptr: Optional[int]) -> None:
        self.ptr = ptr

    def __del__(self, _release: Any = lib.gencache_handle_release) -> None:
        # _release is bound at definition: at interpreter exit module globals may be gone.
        ptr, self.ptr = self.ptr, None
        if ptr:
            _release(ptr)

    def view(self, data: int, shape: tuple[int, ...], typestr: str) -> Any:
        """A read-only numpy array of `shape` elements of `typestr` at `data` (an address in
        the value this object holds a reference to), no copy."""
        self.__array_interface__ = {"version": 3, "shape": shape, "typestr": typestr,
                                    "data": (data, True)}
        return _np_asarray(self)


def _np_asarray(obj: Any) -> Any:
    global _np_asarray
    import numpy  # on first use only: the package works without numpy for bytes
    _np_asarray = numpy.asarray  # type: ignore[assignment]
    return numpy.asarray(obj)


def meta_dict(m: Any) -> dict[str, Any]:
    """A gencache_meta as a plain dict (strings copied out of the handle)."""
    d = {
        "key": _lib.pystr(m.key), "layer": _lib.pystr(m.layer), "size": m.size,
        "content_type": _lib.pystr(m.content_type) or "application/octet-stream",
        "tenant": _lib.pystr(m.tenant), "model": _lib.pystr(m.model),
        "tags": [t for t in (_lib.pystr(m.tags) or "").split(",") if t],
        "dtype": T.DTYPE_NAMES.get(m.dtype), "shape": None, "cost_ms": m.cost_ms,
        "checksum": m.checksum, "created_ms": m.created_ms, "expires_ms": m.expires_ms,
        "last_access_ms": m.last_access_ms, "hits": m.hits, "pinned": bool(m.pinned),
        "tier": _lib.pystr(m.tier),
    }
    if m.dtype != T.NONE:
        d["shape"] = tuple(m.shape[:min(m.ndim, _lib.MAX_DIMS)])
    return d


class Handle:
    """A stored value, as found by Cache.get(): its bytes stay valid and unchanged while the
    handle (or any view made from it) lives, even if the entry is evicted, replaced or the cache
    is closed. Use it as a context manager, or call close(); views outlive both.

    numpy.asarray(handle) is a read-only, zero-copy view: typed with the entry's dtype and shape
    for a tensor entry, else a 1-D uint8 array of the bytes. It is made by __array__ from an
    object exposing __array_interface__ (the data pointer, flagged read-only) that holds a
    reference of its own to the value, and numpy keeps that object as the array's .base.
    """

    def __init__(self, ptr: int, ref: Any = None) -> None:
        self._ref = ref if ref is not None else _Ref(ptr)
        self._ptr: int = lib.gencache_handle_data(ptr) or 0
        m = lib.gencache_handle_meta(ptr).contents
        self._size: int = m.size
        self._dtype: int = m.dtype
        self._shape: tuple[int, ...] = tuple(m.shape[:min(m.ndim, _lib.MAX_DIMS)])
        ct = m.content_type
        self.content_type = ct.decode("utf-8", "replace") if ct else "application/octet-stream"
        self._meta: Optional[dict[str, Any]] = None

    def _live(self) -> Any:
        ref = self._ref
        if ref is None or not ref.ptr:
            raise ValueError("the handle is closed")
        return ref

    def _retained(self) -> _Ref:
        """A new _Ref: a reference of its own for a view to hold."""
        ref = self._live()
        return _Ref(lib.gencache_handle_retain(ref.ptr))

    # ---- what it holds --------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._ref is None

    @property
    def data_ptr(self) -> int:
        """The address of the stored bytes (gencache_handle_data())."""
        self._live()
        return self._ptr

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return self._size

    @property
    def meta(self) -> dict[str, Any]:
        """The entry's metadata at the lookup, as a dict."""
        if self._meta is None:
            self._meta = meta_dict(lib.gencache_handle_meta(self._live().ptr).contents)
        return self._meta

    @property
    def dtype(self) -> Optional[str]:
        return T.DTYPE_NAMES.get(self._dtype)

    @property
    def shape(self) -> Optional[tuple[int, ...]]:
        return self._shape if self._dtype != T.NONE else None

    # ---- views ----------------------------------------------------------------------------------
    def array(self, raw: bool = False) -> Any:
        """A read-only numpy view of the bytes, no copy: typed (dtype, shape) for a tensor entry
        unless raw, else uint8. bf16 comes out as int16 words (numpy has no bf16). The array's
        .base holds its own reference to the value."""
        ref = self._retained()
        if self._dtype != T.NONE and not raw:
            return ref.view(self._ptr, self._shape, T.TYPESTR[self._dtype])
        return ref.view(self._ptr, (self._size,), "|u1")

    def __array__(self, dtype: Any = None, copy: Optional[bool] = None) -> Any:
        a = self.array()
        return a if dtype is None else a.astype(dtype)

    def memoryview(self) -> memoryview:
        """A read-only memoryview of the bytes, no copy. It is made from a ctypes array at the
        data address; that ctypes object holds a reference to the value, and the memoryview
        holds the ctypes object (its buffer exporter) until it is released and collected."""
        owner = self._retained()
        buf_type = _buffer_type(self._size)
        buf = buf_type.from_address(self._ptr)
        buf.owner = owner
        return memoryview(buf).cast("B").toreadonly()

    def tensor(self, device: Any = None, copy: bool = False) -> Any:
        """A torch tensor of the value (a tensor entry: its dtype and shape, bf16 included).
        On the CPU without copy it shares the cache's memory, which must not be written (torch
        has no read-only tensors; .clone() it to write). device (e.g. "cuda") copies there."""
        if self._dtype == T.NONE:
            raise TypeError("%s is not a tensor entry" % (self.meta["key"],))
        t = T.torch_from_numpy(self.array(), self._dtype)
        return T.to_device(t, device, copy)

    # ---- DLPack ---------------------------------------------------------------------------------
    def __dlpack__(self, stream: Optional[int] = None) -> Any:
        """A DLPack capsule of the tensor entry, on the CPU, sharing the stored bytes (no copy):
        torch.from_dlpack(handle) makes a tensor of them with no numpy in between. The capsule
        holds a reference of its own to the value, released by whoever consumes it. As with
        tensor(), the memory must not be written. Needs the gencache._fast extension."""
        if stream is not None and stream != -1:
            raise BufferError("a CPU tensor takes no stream, got %r" % (stream,))
        fast = _lib.fast
        if fast is None:
            raise _lib.unsupported("DLPack export (it needs the gencache._fast extension)")
        ref = self._live()
        if self._dtype == T.NONE:
            raise TypeError("%s is not a tensor entry" % (self.meta["key"],))
        return fast.dlpack(ref.ptr)  # ref holds the handle alive for the call

    def __dlpack_device__(self) -> tuple[int, int]:
        """(kDLCPU, 0): the stored bytes are in host memory."""
        return (1, 0)

    def bytes(self) -> bytes:
        """A copy of the bytes."""
        self._live()
        return ctypes.string_at(self._ptr, self._size)

    # ---- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        """Drops this handle's reference; views made from it keep their own."""
        self._ref = None

    release = close

    def __enter__(self) -> "Handle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "%d bytes" % self._size
        if self._dtype != T.NONE:
            state += " %s%s" % (self.dtype, list(self._shape))
        return "<gencache.Handle %s>" % state


_buffer_types: dict[int, Any] = {}


def _buffer_type(n: int) -> Any:
    """A ctypes array type of n bytes whose instances accept an `owner` attribute (a subclass
    gets an instance __dict__, which plain ctypes arrays do not have)."""
    t = _buffer_types.get(n)
    if t is None:
        t = type("gencache_bytes_%d" % n, (ctypes.c_ubyte * n,), {})
        if len(_buffer_types) < 256:
            _buffer_types[n] = t
    return t

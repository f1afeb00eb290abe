"""safetensors files (Hugging Face's format) through the library's reader and writer
(include/gencache/tensor.h): the same strict validation the CLI's import applies.

Reading maps the file (gencache_safetensors_open) and hands out read-only numpy views of the
mapping, no copy: every view holds the open file through its .base, and the mapping is closed
with the last of them. bf16 tensors come out as torch tensors (numpy has no bf16).
"""
from __future__ import annotations

import ctypes
import os
from typing import Any, Iterator, Mapping, Optional, Union

from . import _lib
from . import _tensors as T
from ._lib import cstr, lib

PathLike = Union[str, "os.PathLike[str]"]


class _Mapped:
    """One parsed file (a gencache_safetensors), closed when the last view of it goes."""
    __slots__ = ("ptr", "keep", "__weakref__")

    def __init__(self, ptr: int, keep: Any) -> None:
        self.ptr: Optional[int] = ptr
        self.keep = keep  # the bytes a parsed buffer points into

    def close(self) -> None:
        ptr, self.ptr = self.ptr, None
        if ptr:
            lib.gencache_safetensors_close(ptr)

    def __del__(self) -> None:
        self.close()


class _View:
    """What numpy reads one tensor through (its .base): the address, read-only, and the file."""
    __slots__ = ("__array_interface__", "owner")

    def __init__(self, owner: _Mapped, data: int, shape: tuple[int, ...], typestr: str) -> None:
        self.owner = owner
        self.__array_interface__ = {"version": 3, "shape": shape, "typestr": typestr,
                                    "data": (data, True)}


def _options(errbuf: ctypes.Array[ctypes.c_char]) -> _lib.SafetensorsOptions:
    o = _lib.SafetensorsOptions()
    lib.gencache_safetensors_options_init(ctypes.byref(o))
    o.errbuf = ctypes.addressof(errbuf)
    o.errbuf_size = len(errbuf)
    return o


class SafetensorsFile:
    """An open safetensors file: `names()`, `file[name]` (a zero-copy, read-only view),
    `metadata(key)`. Views stay valid after close() (they hold the mapping themselves)."""

    def __init__(self, source: Union[PathLike, bytes, bytearray, memoryview]) -> None:
        _lib.require("safetensors", "gencache_safetensors_open", "gencache_safetensors_parse")
        errbuf = ctypes.create_string_buffer(512)
        opts = _options(errbuf)
        out = ctypes.c_void_p()
        if isinstance(source, (bytes, bytearray, memoryview)):
            from ._cache import _bytes_arg
            ptr, size, keep = _bytes_arg(source)
            rc = lib.gencache_safetensors_parse(ptr, size, ctypes.byref(opts), ctypes.byref(out))
            what = "safetensors data"
        else:
            keep = None
            path = os.fspath(source)
            rc = lib.gencache_safetensors_open(cstr(path, "path"), ctypes.byref(opts),
                                               ctypes.byref(out))
            what = path
        if rc < 0:
            detail = errbuf.value.decode("utf-8", "replace") or None
            raise _lib.error(rc, what, detail)
        self._mapped: Optional[_Mapped] = _Mapped(out.value or 0, keep)

    def _st(self) -> _Mapped:
        m = self._mapped
        if m is None or not m.ptr:
            raise ValueError("the safetensors file is closed")
        return m

    def names(self) -> list[str]:
        """The tensors' names, in the order of their data."""
        m = self._st()
        names = []
        t = _lib.SafetensorsTensor()
        for i in range(lib.gencache_safetensors_count(m.ptr)):
            _lib.check(lib.gencache_safetensors_get(m.ptr, i, ctypes.byref(t)), "safetensors")
            names.append(_lib.pystr(t.name) or "")
        return names

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return int(lib.gencache_safetensors_count(self._st().ptr))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def get(self, name: str, kind: Optional[str] = None) -> Any:
        """Tensor `name` as a read-only view of the file, no copy: numpy (kind "numpy", the
        default except for bf16) or torch (kind "torch"; bf16 always). Raises NotFound."""
        m = self._st()
        t = _lib.SafetensorsTensor()
        _lib.check(lib.gencache_safetensors_find(m.ptr, cstr(name, "name"), ctypes.byref(t)),
                   "tensor %r" % name)
        shape = tuple(int(d) for d in t.shape[:t.ndim])
        if kind is None:
            kind = "torch" if t.dtype == T.BF16 else "numpy"
        if kind not in ("numpy", "torch"):
            raise ValueError("kind must be 'numpy' or 'torch', not %r" % (kind,))
        if kind == "numpy" and t.dtype == T.BF16:
            raise TypeError("numpy has no bfloat16: ask for kind='torch'")
        import numpy as np
        if t.size == 0:
            arr = np.empty(shape, dtype=np.dtype(T.TYPESTR[t.dtype]))
            arr.flags.writeable = False
        else:
            arr = np.asarray(_View(m, t.data, shape, T.TYPESTR[t.dtype]))
        return T.torch_from_numpy(arr, t.dtype) if kind == "torch" else arr

    __getitem__ = get

    def metadata(self, key: str) -> Optional[str]:
        """The "__metadata__" value of `key`, or None."""
        return _lib.pystr(lib.gencache_safetensors_metadata(self._st().ptr, cstr(key, "key")))

    def close(self) -> None:
        """Drops this object's hold on the mapping; views made from it keep theirs."""
        self._mapped = None

    def __enter__(self) -> "SafetensorsFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_safetensors(source: Union[PathLike, bytes, bytearray, memoryview],
                     kind: Optional[str] = None) -> dict[str, Any]:
    """Every tensor of a safetensors file (a path, or the file's bytes) as {name: view}: read-only
    numpy views of the mapped file (torch for bf16, or all with kind="torch"), no copy. The
    file is validated strictly (gencache_safetensors_parse); a malformed one raises
    GencacheError (EPARSE, EUNSUPPORTED for a dtype such as F64, ELIMIT) with the reason."""
    with SafetensorsFile(source) as f:
        return {name: f.get(name, kind) for name in f.names()}


def save_safetensors(path: PathLike, tensors: Mapping[str, Any],
                     metadata: Optional[Mapping[str, str]] = None) -> None:
    """Writes {name: numpy array or torch tensor} (f32, f16, bf16, i8, u8, i32, i64) and optional
    string metadata to `path`, written beside it and renamed into place. Contiguous CPU
    tensors are written from their own memory (no copy). Raises GencacheError (EINVAL for a
    bad name, EIO) and TypeError for a dtype the format cannot carry here."""
    _lib.require("safetensors", "gencache_safetensors_write")
    preps = [(cstr(name, "tensor name"), T.prepare(t)) for name, t in tensors.items()]
    arr = (_lib.SafetensorsTensor * max(len(preps), 1))()
    for i, (bname, p) in enumerate(preps):
        if len(p.shape) > _lib.MAX_DIMS:
            raise ValueError("tensors have at most %d dimensions" % _lib.MAX_DIMS)
        st = arr[i]
        st.name = bname
        st.dtype = p.dtype
        st.ndim = len(p.shape)
        for j, d in enumerate(p.shape):
            st.shape[j] = int(d)
        st.data = p.ptr or None
        st.size = p.size
    pairs = [cstr(s, "metadata") for kv in (metadata or {}).items() for s in kv]
    meta = (ctypes.c_char_p * max(len(pairs), 1))(*pairs)
    path_s = os.fspath(path)
    _lib.check(lib.gencache_safetensors_write(cstr(path_s, "path"), arr, len(preps), meta,
                                              len(pairs) // 2), "write %s" % path_s)
    del preps

"""Tensor codecs through the C library: dtype conversion (src/tensor/), and how an entry is
stored with a codec and decoded on read (include/gencache/codec.h), the one rule the daemon and
the C API follow too, so an entry stored by any of them reads back identically through the
others. Every function here makes a new array: a codec cannot share memory.
"""
from __future__ import annotations

import ctypes
from typing import Any, Optional, Union

from . import _lib
from . import _tensors as T
from ._lib import lib

_CODECS = {"none": 0, "f16": 1, "bf16": 2, "int8": 3, "int8-channel": 4, "int8-group": 5}
_FLOATS = (T.F32, T.F16, T.BF16)


def _np() -> Any:
    import numpy as np
    return np


def convert(arr: Any, src: int, dst: int) -> Any:
    """A new array of `dst` from the float array `arr` of `src` (gencache_tensor_convert:
    round half to even, saturating; NaN/Inf refused when narrowing)."""
    _lib.require("dtype conversion", "gencache_tensor_convert")
    if src not in _FLOATS or dst not in _FLOATS:
        raise TypeError("only f32, f16 and bf16 convert into each other, not %s -> %s"
                        % (T.DTYPE_NAMES.get(src), T.DTYPE_NAMES.get(dst)))
    np = _np()
    arr = arr if arr.flags.c_contiguous else arr.copy(order="C")
    out = np.empty(arr.shape, dtype=np.dtype(T.TYPESTR[dst]))
    _lib.check(lib.gencache_tensor_convert(dst, out.ctypes.data if out.size else None, src,
                                           arr.ctypes.data if arr.size else None, arr.size),
               "convert %s to %s" % (T.DTYPE_NAMES[src], T.DTYPE_NAMES[dst]))
    return out


def narrow(prep: T.Prepared, dst: int) -> Any:
    """A Prepared f32/f16/bf16 tensor as a new array of dtype dst (the f16/bf16 codecs)."""
    _lib.require("dtype conversion", "gencache_tensor_convert")
    if prep.dtype not in _FLOATS:
        raise TypeError("codec %s takes a float tensor, not %s"
                        % (T.DTYPE_NAMES[dst], T.DTYPE_NAMES[prep.dtype]))
    np = _np()
    out = np.empty(prep.shape, dtype=np.dtype(T.TYPESTR[dst]))
    n = out.size
    _lib.check(lib.gencache_tensor_convert(dst, out.ctypes.data if n else None, prep.dtype,
                                           prep.ptr or None, n),
               "codec %s" % T.DTYPE_NAMES[dst])
    return out


def encode_options(codec: Optional[str], axis: int = 0,
                   group_size: int = 128) -> _lib.EncodeOptions:
    """The gencache_encode_options for put_tensor's codec= (None/"none": stored as given)."""
    _lib.require("tensor codecs", "gencache_encode_options_init", "gencache_put_tensor")
    name = "none" if codec is None else codec
    if name not in _CODECS:
        raise ValueError("unknown codec %r (expected none, f16, bf16, int8, int8-channel or "
                         "int8-group)" % (codec,))
    o = _lib.EncodeOptions()
    lib.gencache_encode_options_init(ctypes.byref(o))
    o.codec = _CODECS[name]
    o.axis = axis
    o.group_size = group_size
    return o


def needs_decode(h: Any, dtype: Union[str, int, None] = None) -> bool:
    """Whether reading the Handle's entry (as `dtype`) takes gencache_handle_decode(): an int8
    payload, or a dtype other than the stored one (gencache_tensor_needs_decode)."""
    _lib.require("tensor codecs", "gencache_tensor_needs_decode")
    want = T.NONE if dtype is None else T.dtype_code(dtype)
    return bool(lib.gencache_tensor_needs_decode(lib.gencache_handle_meta(h._live().ptr), want))


def decode(h: Any, dtype: Union[str, int, None] = None) -> tuple[Any, int, str]:
    """(array, dtype code, content type without the codec mark) of the Handle's entry decoded
    by the library (gencache_handle_decode): an int8 payload dequantized, a float tensor
    converted; the original dtype, or `dtype`."""
    _lib.require("tensor codecs", "gencache_handle_decode_info", "gencache_handle_decode")
    want = T.NONE if dtype is None else T.dtype_code(dtype)
    ptr = h._live().ptr
    info = _lib.DecodeInfo()
    rc = lib.gencache_handle_decode_info(ptr, want, ctypes.byref(info))
    if rc == _lib.CODES["EUNSUPPORTED"]:
        raise TypeError("%s: only f32, f16 and bf16 convert into each other, not to %s"
                        % (h.meta["key"], T.DTYPE_NAMES.get(want)))
    if rc == _lib.CODES["EINVAL"]:
        raise TypeError("%s is not a tensor entry" % h.meta["key"])
    _lib.check(rc, "decode %s" % h.meta["key"])
    code = info.desc.dtype
    shape = tuple(info.desc.shape[i] for i in range(info.desc.ndim))
    ct = ctypes.string_at(info.content_type, info.content_type_len).decode("utf-8", "replace")
    np = _np()
    out = np.empty(shape, dtype=np.dtype(T.TYPESTR[code]))
    _lib.check(lib.gencache_handle_decode(ptr, want, out.ctypes.data if out.size else None,
                                          out.nbytes, None), "decode %s" % h.meta["key"])
    return out, code, ct


def dequantize_legacy(h: Any, dtype: Union[str, int, None] = None) -> tuple[Any, int]:
    """(array, dtype code) of an int8 entry stored by an older package version, whose content
    type was application/vnd.gencache.quant rather than the library's codec mark."""
    _lib.require("int8 dequantization", "gencache_quant_info_get", "gencache_quant_decode")
    info = _lib.QuantInfo()
    _lib.check(lib.gencache_quant_info_get(h.data_ptr, h.size, ctypes.byref(info)),
               "quantized entry")
    target = info.desc.dtype if dtype is None else T.dtype_code(dtype)
    shape = tuple(info.desc.shape[i] for i in range(info.desc.ndim))
    np = _np()
    out = np.empty(shape, dtype=np.dtype(T.TYPESTR[target]))
    _lib.check(lib.gencache_quant_decode(h.data_ptr, h.size, target,
                                         out.ctypes.data if out.size else None, out.nbytes,
                                         None), "dequantize")
    return out, target


def finish(arr: Any, code: int, origin: str, device: Any, kind: Optional[str],
           copy: bool) -> Any:
    """The array as the caller asked for it: numpy, or a torch tensor (on `device`)."""
    if kind is None:
        kind = "torch" if (origin == "torch" or code == T.BF16 or device is not None) \
            else "numpy"
    if kind == "numpy":
        if code == T.BF16:
            raise TypeError("numpy has no bfloat16: ask for kind='torch' or dtype='f32'")
        if device is not None:
            raise ValueError("device= needs kind='torch'")
        return arr.copy() if copy else arr
    if kind != "torch":
        raise ValueError("kind must be 'numpy' or 'torch', not %r" % (kind,))
    return T.to_device(T.torch_from_numpy(arr, code), device, copy)

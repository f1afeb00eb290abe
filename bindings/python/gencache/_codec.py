"""Tensor codecs through the C tensor module (src/tensor/): narrowing f32 to f16/bf16,
int8 quantization (per tensor, per channel, per group) and back, with the same bits the daemon
and the C API produce. Every function here makes a new array: a codec cannot share memory.
"""
import ctypes

from . import _lib
from . import _tensors as T
from ._lib import lib

_CODECS = {"none": 0, "f16": 1, "bf16": 2, "int8": 3, "int8-channel": 4, "int8-group": 5}
_FLOATS = (T.F32, T.F16, T.BF16)


def _np():
    import numpy as np
    return np


def convert(arr, src, dst):
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


def narrow(prep, dst):
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


def _desc(dtype, shape):
    d = _lib.TensorDesc()
    d.dtype = dtype
    d.ndim = len(shape)
    for i, n in enumerate(shape):
        d.shape[i] = int(n)
    d.byte_order = 0
    return d


def quantize(prep, codec, axis=0, group_size=128):
    """The int8 payload (docs/tensors.md) of a Prepared f32/f16/bf16 tensor, as a uint8 array."""
    _lib.require("int8 quantization", "gencache_quant_encode", "gencache_quant_size",
                 "gencache_quant_options_init")
    if codec not in ("int8", "int8-channel", "int8-group"):
        raise ValueError("unknown codec %r (expected none, f16, bf16, int8, int8-channel or "
                         "int8-group)" % (codec,))
    o = _lib.QuantOptions()
    lib.gencache_quant_options_init(ctypes.byref(o))
    o.codec = _CODECS[codec]
    o.axis = axis
    o.group_size = group_size
    desc = _desc(prep.dtype, prep.shape)
    size = ctypes.c_size_t()
    _lib.check(lib.gencache_quant_size(ctypes.byref(desc), ctypes.byref(o), ctypes.byref(size)),
               "codec %s" % codec)
    np = _np()
    out = np.empty(size.value, dtype=np.uint8)
    written = ctypes.c_size_t()
    _lib.check(lib.gencache_quant_encode(ctypes.byref(desc), prep.ptr or None, prep.size,
                                         ctypes.byref(o), out.ctypes.data, out.nbytes,
                                         ctypes.byref(written)), "codec %s" % codec)
    return out[:written.value]


def dequantize(h, dtype=None):
    """(array, dtype code) decoded from the payload a Handle holds: the original dtype, or
    `dtype` (f32, f16 or bf16)."""
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


def finish(arr, code, origin, device, kind, copy):
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

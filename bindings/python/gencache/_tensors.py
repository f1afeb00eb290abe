"""Tensor plumbing shared by the in-process cache and the daemon client: dtype mapping between
gencache, numpy and torch, turning an array or tensor into (pointer, size, dtype, shape) without
copying when it is already contiguous little-endian, and turning stored bytes back into an array
or tensor of the exact dtype and shape.

bf16 has no numpy dtype: it travels as int16 words (same size and byte order) and is viewed as
torch.bfloat16 on the way out, so no bit of it is ever converted. numpy and torch are imported
lazily: the package works without either for plain bytes.
"""
from __future__ import annotations

import sys
import threading
import warnings
from typing import Any, Union

# gencache_dtype values (include/gencache.h).
NONE, F32, F16, BF16, I8, U8, I32, I64 = range(8)

DTYPE_NAMES = {F32: "f32", F16: "f16", BF16: "bf16", I8: "i8", U8: "u8", I32: "i32", I64: "i64"}
DTYPE_BY_NAME = {v: k for k, v in DTYPE_NAMES.items()}
ITEMSIZE = {F32: 4, F16: 2, BF16: 2, I8: 1, U8: 1, I32: 4, I64: 8}
# The numpy type string each dtype is exposed as; bf16 as raw little-endian 16-bit words.
TYPESTR = {F32: "<f4", F16: "<f2", BF16: "<i2", I8: "|i1", U8: "|u1", I32: "<i4", I64: "<i8"}
_NP_KIND = {("f", 4): F32, ("f", 2): F16, ("i", 1): I8, ("u", 1): U8, ("i", 4): I32,
            ("i", 8): I64}

# Content type of the int8 entries that package versions before the library's codec rule
# (include/gencache/codec.h) stored: still read. Entries stored now carry the library's mark,
# "<content type>; codec=<name>", like the daemon's.
QUANT_CONTENT_TYPE = "application/vnd.gencache.quant"
# Content types that say which Python type made a value, so get_or_compute() hands back the type
# the function returned.
CT_NUMPY = "application/vnd.gencache.numpy"
CT_TORCH = "application/vnd.gencache.torch"


def dtype_code(name: Union[str, int]) -> int:
    if isinstance(name, int):
        if name in DTYPE_NAMES:
            return name
    elif name in DTYPE_BY_NAME:
        return DTYPE_BY_NAME[name]
    raise ValueError("unknown dtype %r (expected one of %s)" % (name, ", ".join(DTYPE_BY_NAME)))


def _torch() -> Any:
    return sys.modules.get("torch")


def is_torch(obj: object) -> bool:
    t = _torch()
    return t is not None and isinstance(obj, t.Tensor)


def is_numpy(obj: object) -> bool:
    """A numpy array, or a numpy scalar (stored as a rank-0 tensor)."""
    np = sys.modules.get("numpy")
    return np is not None and isinstance(obj, (np.ndarray, np.generic))


def _torch_dtype_code(dt: Any) -> int:
    import torch
    table = {torch.float32: F32, torch.float16: F16, torch.bfloat16: BF16, torch.int8: I8,
             torch.uint8: U8, torch.int32: I32, torch.int64: I64}
    if dt not in table:
        raise TypeError("torch dtype %s cannot be stored as a tensor (f32, f16, bf16, i8, u8, "
                        "i32, i64)" % dt)
    return table[dt]


def torch_dtype(code: int) -> Any:
    import torch
    return {F32: torch.float32, F16: torch.float16, BF16: torch.bfloat16, I8: torch.int8,
            U8: torch.uint8, I32: torch.int32, I64: torch.int64}[code]


class Prepared:
    """A tensor laid out for storing: `ptr` and `size` of contiguous little-endian bytes, kept
    alive by `keep` for as long as this object lives."""
    __slots__ = ("ptr", "size", "dtype", "shape", "keep", "kind")

    def __init__(self, ptr: int, size: int, dtype: int, shape: tuple[int, ...], keep: Any,
                 kind: str) -> None:
        self.ptr, self.size, self.dtype, self.shape, self.keep, self.kind = (
            ptr, size, dtype, shape, keep, kind)


def prepare(obj: Any) -> Prepared:
    """numpy array or torch tensor -> Prepared. Copies only when the memory is not already
    contiguous little-endian on the CPU (a view, a transposed array, a GPU tensor)."""
    if is_torch(obj):
        t = obj.detach()
        code = _torch_dtype_code(t.dtype)
        if t.device.type != "cpu":
            t = t.cpu()
        if not t.is_contiguous():
            t = t.contiguous()
        if t.dim() > 8:
            raise ValueError("tensors have at most 8 dimensions, got %d" % t.dim())
        size = t.numel() * t.element_size()
        return Prepared(t.data_ptr() if size else 0, size, code, tuple(t.shape), t, "torch")
    if is_numpy(obj):
        import numpy as np
        a = np.asarray(obj)
        kind = (a.dtype.kind, a.dtype.itemsize)
        if kind not in _NP_KIND:
            raise TypeError("numpy dtype %s cannot be stored as a tensor (float32, float16, "
                            "int8, uint8, int32, int64; bf16 through torch)" % a.dtype)
        code = _NP_KIND[kind]
        if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and sys.byteorder == "big"):
            a = a.astype(a.dtype.newbyteorder("<"))
        a = a if a.flags.c_contiguous else a.copy(order="C")  # keeps rank 0
        if a.ndim > 8:
            raise ValueError("tensors have at most 8 dimensions, got %d" % a.ndim)
        return Prepared(a.ctypes.data if a.nbytes else 0, a.nbytes, code, a.shape, a, "numpy")
    raise TypeError("expected a numpy.ndarray or torch.Tensor, got %s" % type(obj).__name__)


_torch_warned = False
_torch_warn_lock = threading.Lock()


def torch_from_numpy(arr: Any, dtype: int) -> Any:
    """A tensor sharing arr's memory. arr is read-only (the cache's bytes): torch has no
    read-only tensors and warns about that, once per process (TORCH_WARN_ONCE). The sharing is
    deliberate and documented (the tensor must not be written; .clone() it first), so the first
    conversion runs with that one warning filtered out; later ones cannot warn again and skip
    the (slow, process-global) filter."""
    global _torch_warned
    torch: Any = sys.modules.get("torch")
    if torch is None:
        import torch as torch_module
        torch = torch_module
    if _torch_warned:
        t = torch.from_numpy(arr)
    else:
        with _torch_warn_lock:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The given NumPy array is not writ",
                                        category=UserWarning)
                t = torch.from_numpy(arr)
            _torch_warned = not arr.flags.writeable
    if dtype == BF16:
        t = t.view(torch.bfloat16)
    return t


def to_device(t: Any, device: Any, copy: bool) -> Any:
    if device is not None and str(device) != "cpu":
        return t.to(device)
    return t.clone() if copy else t


def from_bytes_numpy(buf: Any, dtype: int, shape: tuple[int, ...]) -> Any:
    """A numpy array over `buf` (a bytearray the caller owns: writable, no further copy)."""
    import numpy as np
    return np.frombuffer(buf, dtype=np.dtype(TYPESTR[dtype])).reshape(shape)

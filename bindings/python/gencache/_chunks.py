"""The chunk planner (gencache_chunk_plan): how to split a video latent's frames into chunks
that each fit a decoder's memory budget, with overlapping frames for temporal continuity."""
from __future__ import annotations

import ctypes
from typing import NamedTuple, Sequence

from . import _lib
from . import _tensors as T
from ._lib import lib


class Chunk(NamedTuple):
    """Latent frames [start, start + frames); the first `overlap` repeat the previous chunk's."""
    start: int
    frames: int
    overlap: int

    @property
    def stop(self) -> int:
        return self.start + self.frames


def chunk_plan(shape: Sequence[int], *, budget_bytes: int, dtype: str = "f16",
               bytes_per_frame: int = 0, overlap: int = 0) -> list[Chunk]:
    """Splits the T frames of a latent of `shape` [B, C, T, H, W] into chunks that each fit
    `budget_bytes`: a frame costs its latent bytes (B*C*H*W times the dtype's size) plus
    `bytes_per_frame` (the decoder's working memory per frame). Chunks are as long as fits,
    consecutive ones share `overlap` frames, and the last ends at T.

    Raises ValueError for a shape that is not five dimensions, GencacheError EINVAL (a
    dimension < 1, overlap >= the frames a chunk holds) and ELIMIT (the budget is smaller than
    one frame)."""
    _lib.require("the chunk planner", "gencache_chunk_options_init", "gencache_chunk_plan")
    dims = [int(d) for d in shape]
    if len(dims) != 5:
        raise ValueError("shape is the latent's [B, C, T, H, W], got %d dimensions" % len(dims))
    for name, v in (("budget_bytes", budget_bytes), ("bytes_per_frame", bytes_per_frame),
                    ("overlap", overlap)):
        if int(v) < 0:
            raise ValueError("%s must not be negative" % name)
    o = _lib.ChunkOptions()
    lib.gencache_chunk_options_init(ctypes.byref(o))
    for i, d in enumerate(dims):
        o.shape[i] = d
    o.dtype = T.dtype_code(dtype)
    o.budget_bytes = int(budget_bytes)
    o.bytes_per_frame = int(bytes_per_frame)
    o.overlap = int(overlap)
    n = ctypes.c_size_t()
    _lib.check(lib.gencache_chunk_plan(ctypes.byref(o), None, 0, ctypes.byref(n)), "chunk plan")
    out = (_lib.Chunk * max(n.value, 1))()
    _lib.check(lib.gencache_chunk_plan(ctypes.byref(o), out, n.value, ctypes.byref(n)),
               "chunk plan")
    return [Chunk(c.start, c.frames, c.overlap) for c in out[:n.value]]

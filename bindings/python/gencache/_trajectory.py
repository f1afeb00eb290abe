"""gencache.Trajectory: approximate step reuse for a diffusers-style denoising loop.

A generation that has stored its intermediate latents at a few checkpoint steps lets a later
generation of a similar prompt (by the cosine similarity of the pooled text embeddings) start
from one of them instead of from noise, skipping that many steps. Before step 0 the loop calls
``resume()``: the stored latent and the step to continue after, or None. At each checkpoint step
it calls ``checkpoint(step, latent)``. The match is approximate by nature: it is only ever used
where the caller asks for it, and it says how similar the prompts were.
"""
from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple, Optional, Sequence

from . import _lib
from . import _tensors as T
from ._lib import lib, cstr

if TYPE_CHECKING:
    from ._cache import Cache
    from ._client import Client

__all__ = ["Trajectory", "Resume", "TRAJECTORY_FIELDS", "DEFAULT_CHECKPOINTS", "set_thresholds",
           "stats"]

# The key recipe of the layer a Trajectory defines when the cache has none of that name: what
# changes an intermediate latent, and the step it was taken after.
TRAJECTORY_FIELDS = ("model", "prompt", "negative_prompt", "steps", "guidance", "width",
                     "height", "frames", "scheduler", "step!")
DEFAULT_CHECKPOINTS = (5, 10, 15, 20, 25)


class Resume(NamedTuple):
    """What resume() found: the latent (numpy array or torch tensor, as stored), the step it was
    taken after (the loop continues with the next one), the cosine similarity of the two
    prompts' embeddings, and the key it was stored under."""
    latent: Any
    step: int
    similarity: float
    key: str


def _embedding(embedding: Any) -> tuple[Any, int, int]:
    """(prepared buffer, gencache dtype, dimension) of a 1-D (or [1, d]) f32/f16 vector."""
    prep = T.prepare(embedding)
    if prep.dtype not in (T.F32, T.F16):
        raise TypeError("the embedding must be float32 or float16, not %s"
                        % T.DTYPE_NAMES.get(prep.dtype, "?"))
    n = 1
    for d in prep.shape:
        n *= int(d)
    if n == 0 or len([d for d in prep.shape if d != 1]) > 1:
        raise ValueError("the embedding must be one non-empty vector, got shape %s"
                         % (tuple(prep.shape),))
    return prep, prep.dtype, n


class Trajectory:
    """The trajectory of one generation in `cache`: its request (a mapping with at least
    "model"; the step is added per checkpoint) and its prompt's pooled embedding (numpy or
    torch, float32 or float16, any dimension fixed per model). layer: the layer the latents
    are stored in; defined with TRAJECTORY_FIELDS when the cache has no such layer (defining a
    layer is an init-time operation: with several threads, define it in the config or make the
    first Trajectory before they start).
    checkpoints: the steps whose latents checkpoint() stores. tenant: store and match in that
    tenant's name (a tenant-scoped layer never matches across tenants).
    cache may also be a gencache.Client: the same calls then go to the daemon
    (POST /v1/trajectories and /v1/trajectories/lookup), whose config defines the layer and
    whose token names the tenant."""

    def __init__(self, cache: "Cache | Client", request: Mapping[str, Any], embedding: Any, *,
                 layer: str = "trajectory",
                 checkpoints: Sequence[int] = DEFAULT_CHECKPOINTS,
                 tenant: Optional[str] = None) -> None:
        from ._client import Client
        self._remote: Optional[Client] = cache if isinstance(cache, Client) else None
        if self._remote is not None and tenant is not None:
            raise ValueError("a Client acts as its token's tenant: pass no tenant")
        if self._remote is None:
            _lib.require("approximate step reuse", "gencache_trajectory_store",
                         "gencache_trajectory_lookup")
        if "model" not in request:
            raise ValueError("the request needs a model: each model has its own index")
        if any(int(s) <= 0 for s in checkpoints):
            raise ValueError("checkpoint steps start at 1")
        self._cache: "Cache" = cache  # type: ignore[assignment]
        self._embedding = embedding
        self._request = dict(request)
        self._model = str(request["model"])
        self._layer = layer
        self._checkpoints = frozenset(int(s) for s in checkpoints)
        self._prep, self._dtype, self._dim = _embedding(embedding)
        self._caller = _lib.Caller()
        lib.gencache_caller_init(ctypes.byref(self._caller))
        self._caller.tenant = cstr(tenant, "tenant")
        cache._ensure_layer(layer, TRAJECTORY_FIELDS)

    @property
    def checkpoints(self) -> frozenset[int]:
        return self._checkpoints

    def resume(self) -> Optional[Resume]:
        """Before step 0: the stored latent of the most steps a similar enough prompt lets this
        generation skip (the model's threshold table), or None."""
        if self._remote is not None:
            found: Optional[Resume] = self._remote.trajectory_lookup(
                self._model, self._embedding, layer=self._layer)
            return found
        out = ctypes.c_void_p()
        m = _lib.TrajectoryMatch()
        m.struct_size = ctypes.sizeof(m)
        ptr = self._cache._enter()
        try:
            rc = lib.gencache_trajectory_lookup(
                ptr, ctypes.byref(self._caller), cstr(self._layer, "layer"),
                cstr(self._model, "model"), self._dtype, self._prep.ptr, self._dim,
                ctypes.byref(out), ctypes.byref(m))
        finally:
            self._cache._leave()
        if rc == _lib.CODES["ENOTFOUND"]:
            return None
        _lib.check(rc, "trajectory lookup")
        from ._cache import tensor_from_handle
        from ._handle import Handle
        with Handle(out.value or 0) as h:
            latent = tensor_from_handle(h, copy=True)
        return Resume(latent, int(m.step), float(m.similarity), m.key.decode("ascii"))

    def checkpoint(self, step: int, latent: Any, *, cost_s: float = 0.0) -> Optional[str]:
        """At a denoising step: stores the latent taken after `step` when it is a checkpoint
        step, and returns its key (None for other steps). cost_s: what computing the steps up
        to here cost (what a later match saves)."""
        if int(step) not in self._checkpoints:
            return None
        if self._remote is not None:
            return self._remote.trajectory_store(self._request, self._embedding, latent,
                                                 step=int(step), layer=self._layer,
                                                 cost_s=cost_s)
        request = dict(self._request)
        request["step"] = int(step)
        req = self._cache.keyspace._parse(request, True, None)
        prep = T.prepare(latent)
        m = _lib.Meta()
        lib.gencache_meta_init(ctypes.byref(m))
        m.content_type = (T.CT_TORCH if prep.kind == "torch" else T.CT_NUMPY).encode()
        m.model = cstr(self._model, "model")
        m.cost_ms = int(round(max(cost_s, 0.0) * 1000))
        if len(prep.shape) > _lib.MAX_DIMS:
            raise ValueError("tensors have at most %d dimensions" % _lib.MAX_DIMS)
        m.dtype = prep.dtype
        m.ndim = len(prep.shape)
        for i, d in enumerate(prep.shape):
            m.shape[i] = int(d)
        key = ctypes.create_string_buffer(_lib.KEY_MAX)
        try:
            ptr = self._cache._enter()
            try:
                rc = lib.gencache_trajectory_store(
                    ptr, ctypes.byref(self._caller), req, cstr(self._layer, "layer"),
                    int(step), self._dtype, self._prep.ptr, self._dim, prep.ptr, prep.size,
                    ctypes.byref(m), key)
            finally:
                self._cache._leave()
        finally:
            lib.gencache_request_free(req)
        _lib.check(rc, "trajectory store")
        return key.value.decode("ascii")


def set_thresholds(cache: "Cache", rows: Mapping[float, int], model: Optional[str] = None) -> None:
    """Sets the threshold table (similarity -> largest step a match may skip) of `model`, or the
    default table with model None."""
    arr = (_lib.TrajectoryThreshold * max(len(rows), 1))()
    for i, (sim, step) in enumerate(sorted(rows.items())):
        arr[i].similarity = float(sim)
        arr[i].step = int(step)
    ptr = cache._enter()
    try:
        rc = lib.gencache_trajectory_set_thresholds(ptr, cstr(model, "model"), arr, len(rows))
    finally:
        cache._leave()
    _lib.check(rc, "trajectory thresholds")


def stats(cache: "Cache") -> dict[str, int]:
    """The trajectory index's counters: vectors, hits, misses, steps_skipped."""
    s = _lib.TrajectoryStats()
    s.struct_size = ctypes.sizeof(s)
    ptr = cache._enter()
    try:
        rc = lib.gencache_trajectory_stats_get(ptr, ctypes.byref(s))
    finally:
        cache._leave()
    _lib.check(rc, "trajectory stats")
    return {"vectors": int(s.vectors), "hits": int(s.hits), "misses": int(s.misses),
            "steps_skipped": int(s.steps_skipped)}

"""The device tier: recently used tensors kept resident on a torch device (a GPU, or any torch
device), in front of the cache's host tiers.

The model code that calls gencache already owns the device's memory through PyTorch's
allocator, so the tier holds plain torch tensors: its own byte cap and LRU order, promotion on a
host hit, demotion by dropping the device copy (the host copy stays where it was). A device
copy is only ever handed out for the stored version it was made from: every device hit also
looks the key up in the host tiers (which counts the access and keeps the host entry warm) and
compares the value's (checksum, created_ms, size); a replaced, deleted, invalidated or expired
entry drops its device copy instead of serving it.

On CUDA a promotion copies the host bytes into a pinned staging buffer and from there to the
device with a non-blocking copy on a side stream; the caller's stream waits for that copy (an
event), so the tensor is ready for any work queued after the call, without blocking the host.
A staging buffer is reused only after the event of its last copy has completed.
"""
from __future__ import annotations

import collections
import fnmatch
import threading
import weakref
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence

if TYPE_CHECKING:
    from ._cache import Cache

_STAGING_BUFFERS = 2  # pinned buffers promotions rotate through (CUDA)


class _Resident:
    """One device copy: the tensor and the stored version it was made from."""
    __slots__ = ("tensor", "stamp", "nbytes", "preferred")

    def __init__(self, tensor: Any, stamp: tuple[int, int, int], nbytes: int,
                 preferred: bool) -> None:
        self.tensor = tensor
        self.stamp = stamp
        self.nbytes = nbytes
        self.preferred = preferred


class _Staging:
    """A pinned host buffer and the event of the last copy out of it."""
    __slots__ = ("buf", "event")

    def __init__(self) -> None:
        self.buf: Any = None
        self.event: Any = None


class DeviceTier:
    """Tensors of one Cache resident on `device`, at most `max_bytes` of them (LRU), plus the
    keys matching `preferred` (shell patterns or exact keys), which the LRU drops only when
    nothing else is left. Made by Cache(device=..., device_bytes=...); reached through
    Cache.get_tensor(key, device=<that device>) and Cache.device_tier. Thread-safe."""

    def __init__(self, cache: "Cache", device: Any, max_bytes: int,
                 preferred: Iterable[str] = ()) -> None:
        import torch
        self._torch = torch
        # A weak reference: the cache owns the tier, and a cache dropped without close() must
        # still be closed when it goes, not when the cycle collector gets to it.
        self._cache_ref = weakref.ref(cache)
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        if int(max_bytes) < 0:
            raise ValueError("device_bytes must not be negative")
        self.max_bytes = int(max_bytes)
        self.preferred = [str(p) for p in preferred]
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[str, _Resident] = collections.OrderedDict()
        self._bytes = 0
        self._counts = {"hits": 0, "misses": 0, "promotions": 0, "demotions": 0, "stale": 0,
                        "too_big": 0}
        self._cuda = self.device.type == "cuda"
        self._stream: Any = torch.cuda.Stream(device=self.device) if self._cuda else None
        self._staging = [_Staging() for _ in range(_STAGING_BUFFERS)] if self._cuda else []
        self._next_staging = 0

    @property
    def _cache(self) -> "Cache":
        cache = self._cache_ref()
        if cache is None:
            raise ValueError("the cache is closed")
        return cache

    # ---- lookups --------------------------------------------------------------------------------
    def matches(self, device: Any) -> bool:
        """Whether get_tensor(device=...) names this tier's device ("cuda" matches "cuda:N" of
        the current device)."""
        d = self._torch.device(device)
        if d.type != self.device.type:
            return False
        return d.index is None or self.device.index is None or d.index == self.device.index

    def get(self, key: str) -> Any:
        """The tensor of `key` on the device, or None when no host tier has it. A device hit
        returns the resident tensor itself (no copy); a host hit promotes it first. The tensor
        is shared with later callers: do not write it."""
        found = self._host_lookup(key)
        if found is None:
            with self._lock:
                self._counts["misses"] += 1
                self._drop_locked(key, "stale")
            return None
        holder, stamp = found
        with self._lock:
            r = self._entries.get(key)
            if r is not None:
                if r.stamp == stamp:
                    self._entries.move_to_end(key)
                    self._counts["hits"] += 1
                    return r.tensor
                self._drop_locked(key, "stale")
            return self._promote_locked(key, holder, stamp)

    def load(self, keys: Iterable[str]) -> int:
        """Promotes each key a host tier has (the preferred entries at start); returns how many
        are resident now. Entries that are not tensors are skipped."""
        return sum(1 for key in keys if self.refresh(key))

    def refresh(self, key: str) -> bool:
        """Makes the device copy of `key` current (promoting it when a host tier has it); True
        when it is resident afterwards. A value that is not a tensor is left on the host."""
        try:
            self.get(key)
        except TypeError:  # not a tensor entry: nothing to keep on a device
            return False
        return key in self

    def _host_lookup(self, key: str) -> Optional[tuple[Any, tuple[int, int, int]]]:
        """(a reference to the host value, its stamp), or None on a host miss."""
        core = self._cache._core
        if core is not None:
            ref = core.get(key)
            if ref is None:
                return None
            stamp: tuple[int, int, int] = ref.stamp
            return ref, stamp
        h = self._cache.get(key)
        if h is None:
            return None
        m = h.meta
        return h, (m["checksum"], m["created_ms"], m["size"])

    # ---- promotion and demotion -----------------------------------------------------------------
    def _host_tensor(self, holder: Any) -> Any:
        """The host value as a CPU torch tensor (a view; a decoded copy for an int8 entry)."""
        from ._cache import tensor_from_handle
        from ._handle import Handle
        from ._lib import fast
        if isinstance(holder, Handle):
            with holder:
                return tensor_from_handle(holder, kind="torch")
        if fast is not None:
            view = fast.view(holder, 2)  # a torch view, or the Ref back for the general path
            if view is not holder:
                return view
        with Handle(holder.ptr, holder) as h:
            return tensor_from_handle(h, kind="torch")

    def _promote_locked(self, key: str, holder: Any, stamp: tuple[int, int, int]) -> Any:
        host = self._host_tensor(holder)
        nbytes = host.numel() * host.element_size()
        preferred = self.is_preferred(key)
        if nbytes > self.max_bytes:
            # Larger than the whole tier: handed over as a copy, never resident.
            self._counts["too_big"] += 1
            return self._copy_to_device(host)
        self._make_room_locked(nbytes)
        dev = self._copy_to_device(host)
        self._entries[key] = _Resident(dev, stamp, nbytes, preferred)
        self._bytes += nbytes
        self._counts["promotions"] += 1
        return dev

    def _copy_to_device(self, host: Any) -> Any:
        torch = self._torch
        dev = torch.empty(host.shape, dtype=host.dtype, device=self.device)
        if not self._cuda or host.numel() == 0:
            dev.copy_(host)
            return dev
        nbytes = host.numel() * host.element_size()
        st = self._staging[self._next_staging]
        self._next_staging = (self._next_staging + 1) % len(self._staging)
        if st.event is not None:
            st.event.synchronize()  # its last copy must be done before the buffer is refilled
        if st.buf is None or st.buf.numel() < nbytes:
            st.buf = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
        staged = st.buf[:nbytes]
        staged.copy_(host.contiguous().reshape(-1).view(torch.uint8))
        current = torch.cuda.current_stream(self.device)
        side = self._stream
        side.wait_stream(current)  # dev was allocated on the current stream
        with torch.cuda.stream(side):
            dev.reshape(-1).view(torch.uint8).copy_(staged, non_blocking=True)
            st.event = torch.cuda.Event()
            st.event.record(side)
        dev.record_stream(side)
        current.wait_event(st.event)  # work queued after this call sees the copied bytes
        return dev

    def _make_room_locked(self, nbytes: int) -> None:
        """Drops least recently used copies until nbytes fit: ordinary ones first, preferred
        ones only when no ordinary one is left."""
        for preferred_pass in (False, True):
            if self._bytes + nbytes <= self.max_bytes:
                return
            for key in [k for k, r in self._entries.items() if r.preferred == preferred_pass]:
                if self._bytes + nbytes <= self.max_bytes:
                    return
                self._drop_locked(key, "demotions")

    def _drop_locked(self, key: str, reason: str) -> None:
        r = self._entries.pop(key, None)
        if r is not None:
            self._bytes -= r.nbytes
            self._counts[reason] += 1

    def is_preferred(self, key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, p) for p in self.preferred)

    # ---- what the cache tells it ----------------------------------------------------------------
    def drop(self, key: str, reason: str = "demotions") -> bool:
        """Drops the device copy of `key` (the host copy stays); True if there was one. reason
        names the counter it adds to: "demotions", or "stale" for a copy of a replaced value."""
        with self._lock:
            present = key in self._entries
            self._drop_locked(key, reason)
            return present

    def clear(self) -> None:
        """Drops every device copy."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    def prune(self) -> int:
        """Drops the copies whose host entry is gone or was replaced (after an invalidation);
        returns how many. Peeks only: counts no access."""
        core = self._cache._core
        dropped = 0
        for key in self.keys():
            if core is not None:
                ref = core.peek(key)
                stamp = None if ref is None else ref.stamp
            else:
                h = self._cache.peek(key)
                stamp = None if h is None else (h.meta["checksum"], h.meta["created_ms"],
                                                h.meta["size"])
            with self._lock:
                r = self._entries.get(key)
                if r is not None and r.stamp != stamp:
                    self._drop_locked(key, "stale")
                    dropped += 1
        return dropped

    def keys(self) -> list[str]:
        """The resident keys, least recently used first."""
        with self._lock:
            return list(self._entries)

    def stats(self) -> dict[str, Any]:
        """{"device", "bytes", "entries", "max_bytes", "hits", "misses", "promotions",
        "demotions", "stale", "too_big"}."""
        with self._lock:
            return dict(self._counts, device=str(self.device), bytes=self._bytes,
                        entries=len(self._entries), max_bytes=self.max_bytes)

    def __repr__(self) -> str:
        return "<gencache.DeviceTier %s %d/%d bytes>" % (self.device, self._bytes,
                                                        self.max_bytes)


def preferred_patterns(config_ptr: Optional[int]) -> list[str]:
    """The `preferred:` patterns of a loaded config (gencache_config_preferred)."""
    from ._lib import has, lib, pystr
    if not config_ptr or not has("gencache_config_preferred"):
        return []
    out: list[str] = []
    i = 0
    while True:
        p = pystr(lib.gencache_config_preferred(config_ptr, i))
        if p is None:
            return out
        out.append(p)
        i += 1


def exact_keys(patterns: Sequence[str]) -> list[str]:
    """The patterns that name one key (no wildcard): the entries a tier can load at start."""
    return [p for p in patterns if not any(c in p for c in "*?[")]


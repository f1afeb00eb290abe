"""Coalescing for get_or_compute(): concurrent callers that miss on one key run the computation
once.

An in-process Cache uses the library's single flight (gencache_claim, include/gencache/coalesce.h)
through ``Flights``: the caller that gets the key's lease runs the function and stores its result
with gencache_lease_fulfil(); callers that arrive meanwhile block inside gencache_claim() (ctypes
releases the GIL) and then read the stored entry. When the function raises, the lease is
abandoned and passes to one waiter, which runs the function itself: a failure is never cached, and
an exception is only ever raised in a thread whose own call ran the function. C code and the
daemon sharing the cache wait on the same flights.

A Client's values live in a daemon, beyond any in-process cache, so ``Coalescer`` keeps the same
rules in Python for it.
"""
from __future__ import annotations

import ctypes
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from . import _lib
from ._handle import Handle
from ._lib import lib, cstr

if TYPE_CHECKING:
    from ._cache import Cache

_RETRY_ALONE = {"EFULL", "ETOOBIG", "ENOSPC", "EIO"}  # the holder's store failed


class Flights:
    """get_or_compute's coalescing for an in-process Cache, over the library's flight table."""

    def __init__(self, cache: "Cache") -> None:
        # Weak: the cache owns this object, and must go by reference counting alone.
        self._cache_ref = weakref.ref(cache)
        self._tls = threading.local()

    def _held(self) -> set[str]:
        held: Optional[set[str]] = getattr(self._tls, "held", None)
        if held is None:
            held = self._tls.held = set()
        return held

    def _claim(self, key: str, opts: Any = None) -> tuple[int, _lib.ClaimResult]:
        res = _lib.ClaimResult()
        bkey = cstr(key, "key")
        cache = self._cache_ref()
        if cache is None:
            raise ValueError("the cache is closed")
        ptr = cache._enter()
        try:
            rc: int = lib.gencache_claim(ptr, bkey, opts, ctypes.byref(res))
        finally:
            cache._leave()
        return rc, res

    def run(self, key: str, compute: Callable[[], Any], store: Callable[[Any, float], Any],
            hit_value: Callable[[Handle], Any]) -> tuple[Any, str]:
        """compute() -> value (may raise); store(value, seconds) stores it (the Cache's put
        path fulfils the lease, see take_lease); hit_value(handle) -> the value of an entry.
        Returns (value, outcome), outcome "hit", "miss" (this call computed) or "coalesced"."""
        if key in self._held():
            raise RuntimeError("get_or_compute(%r) called again from inside its own "
                               "computation: it would wait for itself" % (key,))
        rc, res = self._claim(key)
        if rc < 0:
            if _lib.errname(rc) not in _RETRY_ALONE:
                _lib.check(rc, "get_or_compute %s" % key)
            # The holder computed the value but could not store it: compute it here, alone.
            return self._compute_and_store(key, None, compute, store), "miss"
        if res.kind == _lib.CLAIM_HIT:
            with Handle(res.handle or 0) as h:
                return hit_value(h), ("coalesced" if res.waited else "hit")
        return self._compute_and_store(key, res.lease, compute, store), "miss"

    def _compute_and_store(self, key: str, lease: Optional[int], compute: Callable[[], Any],
                           store: Callable[[Any, float], Any]) -> Any:
        held = self._held()
        held.add(key)
        try:
            t0 = time.perf_counter()
            value = compute()
            seconds = time.perf_counter() - t0
        except BaseException:
            if lease:
                lib.gencache_lease_abandon(lease)  # the next waiter runs the function
            raise
        finally:
            held.discard(key)
        self._tls.lease = (key, lease)
        try:
            store(value, seconds)
        finally:
            pending, self._tls.lease = getattr(self._tls, "lease", None), None
            if pending is not None and pending[1]:
                lib.gencache_lease_abandon(pending[1])  # the store failed before putting
        return value

    def take_lease(self, key: str) -> Optional[int]:
        """The lease this thread holds on `key` while storing a computed value, or None; the
        caller ends it (gencache_lease_fulfil)."""
        pending = getattr(self._tls, "lease", None)
        if pending is None or pending[0] != key:
            return None
        self._tls.lease = None
        lease: Optional[int] = pending[1]
        return lease

    def in_flight(self, key: str) -> bool:
        """Whether a lease on `key` is held now (for tests and diagnostics)."""
        opts = _lib.ClaimOptions()
        lib.gencache_claim_options_init(ctypes.byref(opts))
        opts.wait_timeout_ms = 0
        rc, res = self._claim(key, ctypes.byref(opts))
        if rc == _lib.CODES["EBUSY"]:
            return True
        _lib.check(rc, "claim %s" % key)
        if res.kind == _lib.CLAIM_HIT:
            lib.gencache_handle_release(res.handle)
        else:
            lib.gencache_lease_abandon(res.lease)
        return False


class _Flight:
    __slots__ = ("event", "ok", "value", "leader")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.ok = False
        self.value: Any = None
        self.leader = threading.get_ident()


class Coalescer:
    """The Client's coalescing, in Python: the first caller for a key becomes its leader and
    runs the function; callers that arrive while it runs wait on the leader's event, then read
    the value it stored (or, when storing it failed, the very object it returned). When the
    leader's function raises, each waiter starts over, so one of them becomes the next leader."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}

    def run(self, key: str, lookup: Callable[[], tuple[bool, Any]], compute: Callable[[], Any],
            store: Callable[[Any, float], Any]) -> tuple[Any, str]:
        """lookup() -> (hit, value); compute() -> value (may raise); store(value, seconds) ->
        value as read back (or the computed one). Returns (value, outcome) where outcome is
        "hit", "miss" (this call computed) or "coalesced" (another call computed it)."""
        while True:
            hit, value = lookup()
            if hit:
                return value, "hit"
            with self._lock:
                flight = self._flights.get(key)
                leader = flight is None
                if flight is None:
                    flight = self._flights[key] = _Flight()
            if not leader:
                if flight.leader == threading.get_ident():
                    raise RuntimeError("get_or_compute(%r) called again from inside its own "
                                       "computation: it would wait for itself" % (key,))
                flight.event.wait()
                if flight.ok:
                    hit, value = lookup()  # the stored copy, as any later caller would get it
                    return (value if hit else flight.value), "coalesced"
                continue  # the leader failed: start over, maybe as the next leader
            try:
                # Someone may have stored the value between our miss and our election.
                hit, value = lookup()
                if hit:
                    flight.ok, flight.value = True, value
                    return value, "hit"
                t0 = time.perf_counter()
                value = compute()
                seconds = time.perf_counter() - t0
                value = store(value, seconds)
                flight.ok, flight.value = True, value
                return value, "miss"
            finally:
                with self._lock:
                    del self._flights[key]
                flight.event.set()

    def in_flight(self, key: Optional[str] = None) -> Union[bool, int]:
        with self._lock:
            return key in self._flights if key is not None else len(self._flights)

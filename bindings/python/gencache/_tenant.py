"""Calls made on a tenant's behalf: a thin view over the library's gencache_*_as functions.

The rules are the library's, the same ones the daemon applies to a bearer token's tenant: an
entry of a tenant-scoped layer lives in its tenant's own namespace (no other tenant can read,
probe, overwrite or delete it), an entry of a global layer may be replaced or deleted only by the
tenant that wrote it (or an admin), and a tenant's live bytes are held to its quota exactly.
"""
from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from . import _lib
from ._handle import Handle
from ._lib import cstr, lib

if TYPE_CHECKING:
    from ._cache import Cache

PRIORITIES = {"high": 0, "normal": 1, "batch": 2}
_PRIORITY_NAMES = {v: k for k, v in PRIORITIES.items()}


class QuotaExceeded(_lib.GencacheError):
    """GENCACHE_ELIMIT from a tenant's put: storing it would take the tenant past its quota."""


class Forbidden(_lib.GencacheError):
    """GENCACHE_EPERM: a shared entry another tenant wrote is not this tenant's to change."""


def _raise(rc: int, what: str) -> None:
    if rc == _lib.CODES["ELIMIT"]:
        raise QuotaExceeded(rc, None, what)
    if rc == _lib.CODES["EPERM"]:
        raise Forbidden(rc, None, what)
    _lib.check(rc, what)


def define(cache: "Cache", name: str, *, priority: str = "normal", quota_bytes: int = 0,
           admin: bool = False) -> None:
    if priority not in PRIORITIES:
        raise ValueError("priority must be one of %s" % ", ".join(PRIORITIES))
    o = _lib.TenantOptions()
    lib.gencache_tenant_options_init(ctypes.byref(o))
    o.name = cstr(name, "name")
    o.priority = PRIORITIES[priority]
    o.quota_bytes = int(quota_bytes)
    o.admin = int(bool(admin))
    ptr = cache._enter()
    try:
        rc = lib.gencache_tenant_define(ptr, ctypes.byref(o))
    finally:
        cache._leave()
    _lib.check(rc, "define tenant %s" % name)


def stats(cache: "Cache", name: str) -> dict[str, Any]:
    s = _lib.TenantStats()
    s.struct_size = ctypes.sizeof(s)
    ptr = cache._enter()
    try:
        rc = lib.gencache_tenant_stats_get(ptr, cstr(name, "name"), ctypes.byref(s))
        _lib.check(rc, "tenant stats %s" % name)
        layers = {}
        for i in range(min(s.n_layers, _lib.MAX_LAYERS)):
            ls = s.layers[i]
            if ls.lookups or ls.puts:
                layers[_lib.pystr(ls.layer)] = {
                    f: getattr(ls, f) for f, _ in _lib.LayerStats._fields_ if f != "layer"}
    finally:
        cache._leave()
    return {"tenant": name, "priority": _PRIORITY_NAMES.get(s.priority, str(s.priority)),
            "layers": layers,
            "usage": {"bytes": s.bytes, "entries": s.entries, "quota_bytes": s.quota_bytes}}


class TenantView:
    """The cache as one tenant sees it (Cache.as_tenant()). Keys are the same strings the
    tenant would name through the daemon."""

    def __init__(self, cache: "Cache", tenant: Optional[str],
                 cost_s: Optional[float] = None) -> None:
        self._cache = cache
        self.tenant = tenant
        self._btenant = cstr(tenant, "tenant")
        self._cost_s = cost_s

    def _caller(self, cost_s: Optional[float] = None) -> _lib.Caller:
        c = _lib.Caller()
        lib.gencache_caller_init(ctypes.byref(c))
        c.tenant = self._btenant
        if cost_s is None:
            cost_s = self._cost_s
        if cost_s is not None:
            c.cost_ms = int(round(float(cost_s) * 1000))
        return c

    def _lookup(self, key: str, fn: Any, cost_s: Optional[float] = None) -> Optional[Handle]:
        out = ctypes.c_void_p()
        c = self._caller(cost_s)
        ptr = self._cache._enter()
        try:
            rc = fn(ptr, ctypes.byref(c), cstr(key, "key"), ctypes.byref(out))
        finally:
            self._cache._leave()
        if rc == _lib.CODES["ENOTFOUND"]:
            return None
        _raise(rc, "get %s" % key)
        return Handle(out.value or 0)

    def get(self, key: str, *, cost_s: Optional[float] = None) -> Optional[Handle]:
        """A Handle on the tenant's entry, or None. cost_s: what computing it would cost this
        request (a hit credits it to the savings)."""
        return self._lookup(key, lib.gencache_get_as, cost_s)

    def peek(self, key: str) -> Optional[Handle]:
        return self._lookup(key, lib.gencache_peek_as)

    def get_bytes(self, key: str) -> Optional[bytes]:
        h = self.get(key)
        if h is None:
            return None
        with h:
            return h.bytes()

    def put(self, key: str, data: Any, *, cost_s: float = 0.0, ttl_s: Optional[float] = None,
            content_type: Optional[str] = None, model: Optional[str] = None,
            tags: Union[str, Sequence[str], None] = None) -> None:
        """Stores bytes as this tenant's. Raises QuotaExceeded, Forbidden, GencacheError."""
        buf = bytes(data)
        m = _lib.Meta()
        lib.gencache_meta_init(ctypes.byref(m))
        m.cost_ms = int(round(float(cost_s) * 1000))
        if ttl_s is not None:
            m.ttl_ms = int(round(float(ttl_s) * 1000))
        m.content_type = cstr(content_type, "content_type")
        m.model = cstr(model, "model")
        if tags is not None and not isinstance(tags, str):
            tags = ",".join(tags)
        m.tags = cstr(tags, "tags")
        c = self._caller()
        ptr = self._cache._enter()
        try:
            rc = lib.gencache_put_as(ptr, ctypes.byref(c), cstr(key, "key"), buf, len(buf),
                                     ctypes.byref(m))
        finally:
            self._cache._leave()
        _raise(rc, "put %s" % key)

    def delete(self, key: str) -> bool:
        """True when the tenant's entry was removed, False when there was none. Raises
        Forbidden for a shared entry another tenant wrote."""
        c = self._caller()
        ptr = self._cache._enter()
        try:
            rc = lib.gencache_del_as(ptr, ctypes.byref(c), cstr(key, "key"))
        finally:
            self._cache._leave()
        if rc == _lib.CODES["ENOTFOUND"]:
            return False
        _raise(rc, "delete %s" % key)
        return True

    def invalidate(self, key: Optional[str] = None, *, layer: Optional[str] = None,
                   tenant: Optional[str] = None, tag: Optional[str] = None,
                   model: Optional[str] = None, older_than_s: Optional[float] = None) -> int:
        """Removes the matching entries this tenant may remove (its own, unless it is an admin);
        returns how many."""
        f = _lib.Filter()
        lib.gencache_filter_init(ctypes.byref(f))
        f.key, f.layer, f.tenant = cstr(key), cstr(layer), cstr(tenant)
        f.tag, f.model = cstr(tag), cstr(model)
        if older_than_s is not None:
            f.older_than_ms = int(round(float(older_than_s) * 1000))
        n = ctypes.c_uint64()
        c = self._caller()
        ptr = self._cache._enter()
        try:
            rc = lib.gencache_invalidate_as(ptr, ctypes.byref(c), ctypes.byref(f),
                                            ctypes.byref(n))
        finally:
            self._cache._leave()
        _raise(rc, "invalidate")
        return n.value

    def stats(self) -> dict[str, Any]:
        """{"tenant", "priority", "layers": {name: counters}, "usage": {bytes, entries,
        quota_bytes}}: the same document the daemon's GET /v1/stats gives this tenant."""
        return stats(self._cache, self.tenant or "")

    def __repr__(self) -> str:
        return "<gencache tenant view %r>" % self.tenant

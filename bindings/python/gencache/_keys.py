"""Canonical keys and prompt normalization through the C key module (src/key/), so a key made
in Python is byte for byte the key the CLI, the daemon and the C API make for the same request.
"""
from __future__ import annotations

import ctypes
import json
import os
from typing import Any, Mapping, Optional, Sequence, Union

from . import _lib
from ._lib import lib, cstr

MODES = {"exact": 0, "safe": 1, "clip": 2, "tokens": 3, "aggressive": 4}
SCOPES = {"global": 0, "tenant": 1, "session": 2}
# A request: a dict (the JSON object of DESIGN.md section 2), or its JSON text.
Request = Union[Mapping[str, Any], str, bytes]
TRUST_TENANT = 1


def mode_code(mode: Union[str, int]) -> int:
    if isinstance(mode, int) and mode in MODES.values():
        return mode
    try:
        return MODES[mode]  # type: ignore[index]
    except (KeyError, TypeError):
        raise ValueError("unknown normalization mode %r (expected one of %s)"
                         % (mode, ", ".join(MODES))) from None


def normalize(text: Union[str, bytes], mode: str = "safe") -> str:
    """The prompt `text` normalized with `mode` (exact, safe, clip, tokens, aggressive)."""
    _lib.require("prompt normalization", "gencache_normalize", "gencache_free")
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    out = ctypes.c_void_p()
    n = ctypes.c_size_t()
    _lib.check(lib.gencache_normalize(mode_code(mode), raw, len(raw), ctypes.byref(out),
                                      ctypes.byref(n)), "normalize")
    try:
        return ctypes.string_at(out.value or 0, n.value).decode("utf-8")
    finally:
        lib.gencache_free(out)


def request_json(request: Request, digest_paths: bool = False) -> bytes:
    """A request (dict, JSON text or bytes) as UTF-8 JSON bytes. An "image" may be given as a
    path (str or PathLike: becomes {"path": ...}), as {"path": ...}, as {"digest": ...}, or as
    an image object (numpy array, PIL image), which becomes {"digest": ...}. digest_paths:
    replace paths by their pixel digest here (a daemon never opens a file a client names)."""
    if isinstance(request, (bytes, bytearray)):
        return bytes(request)
    if isinstance(request, str):
        return request.encode("utf-8")
    if isinstance(request, dict):
        req = dict(request)
        img = req.get("image")
        if img is not None:
            from ._image import image_digest
            if isinstance(img, dict):
                if digest_paths and "path" in img:
                    req["image"] = {"digest": image_digest(img["path"])}
            elif isinstance(img, (str, os.PathLike)):
                req["image"] = ({"digest": image_digest(img)} if digest_paths
                                else {"path": os.fspath(img)})
            else:
                req["image"] = {"digest": image_digest(img)}
        return json.dumps(req, ensure_ascii=False, allow_nan=False).encode("utf-8")
    raise TypeError("a request is a dict or JSON text, not %s" % type(request).__name__)


class Keyspace:
    """Layer recipes and normalization modes (gencache_keyspace): what enters each key."""

    def __init__(self, cache_ptr: Optional[int] = None) -> None:
        """A new keyspace with the default layers, or with cache_ptr (a gencache *) the view of
        that cache's layer registry (gencache_keyspace_from_cache), which may outlive it."""
        _lib.require("key derivation", "gencache_keyspace_new", "gencache_request_parse_ex",
                     "gencache_request_key")
        p = ctypes.c_void_p()
        if cache_ptr is None:
            _lib.check(lib.gencache_keyspace_new(ctypes.byref(p)), "keyspace")
        else:
            _lib.check(lib.gencache_keyspace_from_cache(cache_ptr, ctypes.byref(p)), "keyspace")
        self._ptr = p.value

    def __del__(self) -> None:
        ptr, self._ptr = getattr(self, "_ptr", None), None
        if ptr:
            lib.gencache_keyspace_free(ptr)

    def set_layer(self, layer: str, fields: Sequence[str], scope: str = "global") -> None:
        names = [cstr(f, "field") for f in fields]
        arr = (ctypes.c_char_p * max(len(names), 1))(*names)
        _lib.check(lib.gencache_keyspace_set_layer(self._ptr, cstr(layer, "layer"), arr,
                                                   len(names), SCOPES[scope]),
                   "layer %r" % layer)

    def set_mode(self, mode: str, model: Optional[str] = None) -> None:
        _lib.check(lib.gencache_keyspace_set_mode(self._ptr, cstr(model, "model"),
                                                  mode_code(mode)), "normalization mode")

    def add_synonym(self, word: str, replacement: str) -> None:
        _lib.check(lib.gencache_keyspace_add_synonym(self._ptr, cstr(word), cstr(replacement)),
                   "synonym")

    def layers(self) -> list[str]:
        n = lib.gencache_keyspace_layer_count(self._ptr)
        return [_lib.pystr(lib.gencache_keyspace_layer_name(self._ptr, i)) or ""
                for i in range(n)]

    def _parse(self, request: Request, trust_tenant: bool = True,
               tenant: Optional[str] = None) -> int:
        body = request_json(request)
        req = ctypes.c_void_p()
        err = ctypes.create_string_buffer(256)
        rc = lib.gencache_request_parse_ex(self._ptr, body, len(body),
                                           TRUST_TENANT if trust_tenant else 0,
                                           ctypes.byref(req), err, len(err))
        if rc < 0:
            raise _lib.error(rc, "request", err.value.decode("utf-8", "replace") or None)
        if tenant is not None:
            rc = lib.gencache_request_set_tenant(req, cstr(tenant, "tenant"))
            if rc < 0:
                lib.gencache_request_free(req)
                raise _lib.error(rc, "tenant")
        return req.value or 0

    def key(self, request: Request, layer: Optional[str] = None, tenant: Optional[str] = None,
            trust_tenant: bool = True) -> Any:
        """The key "<layer>/<hex>" of `request` for `layer`; with no layer, a dict of the keys of
        every layer the request has one for (layers it is uncacheable in are left out). tenant
        (set after parsing) overrides the body's "tenant", which is honoured when trust_tenant
        (the default for in-process callers)."""
        req = self._parse(request, trust_tenant, tenant)
        try:
            if layer is not None:
                return self._key(req, layer)
            keys = {}
            for name in self.layers():
                try:
                    keys[name] = self._key(req, name)
                except _lib.GencacheError as e:
                    if e.name != "EUNCACHEABLE":
                        raise
            return keys
        finally:
            lib.gencache_request_free(req)

    def _key(self, req: int, layer: str) -> str:
        out = ctypes.create_string_buffer(_lib.KEY_MAX)
        _lib.check(lib.gencache_request_key(req, cstr(layer, "layer"), out, len(out)),
                   "key for layer %r" % layer)
        return out.value.decode("ascii")

    def canonical(self, request: Request, layer: str, tenant: Optional[str] = None) -> str:
        """The canonical document whose SHA-256 is the key (for debugging a miss)."""
        _lib.require("canonical documents", "gencache_request_canonical")
        req = self._parse(request, True, tenant)
        try:
            out = ctypes.c_void_p()
            n = ctypes.c_size_t()
            _lib.check(lib.gencache_request_canonical(req, cstr(layer), ctypes.byref(out),
                                                      ctypes.byref(n)), "canonical")
            try:
                return ctypes.string_at(out.value or 0, n.value).decode("utf-8")
            finally:
                lib.gencache_free(out)
        finally:
            lib.gencache_request_free(req)


_default = None


def default_keyspace() -> Keyspace:
    global _default
    if _default is None:
        _default = Keyspace()
    return _default


def key(request: Request, layer: Optional[str] = None, tenant: Optional[str] = None) -> Any:
    """The key of `request` for `layer` with the default recipes (DESIGN.md section 2)."""
    return default_keyspace().key(request, layer, tenant)

"""gencache.yaml for the in-process cache, read by the library (gencache_config_load), so a file
means the same here as in the daemon and the CLI: one size grammar ("1G" is 2**30, "1GB" 10**9),
one duration grammar ("30m", "7d", "1w"; a bare number is seconds), the same checks and the same
"FILE:LINE: key.path: message" errors. Keys only a daemon uses (listen, tenants, upstream, ...)
are accepted and ignored by Cache.
"""
from __future__ import annotations

import ctypes
import json
import os
from typing import Any, Optional, Union

from . import _lib
from ._lib import lib, cstr

ERR_MAX = 512


class ConfigError(_lib.GencacheError, ValueError):
    """A config the library refused; str() is its "FILE:LINE: key.path: message"."""

    def __init__(self, code: int, message: str) -> None:
        _lib.GencacheError.__init__(self, code, message)
        self.detail = message

    def __str__(self) -> str:
        return self.detail


def _scaled(fn: Any, v: object, what: str, example: str) -> int:
    out = ctypes.c_uint64()
    if fn(cstr(str(v), what), ctypes.byref(out)) != 0:
        raise ValueError("%s: expected %s, got %r" % (what, example, v))
    return int(out.value)


def parse_size(v: Union[int, str], what: str = "size") -> int:
    """Bytes from an int or a size string ("4096", "512M", "1G", "1GiB", "1GB"), by the
    library's grammar (gencache_parse_size)."""
    if isinstance(v, bool):
        raise ValueError("%s: expected a size, got %r" % (what, v))
    if isinstance(v, int):
        if v < 0:
            raise ValueError("%s: negative size %r" % (what, v))
        return v
    return _scaled(lib.gencache_parse_size, v, what, "a size like 1G, 512M or 4096")


def parse_seconds(v: Union[int, float, str], what: str = "duration") -> float:
    """Seconds (float) from a number or a duration string ("500ms", "90s", "30m", "7d", "1w"),
    by the library's grammar (gencache_parse_duration_ms)."""
    if isinstance(v, bool):
        raise ValueError("%s: expected a duration, got %r" % (what, v))
    if isinstance(v, (int, float)):
        if v < 0:
            raise ValueError("%s: negative duration %r" % (what, v))
        return float(v)
    return _scaled(lib.gencache_parse_duration_ms, v, what,
                   "a duration like 30m, 7d, 90s or 500ms") / 1000.0


class Config:
    """A loaded gencache_config (freed with the object)."""

    def __init__(self, ptr: Optional[int]) -> None:
        self._ptr = ptr

    @property
    def ptr(self) -> Optional[int]:
        return self._ptr

    def free(self) -> None:
        ptr, self._ptr = self._ptr, None
        if ptr:
            lib.gencache_config_free(ptr)

    def __del__(self) -> None:
        self.free()


def load(config: Union[None, str, "os.PathLike[str]", dict[str, Any]]) -> Optional[Config]:
    """A Config from a path to a gencache.yaml (or JSON) file, or from a dict (written as JSON,
    which YAML reads as it is); None for None."""
    if config is None:
        return None
    p = ctypes.c_void_p()
    err = ctypes.create_string_buffer(ERR_MAX)
    if isinstance(config, dict):
        text = json.dumps(config).encode("utf-8")
        rc = lib.gencache_config_parse(b"<config>", text, len(text), ctypes.byref(p), err,
                                       len(err))
    else:
        rc = lib.gencache_config_load(cstr(os.fspath(config), "config"), ctypes.byref(p), err,
                                      len(err))
    if rc != 0:
        raise ConfigError(rc, _lib.pystr(err.value) or _lib.strerror(rc))
    return Config(p.value)

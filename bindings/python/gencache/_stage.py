"""get_or_compute() and the @stage decorator, shared by Cache and Client: the class supplies
lookups (_lookup_value), stores (put, put_tensor), keys (key), layers (_ensure_layer) and its
coalescing (_compute_once: the library's single flight for a Cache, gencache._coalesce's Python
one for a Client); this mixin adds the cost measurement and the decorator.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Optional, Sequence

from . import _tensors as T


class StageMixin:
    """The hooks it calls (put, put_tensor, key, _lookup_value, _ensure_layer, _coalescer)
    belong to the class it is mixed into; they are reached through `host`, typed Any."""

    def get_or_compute(self, key: str, fn: Callable[[], Any], *, with_outcome: bool = False,
                       device: Any = None, codec: Optional[str] = None,
                       **put_args: Any) -> Any:
        """The value stored under `key`; on a miss, fn() is called, its wall time recorded as
        the entry's cost, and its result (bytes, numpy array or torch tensor) stored.

        Concurrent callers in this process that miss on one key run fn once: the others wait
        and then read the stored result. If fn raises, the exception propagates to the caller
        whose call ran fn, and each waiting caller starts over (one of them runs fn next):
        a failure is never cached and never raised in a thread that did not run fn.

        A hit returns what get_tensor() / get_bytes() return (tensors are read-only views of
        the cache's memory, on `device` if given); the caller that ran fn gets fn's own result.
        with_outcome=True returns (value, outcome), outcome "hit", "miss" or "coalesced".
        put_args (ttl_s, tags, model, tenant, pinned) and codec go to the store."""
        def store(value: Any, seconds: float) -> Any:
            self._store_value(key, value, seconds, codec, put_args)
            return value

        value, outcome = self._compute_once(key, device, fn, store)
        return (value, outcome) if with_outcome else value

    def _compute_once(self, key: str, device: Any, fn: Callable[[], Any],
                      store: Callable[[Any, float], Any]) -> tuple[Any, str]:
        """(value, outcome) of fn run once for all concurrent callers: gencache._coalesce."""
        host: Any = self

        def lookup() -> tuple[bool, Any]:
            found: tuple[bool, Any] = host._lookup_value(key, device)
            return found

        found: tuple[Any, str] = host._coalescer.run(key, lookup, fn, store)
        return found

    def _store_value(self, key: str, value: Any, seconds: float, codec: Optional[str],
                     put_args: dict[str, Any]) -> None:
        host: Any = self
        if T.is_numpy(value) or T.is_torch(value):
            host.put_tensor(key, value, cost_s=seconds, codec=codec, **put_args)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            host.put(key, value, cost_s=seconds, **put_args)
        else:
            raise TypeError("get_or_compute stores bytes, numpy arrays and torch tensors; the "
                            "function returned %s" % type(value).__name__)

    def stage(self, layer: str, key_fields: Optional[Sequence[str]] = None,
              **options: Any) -> Callable[[Callable[..., Any]], Any]:
        """Decorator for a pipeline stage whose result is cached in `layer`.

        The decorated function's arguments named in key_fields (default: all of them) form the
        request whose key for `layer` is looked up; an "image" argument may be a path, numpy
        array or PIL image (its pixel digest enters the key), None counts as absent. On a miss
        the function runs once (coalesced, see get_or_compute) and its result is stored with
        its measured cost. With an in-process Cache, a layer it does not know is defined with
        key_fields as its recipe. options go to get_or_compute (ttl_s, tags, model, codec,
        device); without a model option, a "model" argument is recorded as the entry's model, so
        invalidate(model=...) reaches it. The wrapper also has .with_outcome(...) -> (value, outcome) and .key(...)."""
        host: Any = self

        def decorate(fn: Callable[..., Any]) -> Any:
            sig = inspect.signature(fn)
            fields = list(key_fields) if key_fields is not None else list(sig.parameters)
            unknown = [f for f in fields if f not in sig.parameters]
            if unknown:
                raise TypeError("key_fields %s are not parameters of %s"
                                % (unknown, fn.__name__))
            host._ensure_layer(layer, fields)

            def request_of(*args: Any, **kwargs: Any) -> dict[str, Any]:
                bound = sig.bind(*args, **kwargs)
                bound.apply_defaults()
                return {f: bound.arguments[f] for f in fields
                        if bound.arguments.get(f) is not None}

            def key_of(*args: Any, **kwargs: Any) -> str:
                k: str = host.key(request_of(*args, **kwargs), layer)
                return k

            def with_outcome(*args: Any, **kwargs: Any) -> tuple[Any, str]:
                request = request_of(*args, **kwargs)
                k = host.key(request, layer)
                opts = options
                if "model" not in opts and isinstance(request.get("model"), str):
                    # The entry records the model it was derived from, so invalidating that
                    # model (an upgrade) reaches this stage's entries too.
                    opts = dict(options, model=request["model"])
                found: tuple[Any, str] = self.get_or_compute(
                    k, lambda: fn(*args, **kwargs), with_outcome=True, **opts)
                return found

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return with_outcome(*args, **kwargs)[0]

            w: Any = wrapper
            w.with_outcome = with_outcome
            w.key = key_of
            w.layer = layer
            return w
        return decorate

"""gencache.Client: the gencached daemon over HTTP, with the standard library only.

The methods mirror Cache's (get, put, delete, invalidate, stats, key, get_tensor, put_tensor,
get_or_compute, stage). Each thread keeps one keep-alive connection (http.client); a request
that fails because the daemon closed an idle kept-alive connection is sent once more on a
fresh one, which is safe for every method used here (GET, HEAD, PUT and DELETE are idempotent;
POST /v1/keys and /v1/invalidate compute the same answer twice).
"""
from __future__ import annotations

import http.client
import json
import math
import threading
import urllib.parse
import weakref
from typing import Any, Mapping, Optional, Sequence, Union

from . import _lib
from . import _tensors as T
from ._coalesce import Coalescer
from ._lib import CODES, GencacheError
from ._stage import StageMixin
from ._keys import Request

# HTTP status -> the library's error code, for errors the daemon reports.
_STATUS_CODES = {400: "EINVAL", 401: "EPERM", 403: "EPERM", 404: "ENOTFOUND", 409: "EEXIST",
                 413: "ELIMIT", 422: "EUNCACHEABLE", 501: "EUNSUPPORTED", 503: "EUNAVAILABLE",
                 504: "ETIMEDOUT", 507: "EFULL"}
# The daemon's own error codes that name a library error more precisely than the status.
_ERROR_CODES = {"unsupported": "EUNSUPPORTED", "unknown_route": "EUNSUPPORTED",
                "uncacheable": "EUNCACHEABLE", "unknown_layer": "ENOTFOUND",
                "not_found": "ENOTFOUND", "too_big": "ETOOBIG",
                "cache_full": "EFULL", "limit": "ELIMIT", "body_too_large": "ELIMIT",
                "forbidden": "EPERM", "unavailable": "EUNAVAILABLE", "internal": "EIO"}
_RETRYABLE = (http.client.RemoteDisconnected, http.client.BadStatusLine,
              ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


def _prepared_bytes(prep: Any) -> bytes:
    """The bytes of a prepared tensor (a copy)."""
    import ctypes
    return ctypes.string_at(prep.ptr, prep.size) if prep.size else b""


def _embedding_bytes(embedding: Any) -> tuple[bytes, str]:
    """(little-endian bytes, "f32" or "f16") of one float32/float16 vector, numpy or torch."""
    from ._trajectory import _embedding
    prep, dtype, _ = _embedding(embedding)
    return _prepared_bytes(prep), "f16" if dtype == T.F16 else "f32"


def _form(parts: Sequence[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body of (name, content type, bytes) parts, and its Content-Type."""
    import os
    boundary = "gencache-" + os.urandom(12).hex()
    out = []
    for name, ctype, data in parts:
        out.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n"
                    "Content-Type: %s\r\n\r\n" % (boundary, name, ctype)).encode("ascii"))
        out.append(data)
        out.append(b"\r\n")
    out.append(("--%s--\r\n" % boundary).encode("ascii"))
    return b"".join(out), "multipart/form-data; boundary=" + boundary


class RemoteEntry:
    """A value fetched from a daemon: its bytes (owned by this object) and metadata. Offers what
    a Handle offers (bytes, array, memoryview, tensor, meta, dtype, shape; a context manager),
    so code can take either."""

    def __init__(self, key: str, data: bytearray, headers: dict[str, str]) -> None:
        self.key = key
        self._data = data  # a bytearray: arrays over it are writable and owned by the caller
        self.headers = headers
        self.content_type = headers.get("content-type", "application/octet-stream")
        dtype = headers.get("x-gencache-dtype")
        self._dtype = T.dtype_code(dtype) if dtype else T.NONE
        shape = headers.get("x-gencache-shape", "")
        self._shape = tuple(int(d) for d in shape.split(",") if d.strip()) if dtype else None

    @property
    def size(self) -> int:
        return len(self._data)

    def __len__(self) -> int:
        return len(self._data)

    @property
    def dtype(self) -> Optional[str]:
        return T.DTYPE_NAMES.get(self._dtype)

    @property
    def shape(self) -> Optional[tuple[int, ...]]:
        return self._shape

    @property
    def meta(self) -> dict[str, Any]:
        h = self.headers
        ttl = h.get("x-gencache-ttl")
        return {
            "key": self.key, "layer": self.key.split("/", 1)[0], "size": len(self._data),
            "content_type": self.content_type, "dtype": self.dtype, "shape": self._shape,
            "cost_ms": int(h.get("x-gencache-cost-ms", 0)),
            "tags": [t for t in h.get("x-gencache-tags", "").split(",") if t],
            "pinned": h.get("x-gencache-pinned") == "1", "tier": h.get("x-gencache-tier"),
            "ttl_s": int(ttl) if ttl is not None else None, "etag": h.get("etag"),
        }

    def bytes(self) -> bytes:
        return bytes(self._data)

    def memoryview(self) -> memoryview:
        return memoryview(self._data)

    def array(self, raw: bool = False) -> Any:
        import numpy as np
        if self._dtype != T.NONE and not raw:
            return np.frombuffer(self._data, dtype=np.dtype(T.TYPESTR[self._dtype])).reshape(
                self._shape or ())
        return np.frombuffer(self._data, dtype=np.uint8)

    def __array__(self, dtype: Any = None, copy: Optional[bool] = None) -> Any:
        a = self.array()
        return a if dtype is None else a.astype(dtype)

    def tensor(self, device: Any = None, copy: bool = False) -> Any:
        if self._dtype == T.NONE:
            raise TypeError("%s is not a tensor entry" % self.key)
        return T.to_device(T.torch_from_numpy(self.array(), self._dtype), device, copy)

    def close(self) -> None:
        pass

    def __enter__(self) -> "RemoteEntry":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __repr__(self) -> str:
        return "<gencache.RemoteEntry %s %d bytes>" % (self.key, len(self._data))


def _close_all(conns: list[http.client.HTTPConnection], lock: threading.Lock) -> None:
    """Closes and forgets every connection in `conns` (the list stays the client's)."""
    with lock:
        taken = list(conns)
        conns.clear()
    for c in taken:
        c.close()


def _check_key(key: str) -> str:
    if not isinstance(key, str) or "/" not in key:
        raise ValueError("a key is '<layer>/<64 hex>', got %r" % (key,))
    return urllib.parse.quote(key, safe="/")


class Client(StageMixin):
    """A client of gencached at `url` (default http://127.0.0.1:8787). token: the tenant's
    bearer token. timeout: seconds per request. Safe to share between threads (one connection
    per thread)."""

    def __init__(self, url: str = "http://127.0.0.1:8787", token: Optional[str] = None,
                 timeout: float = 30.0) -> None:
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError("the daemon URL must be http://HOST:PORT, got %r" % (url,))
        self.url = url.rstrip("/")
        self._https = u.scheme == "https"
        self._host = u.hostname
        self._port = u.port or (443 if self._https else 80)
        self._prefix = u.path.rstrip("/")
        self._timeout = timeout
        self._headers = {"Authorization": "Bearer " + token} if token else {}
        self._local = threading.local()
        self._coalescer = Coalescer()
        self._conns: list[http.client.HTTPConnection] = []
        self._conns_lock = threading.Lock()
        # A client dropped without close() still closes its sockets (when it is collected, or at
        # exit): no ResourceWarning. The finalizer holds the list, not the client.
        self._finalizer = weakref.finalize(self, _close_all, self._conns, self._conns_lock)

    # ---- transport ------------------------------------------------------------------------------
    def _conn(self) -> http.client.HTTPConnection:
        c: Optional[http.client.HTTPConnection] = getattr(self._local, "conn", None)
        if c is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            c = cls(self._host, self._port, timeout=self._timeout)
            self._local.conn = c
            with self._conns_lock:
                self._conns.append(c)
        return c

    def _drop(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None
            with self._conns_lock:
                if c in self._conns:
                    self._conns.remove(c)

    def request(self, method: str, path: str, body: Optional[bytes] = None,
                headers: Optional[Mapping[str, str]] = None
                ) -> tuple[int, dict[str, str], bytearray]:
        """One request: returns (status, headers with lowercase names, body as a bytearray)."""
        hdrs = dict(self._headers)
        if headers:
            hdrs.update(headers)
        for attempt in (0, 1):
            c = self._conn()
            reused = c.sock is not None
            try:
                c.request(method, self._prefix + path, body=body, headers=hdrs)
                r = c.getresponse()
                length = r.getheader("Content-Length")
                if method == "HEAD":
                    data = bytearray()
                    r.read()
                elif length is not None and length.isdigit():
                    data = bytearray(int(length))
                    view = memoryview(data)
                    got = 0
                    while got < len(data):
                        n = r.readinto(view[got:])
                        if not n:
                            raise http.client.IncompleteRead(bytes(data[:got]), len(data) - got)
                        got += n
                else:
                    data = bytearray(r.read())
                resp_headers = {k.lower(): v for k, v in r.getheaders()}
                if r.will_close:
                    self._drop()
                return r.status, resp_headers, data
            except _RETRYABLE:
                self._drop()
                if attempt or not reused:
                    raise
            except BaseException:
                self._drop()
                raise
        raise AssertionError("the second attempt returns or raises")

    def _error(self, status: int, body: bytearray, what: str) -> _lib.GencacheError:
        code: Optional[str] = None
        message: Optional[str] = None
        try:
            err = json.loads(bytes(body).decode("utf-8"))["error"]
            code, message = err.get("code"), err.get("message")
        except (ValueError, KeyError, TypeError, AttributeError):
            message = bytes(body[:200]).decode("utf-8", "replace") or None
        name = _ERROR_CODES.get(code or "") or _STATUS_CODES.get(status) or "EIO"
        e = _lib.error(CODES[name], what, "%s (HTTP %d%s)" % (message or "daemon error",
                                                               status,
                                                               ", " + code if code else ""),
                       status)
        e.http_code = code  # type: ignore[attr-defined]
        return e

    def _json(self, method: str, path: str, payload: Any, what: str) -> Any:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8") \
            if payload is not None else None
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        status, _, data = self.request(method, path, body, hdrs)
        if status >= 400:
            raise self._error(status, data, what)
        return json.loads(bytes(data).decode("utf-8")) if data else {}

    def close(self) -> None:
        """Closes every connection this client opened (from any thread)."""
        _close_all(self._conns, self._conns_lock)
        self._local = threading.local()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- entries --------------------------------------------------------------------------------
    def health(self) -> bool:
        """True when GET /healthz answers ok."""
        status, _, body = self.request("GET", "/healthz")
        return status == 200 and bytes(body).strip() == b"ok"

    def get(self, key: str) -> Optional[RemoteEntry]:
        """A RemoteEntry, or None on a miss (404)."""
        path = "/v1/entries/" + _check_key(key)
        status, headers, data = self.request("GET", path)
        if status == 404:
            return None
        if status >= 400:
            raise self._error(status, data, "get %s" % key)
        return RemoteEntry(key, data, headers)

    def peek(self, key: str) -> Optional[dict[str, Any]]:
        """The entry's metadata (HEAD: counts no access), or None on a miss."""
        status, headers, data = self.request("HEAD", "/v1/entries/" + _check_key(key))
        if status == 404:
            return None
        if status >= 400:
            raise self._error(status, data, "peek %s" % key)
        return RemoteEntry(key, bytearray(), headers).meta

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.peek(key) is not None

    def get_bytes(self, key: str) -> Optional[bytes]:
        e = self.get(key)
        return None if e is None else bytes(e._data)

    def put(self, key: str, data: Any, *, cost_s: float = 0.0,
            ttl_s: Optional[float] = None, tags: Union[str, Sequence[str], None] = None,
            content_type: Optional[str] = None, model: Optional[str] = None,
            tenant: Optional[str] = None, pinned: bool = False,
            dtype: Union[str, int, None] = None, shape: Optional[Sequence[int]] = None,
            codec: Optional[str] = None) -> None:
        """PUT /v1/entries/{key}. A numpy array or torch tensor goes to put_tensor(). model
        and tenant are not sent: the daemon takes the tenant from the token."""
        if T.is_numpy(data) or T.is_torch(data):
            return self.put_tensor(key, data, cost_s=cost_s, ttl_s=ttl_s, tags=tags,
                                   pinned=pinned, codec=codec)
        hdrs = {"Content-Type": content_type or "application/octet-stream",
                "X-Gencache-Cost-Ms": str(int(round(max(cost_s, 0) * 1000)))}
        if ttl_s is not None:
            hdrs["X-Gencache-TTL"] = str(int(math.ceil(ttl_s)))
        if tags:
            hdrs["X-Gencache-Tags"] = tags if isinstance(tags, str) else ",".join(tags)
        if pinned:
            hdrs["X-Gencache-Pinned"] = "1"
        if dtype is not None:
            hdrs["X-Gencache-Dtype"] = T.DTYPE_NAMES[T.dtype_code(dtype)]
            hdrs["X-Gencache-Shape"] = ",".join(str(int(d)) for d in shape) \
                if shape is not None else str(len(memoryview(data).cast("B"))
                                              // T.ITEMSIZE[T.dtype_code(dtype)])
        if codec is not None and codec != "none":
            hdrs["X-Gencache-Codec"] = codec
        body = data if isinstance(data, (bytes, bytearray)) else memoryview(data).cast("B")
        status, _, resp = self.request("PUT", "/v1/entries/" + _check_key(key), body, hdrs)
        if status >= 400:
            raise self._error(status, resp, "put %s" % key)

    def put_tensor(self, key: str, tensor: Any, *, cost_s: float = 0.0,
                   codec: Optional[str] = None, ttl_s: Optional[float] = None,
                   tags: Union[str, Sequence[str], None] = None, pinned: bool = False,
                   model: Optional[str] = None, tenant: Optional[str] = None) -> None:
        """Stores a numpy array or torch tensor with its dtype and shape (headers
        X-Gencache-Dtype and X-Gencache-Shape). codec "f16"/"bf16" narrows the floats here,
        with the library's own conversion (the bytes the daemon would store, half the upload);
        the int8 codecs are sent as X-Gencache-Codec for the daemon to apply."""
        prep = T.prepare(tensor)
        import numpy as np
        if codec in ("f16", "bf16"):
            from . import _codec
            narrowed = _codec.narrow(prep, T.dtype_code(codec))
            prep = T.Prepared(narrowed.ctypes.data, narrowed.nbytes, T.dtype_code(codec),
                              prep.shape, narrowed, prep.kind)
            codec = None
            raw = narrowed.reshape(-1).view(np.uint8)
        elif prep.kind == "torch":
            import torch
            raw = prep.keep.reshape(-1).view(torch.uint8).numpy() if prep.size \
                else np.zeros(0, np.uint8)
        else:
            raw = prep.keep.reshape(-1).view(np.uint8)
        self.put(key, memoryview(raw), cost_s=cost_s, ttl_s=ttl_s, tags=tags, pinned=pinned,
                 content_type=T.CT_TORCH if prep.kind == "torch" else T.CT_NUMPY,
                 dtype=prep.dtype, shape=prep.shape, codec=codec)

    def get_tensor(self, key: str, device: Any = None, *, dtype: Optional[str] = None,
                   kind: Optional[str] = None, copy: bool = False) -> Any:
        """The tensor under `key`, or None on a miss; numpy or torch as it was stored (kind
        overrides). The array owns its bytes (writable). dtype: ask the daemon to decode to
        f32/f16 (GET ?as=)."""
        path = "/v1/entries/" + _check_key(key)
        if dtype is not None:
            path += "?as=" + T.DTYPE_NAMES[T.dtype_code(dtype)]
        status, headers, data = self.request("GET", path)
        if status == 404:
            return None
        if status >= 400:
            raise self._error(status, data, "get %s" % key)
        e = RemoteEntry(key, data, headers)
        if e.shape is None:
            raise TypeError("%s is not a tensor entry" % key)
        from . import _codec
        origin = "torch" if e.content_type == T.CT_TORCH else "numpy"
        return _codec.finish(e.array(), e._dtype, origin, device, kind, copy)

    def delete(self, key: str) -> bool:
        """DELETE: True when something was removed, False when nothing was stored."""
        status, _, data = self.request("DELETE", "/v1/entries/" + _check_key(key))
        if status == 404:
            return False
        if status >= 400:
            raise self._error(status, data, "delete %s" % key)
        return True

    def invalidate(self, key: Optional[str] = None, *, layer: Optional[str] = None,
                   tenant: Optional[str] = None, tag: Optional[str] = None,
                   model: Optional[str] = None, older_than_s: Optional[float] = None) -> int:
        """POST /v1/invalidate; returns how many entries were removed."""
        criteria = (("key", key), ("layer", layer), ("tenant", tenant), ("tag", tag),
                    ("model", model))
        q: dict[str, Any] = {k: v for k, v in criteria if v is not None}
        if older_than_s is not None:
            q["older_than"] = older_than_s
        if not q:
            raise ValueError("invalidate needs at least one criterion")
        return int(self._json("POST", "/v1/invalidate", q, "invalidate").get("invalidated", 0))

    def stats(self) -> dict[str, Any]:
        """GET /v1/stats, as a dict."""
        found: dict[str, Any] = self._json("GET", "/v1/stats", None, "stats")
        return found

    def keys(self, request: Request) -> dict[str, Any]:
        """POST /v1/keys: {"keys": {layer: key}, "prompt": normalized prompt, "uncacheable":
        [layers]}. An image path is replaced by its pixel digest before it is sent."""
        from ._keys import request_json
        body = json.loads(request_json(request, digest_paths=True))
        found: dict[str, Any] = self._json("POST", "/v1/keys", body, "keys")
        return found

    def key(self, request: Request, layer: Optional[str] = None) -> Any:
        """The daemon's key for `request` in `layer` (None: {layer: key} for every layer)."""
        keys = self.keys(request).get("keys", {})
        if layer is None:
            return keys
        if layer not in keys:
            raise GencacheError(CODES["EUNCACHEABLE"],
                                "the daemon gave no key for layer %r" % layer, "key")
        return keys[layer]

    def lookup(self, layer: str, request: Mapping[str, Any]) -> Optional[dict[str, Any]]:
        """POST /v1/lookup: the entry `request` finds in `layer`, by its exact key or by a match
        the layer allows (a perceptual match of its image on a layer with image_match
        perceptual; for a seedless request with "cache": "any_seed", a result of any seed).
        An image given as a path, numpy array or PIL image is digested and hashed here: the
        daemon never opens a client's file; one given as {"digest": ..., "phash": ...} (or with
        dhash, width and height too) is sent as it is (docs/reuse.md says which guards apply).
        Returns None on a miss, else a dict: "data" (bytes), "key" (the key served), "match"
        ("exact", "perceptual" or "any_seed"), "distance" (pHash distance, 0 unless
        perceptual), "of" (the stored image's digest, perceptual only) and "seed" (the served
        result's seed, any_seed only)."""
        import ctypes
        from . import _image
        req: dict[str, Any] = dict(request)
        img = req.get("image")
        src = img.get("path") if isinstance(img, dict) else img
        if src is not None:
            with _image._Image(src) as im:
                info = (ctypes.c_uint32 * 5)()  # gencache_image_info: width, height, ...
                _lib.check(_lib.lib.gencache_image_info_get(ctypes.c_void_p(im.ptr), info),
                           "image info")
            req["image"] = {"digest": _image.image_digest(src),
                            "phash": _image.image_hash(src, "phash"),
                            "dhash": _image.image_hash(src, "dhash"),
                            "width": info[0], "height": info[1]}
        body = json.dumps({"layer": layer, "request": req}).encode("utf-8")
        status, headers, data = self.request("POST", "/v1/lookup", body,
                                             {"Content-Type": "application/json"})
        if status == 404 and b'"not_found"' in bytes(data):
            return None
        if status >= 400:
            raise self._error(status, data, "lookup in %s" % layer)
        parts = [p.strip() for p in headers.get("x-gencache-match", "").split(";")]
        attrs: dict[str, str] = {}
        for p in parts[1:]:
            name, eq, value = p.partition("=")
            if eq:
                attrs[name] = value
        return {"data": bytes(data), "key": headers.get("x-gencache-key"), "match": parts[0],
                "distance": int(attrs.get("distance", 0)), "of": attrs.get("of"),
                "seed": attrs.get("seed")}

    # ---- approximate step reuse: trajectories ---------------------------------------------------
    def trajectory_store(self, request: Mapping[str, Any], embedding: Any, latent: Any, *,
                         step: Optional[int] = None, layer: str = "trajectory",
                         cost_s: float = 0.0, ttl_s: Optional[float] = None,
                         tags: Union[str, Sequence[str], None] = None) -> str:
        """POST /v1/trajectories: stores `latent` (a numpy array or torch tensor, kept with its
        dtype and shape, or bytes), the intermediate latent taken after denoising step `step`
        (or request["step"]) of the generation `request` describes (it names the model), with
        its prompt's pooled `embedding` (a float32 or float16 vector, numpy or torch). Returns
        the key. Raises GencacheError: EINVAL for a bad embedding or a dimension unlike the one
        the layer holds for the model (the message names both), ENOTFOUND for an unknown
        layer."""
        req = dict(request)
        if step is not None:
            req["step"] = int(step)
        emb, dtype_name = _embedding_bytes(embedding)
        hdrs = {"X-Gencache-Cost-Ms": str(int(round(max(cost_s, 0) * 1000)))}
        if ttl_s is not None:
            hdrs["X-Gencache-TTL"] = str(int(math.ceil(ttl_s)))
        if tags:
            hdrs["X-Gencache-Tags"] = tags if isinstance(tags, str) else ",".join(tags)
        if T.is_numpy(latent) or T.is_torch(latent):
            prep = T.prepare(latent)
            ctype = T.CT_TORCH if prep.kind == "torch" else T.CT_NUMPY
            hdrs["X-Gencache-Dtype"] = T.DTYPE_NAMES[prep.dtype]
            hdrs["X-Gencache-Shape"] = ",".join(str(int(d)) for d in prep.shape)
            data = _prepared_bytes(prep)
        else:
            ctype, data = "application/octet-stream", bytes(memoryview(latent).cast("B"))
        doc = json.dumps({"layer": layer, "request": req, "dtype": dtype_name,
                          "dim": len(emb) // (2 if dtype_name == "f16" else 4)}).encode("utf-8")
        body, form_type = _form([("trajectory", "application/json", doc),
                                 ("embedding", "application/octet-stream", emb),
                                 ("latent", ctype, data)])
        hdrs["Content-Type"] = form_type
        status, _, resp = self.request("POST", "/v1/trajectories", body, hdrs)
        if status >= 400:
            raise self._error(status, resp, "trajectory store in %s" % layer)
        return str(json.loads(bytes(resp).decode("utf-8"))["key"])

    def trajectory_lookup(self, model: str, embedding: Any, *, layer: str = "trajectory",
                          device: Any = None) -> Optional[Any]:
        """POST /v1/trajectories/lookup: the stored latent of `model` whose prompt embedding is
        similar enough to `embedding` for the most steps to be skipped (the daemon's threshold
        table), as gencache.Resume(latent, step, similarity, key), the latent a numpy array or
        torch tensor as it was stored (bytes for a value without a shape); None when nothing is
        similar enough. Raises GencacheError EINVAL for a dimension unlike the one the layer
        holds for the model."""
        from ._trajectory import Resume
        emb, dtype_name = _embedding_bytes(embedding)
        status, headers, data = self.request("POST", "/v1/trajectories/lookup", emb, {
            "Content-Type": "application/octet-stream", "X-Gencache-Layer": layer,
            "X-Gencache-Model": model, "X-Gencache-Dtype": dtype_name})
        if status == 404 and b'"not_found"' in bytes(data):
            return None
        if status >= 400:
            raise self._error(status, data, "trajectory lookup in %s" % layer)
        key = headers.get("x-gencache-key", "")
        latent = self._entry_value(RemoteEntry(key, data, headers), device)
        return Resume(latent, int(headers.get("x-gencache-step", "0")),
                      float(headers.get("x-gencache-similarity", "0")), key)

    # ---- hooks of the compute-once helpers ------------------------------------------------------
    def _entry_value(self, e: RemoteEntry, device: Any) -> Any:
        """A fetched entry as its caller stored it: a tensor with a shape, else bytes."""
        if e.shape is not None:
            from . import _codec
            origin = "torch" if e.content_type == T.CT_TORCH else "numpy"
            return _codec.finish(e.array(), e._dtype, origin, device, None, False)
        return e.bytes()

    def _lookup_value(self, key: str, device: Any) -> tuple[bool, Any]:
        e = self.get(key)
        if e is None:
            return False, None
        return True, self._entry_value(e, device)

    def _ensure_layer(self, layer: str, fields: Sequence[str]) -> None:
        pass  # layers and their recipes live in the daemon's config

    def __repr__(self) -> str:
        return "<gencache.Client %s>" % self.url

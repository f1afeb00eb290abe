"""Read handles: zero-copy views, write protection and lifetime."""
import ctypes
import gc

import numpy as np
import pytest

import gencache
from gencache import _lib

K1 = "result/" + "11" * 32
K2 = "result/" + "22" * 32


def c_data_ptr(handle):
    """gencache_handle_data() called directly on the handle's C pointer."""
    return _lib.lib.gencache_handle_data(handle._ref.ptr)


def test_numpy_view_is_zero_copy_and_read_only(cache):
    payload = bytes(range(256)) * 64
    cache.put(K1, payload)
    with cache.get(K1) as h:
        a = np.asarray(h)
        assert a.ctypes.data == c_data_ptr(h) == h.data_ptr
        assert a.dtype == np.uint8 and a.shape == (len(payload),)
        assert a.tobytes() == payload
        assert not a.flags.writeable
        with pytest.raises(ValueError):
            a[0] = 1
        with pytest.raises(ValueError):
            a.setflags(write=True)
        assert isinstance(a.base, gencache._handle._Ref)  # holds its own reference
        assert a.base.ptr and a.base is not h._ref
    # the stored bytes did not change under any of that
    assert cache.get_bytes(K1) == payload


def test_memoryview_is_zero_copy_and_read_only(cache):
    cache.put(K1, b"abcdef")
    with cache.get(K1) as h:
        mv = h.memoryview()
        assert ctypes.addressof(mv.obj) == c_data_ptr(h)
        assert mv.readonly and mv.format == "B" and mv.tobytes() == b"abcdef"
        with pytest.raises(TypeError):
            mv[0] = 0


def test_tensor_view_shares_memory(cache):
    torch = pytest.importorskip("torch")
    cache.put_tensor(K1, torch.arange(12, dtype=torch.float32).reshape(3, 4))
    with cache.get(K1) as h:
        t = h.tensor()
        assert t.data_ptr() == c_data_ptr(h)
        assert t.shape == (3, 4) and t.dtype == torch.float32


def test_views_outlive_close_eviction_and_cache_close():
    torch = pytest.importorskip("torch")
    c = gencache.Cache(mem_max_bytes=1 << 20)
    payload = np.random.default_rng(1).integers(0, 255, 200_000, dtype=np.uint8).tobytes()
    c.put(K1, payload)
    h = c.get(K1)
    arr = np.asarray(h)
    mv = h.memoryview()
    c.put_tensor(K2, np.arange(1000, dtype=np.float32))
    tens = c.get_tensor(K2, kind="torch")
    h.close()
    assert h.closed
    with pytest.raises(ValueError):
        h.bytes()
    # Evict both entries by filling the 1 MiB tier, then close the cache.
    for i in range(20):
        c.put("result/%064x" % (i + 100), b"x" * 100_000)
    assert K1 not in c and K2 not in c
    assert c.stats()["tiers"]["mem"]["evictions_capacity"] >= 2
    c.close()
    gc.collect()
    assert arr.tobytes() == payload
    assert mv.tobytes() == payload
    assert torch.equal(tens, torch.arange(1000, dtype=torch.float32))
    with pytest.raises(ValueError):
        c.get(K1)


def test_handle_survives_delete_and_replace(cache):
    cache.put(K1, b"first")
    h = cache.get(K1)
    a = np.asarray(h)
    assert cache.delete(K1) is True
    assert cache.delete(K1) is False
    cache.put(K1, b"second")
    assert a.tobytes() == b"first" and h.bytes() == b"first"
    assert cache.get_bytes(K1) == b"second"
    h.close()


def test_meta_of_a_hit(cache):
    cache.put(K1, b"v", cost_s=1.25, tags=["a", "b"], content_type="text/plain", model="m1")
    with cache.get(K1) as h:
        m = h.meta
    assert m["key"] == K1 and m["layer"] == "result" and m["size"] == 1
    assert m["cost_ms"] == 1250 and m["tags"] == ["a", "b"] and m["model"] == "m1"
    assert m["content_type"] == "text/plain" and m["tier"] == "mem" and m["hits"] == 1


def test_zero_length_value(cache):
    cache.put(K1, b"")
    with cache.get(K1) as h:
        assert h.size == 0 and h.bytes() == b"" and np.asarray(h).shape == (0,)
        assert h.memoryview().tobytes() == b""

"""The device tier (Cache(device=..., device_bytes=...)): tensors resident on a torch device with
their own byte cap and LRU, promoted on a host hit, demoted by dropping the device copy, never
copied on a device hit, never served once the host value changed. The tests use the "cpu" and
"meta" devices (any torch device works); the stream checks run where CUDA is available."""
import os
import threading

import numpy as np
import pytest

import gencache

torch = pytest.importorskip("torch")

K = ["image_latent/%064x" % i for i in range(8)]


@pytest.fixture(params=["extension", "ctypes"])
def path(request):
    return request.param


def make(path, **kw):
    c = gencache.Cache(mem_max_bytes=16 << 20, **kw)
    if path == "ctypes":
        c._core = None
    return c


def test_device_hit_is_the_resident_tensor_itself(path):
    c = make(path, device="cpu", device_bytes=1 << 20)
    t = torch.arange(64, dtype=torch.float32).reshape(8, 8)
    c.put_tensor(K[0], t)
    first = c.get_tensor(K[0], device="cpu")
    assert torch.equal(first, t)
    with c.get(K[0]) as h:  # the device copy is its own memory, not the host's bytes
        assert first.data_ptr() != h.data_ptr
    for _ in range(3):
        assert c.get_tensor(K[0], device="cpu") is first  # no copy on a device hit
    s = c.device_tier.stats()
    assert (s["promotions"], s["hits"], s["entries"], s["bytes"]) == (1, 3, 1, 256)
    # A device hit still counts as an access of the host entry (it stays warm there).
    assert c.stats()["layers"]["image_latent"]["hits"] >= 4
    c.close()


def test_lru_byte_cap_demotes_by_dropping_the_device_copy(path):
    c = make(path, device="cpu", device_bytes=1000)
    for k in K[:3]:
        c.put_tensor(k, torch.ones(100))  # 400 bytes each
    c.get_tensor(K[0], device="cpu")
    c.get_tensor(K[1], device="cpu")
    c.get_tensor(K[0], device="cpu")  # K[1] is now the least recently used
    c.get_tensor(K[2], device="cpu")
    tier = c.device_tier
    assert tier.keys() == [K[0], K[2]] and tier.stats()["bytes"] == 800
    assert tier.stats()["demotions"] == 1
    assert K[1] in c  # demotion drops only the device copy
    assert torch.equal(c.get_tensor(K[1], device="cpu"), torch.ones(100))
    big = torch.zeros(1000)  # 4000 bytes: more than the whole tier
    c.put_tensor(K[3], big)
    got = c.get_tensor(K[3], device="cpu")
    assert torch.equal(got, big) and K[3] not in tier and tier.stats()["too_big"] == 1
    assert tier.stats()["bytes"] <= 1000
    c.close()


def test_a_changed_host_value_is_never_served_from_the_device(path):
    c = make(path, device="cpu", device_bytes=1 << 20)
    c.put_tensor(K[0], torch.ones(10))
    old = c.get_tensor(K[0], device="cpu")
    c.put_tensor(K[0], torch.full((10,), 2.0))
    assert torch.equal(c.get_tensor(K[0], device="cpu"), torch.full((10,), 2.0))
    assert torch.equal(old, torch.ones(10))  # what a caller holds is not changed under it
    assert c.delete(K[0])
    assert c.get_tensor(K[0], device="cpu") is None and K[0] not in c.device_tier
    c.put_tensor(K[1], torch.ones(10), model="m1")
    c.get_tensor(K[1], device="cpu")
    assert K[1] in c.device_tier
    assert c.invalidate(model="m1") == 1
    assert K[1] not in c.device_tier  # pruned at once
    c.put_tensor(K[2], torch.ones(10), ttl_s=0.05)
    c.get_tensor(K[2], device="cpu")
    import time
    time.sleep(0.15)
    assert c.get_tensor(K[2], device="cpu") is None and K[2] not in c.device_tier
    c.close()


def test_a_value_changed_behind_the_tier_is_detected_by_its_stamp(path):
    c = make(path, device="cpu", device_bytes=1 << 20)
    c.put_tensor(K[0], torch.ones(4))
    c.get_tensor(K[0], device="cpu")
    # Another writer of the same C cache (a TenantView owner put goes past this Cache's put).
    c.as_owner().put(K[0], torch.full((4,), 5.0).numpy().tobytes())
    with pytest.raises(TypeError):  # now plain bytes, not a tensor: never served as the old one
        c.get_tensor(K[0], device="cpu")
    assert K[0] not in c.device_tier and c.device_tier.stats()["stale"] >= 1
    c.close()


def test_promotion_decodes_codecs_and_keeps_dtypes(path):
    c = make(path, device="cpu", device_bytes=1 << 20)
    b = torch.randn(4, 4).to(torch.bfloat16)
    c.put_tensor(K[0], b)
    assert torch.equal(c.get_tensor(K[0], device="cpu"), b)
    a = np.linspace(-1, 1, 64, dtype=np.float32)
    c.put_tensor(K[1], a, codec="int8")
    got = c.get_tensor(K[1], device="cpu")
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    assert float((got - torch.from_numpy(a)).abs().max()) < 0.01
    c.put(K[2], b"plain bytes")
    with pytest.raises(TypeError, match="not a tensor"):
        c.get_tensor(K[2], device="cpu")
    # Other reads bypass the tier: a writable copy, a dtype conversion, a plain host view.
    w = c.get_tensor(K[0], device="cpu", copy=True)
    assert w is not c.get_tensor(K[0], device="cpu")
    assert c.get_tensor(K[1], device="cpu", dtype="f16").dtype == torch.float16
    assert isinstance(c.get_tensor(K[1]), np.ndarray)
    c.close()


def test_preferred_entries_load_at_start_and_stay_longest(path, tmp_path):
    key = K[0]
    with gencache.Cache(data_dir=str(tmp_path)) as first:
        first.put_tensor(key, torch.arange(10, dtype=torch.int64))
    c = make(path, data_dir=str(tmp_path), device="cpu", device_bytes=1000,
             device_preferred=[key, "text_embedding/*"])
    assert key in c.device_tier  # loaded at start, from the disk tier
    assert torch.equal(c.get_tensor(key, device="cpu"), torch.arange(10))
    emb = "text_embedding/" + "e" * 64
    c.put_tensor(emb, torch.ones(50))  # 200 bytes, matches a pattern: promoted on put
    assert emb in c.device_tier
    for k in K[1:4]:  # 400 bytes each: pressure evicts the ordinary ones first
        c.put_tensor(k, torch.ones(100))
        c.get_tensor(k, device="cpu")
    assert key in c.device_tier and emb in c.device_tier
    assert c.device_tier.stats()["bytes"] <= 1000
    c.close()


def test_config_preferred_patterns_reach_the_device_tier(path):
    emb = "text_embedding/" + "c" * 64
    c = make(path, config={"preferred": ["text_embedding/*"]}, device="cpu",
             device_bytes=1 << 20)
    assert c.device_tier.preferred == ["text_embedding/*"]
    c.put_tensor(emb, torch.ones(3))
    assert emb in c.device_tier
    c.close()


def test_meta_device(path):
    c = make(path, device="meta", device_bytes=1 << 20)
    c.put_tensor(K[0], torch.ones(3, 5, dtype=torch.float16))
    t = c.get_tensor(K[0], device="meta")
    assert t.device.type == "meta" and t.shape == (3, 5) and t.dtype == torch.float16
    assert c.get_tensor(K[0], device="meta") is t
    assert c.device_tier.stats()["bytes"] == 30
    c.close()


def test_threads_share_one_resident_copy(path):
    c = make(path, device="cpu", device_bytes=1 << 20)
    c.put_tensor(K[0], torch.ones(1000))
    got = []

    def reader():
        for _ in range(50):
            got.append(c.get_tensor(K[0], device="cpu"))

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 200 and all(g is got[0] for g in got)
    assert c.device_tier.stats()["promotions"] == 1
    c.close()
    assert c.device_tier.stats()["entries"] == 0  # close drops the device copies


def test_bad_device_options():
    with pytest.raises(ValueError):
        gencache.Cache(device="cpu", device_bytes=-1)
    if "libasan" not in os.environ.get("LD_PRELOAD", ""):
        # torch refuses the name with a C++ exception, which AddressSanitizer preloaded into
        # an uninstrumented interpreter cannot unwind (its __cxa_throw interceptor finds no
        # libstdc++): checked in the plain build only.
        with pytest.raises(RuntimeError):
            gencache.Cache(device="nonsense")
    c = gencache.Cache(device="cpu", device_bytes="1M")
    assert c.device_tier.max_bytes == 1 << 20
    assert not c.device_tier.matches("meta")
    c.close()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_promotion_on_a_side_stream_is_ready_on_the_callers_stream():
    c = gencache.Cache(mem_max_bytes=256 << 20, device="cuda", device_bytes=128 << 20)
    host = torch.randn(16, 4, 96, 128).to(torch.float16)
    c.put_tensor(K[0], host)
    other = torch.cuda.Stream()
    with torch.cuda.stream(other):  # the caller works on a stream of its own
        t = c.get_tensor(K[0], device="cuda")
        s = (t.float() * 2).sum()  # queued on `other`, after the promotion's event
    assert t.device.type == "cuda" and t.dtype == torch.float16
    torch.cuda.synchronize()
    assert torch.equal(t.cpu(), host)
    assert abs(float(s) - float(host.float().sum() * 2)) < 1e-2 * abs(float(host.float().sum()) * 2) + 1
    assert c.get_tensor(K[0], device="cuda") is t  # a device hit: no copy
    assert c.get_tensor(K[0], device="cuda:%d" % torch.cuda.current_device()) is t
    c.close()


def test_a_dropped_cache_closes_at_once():
    import gc
    import weakref
    gc.disable()  # no cycle collection: the cache must go by reference counting alone
    try:
        c = gencache.Cache(device="cpu", device_bytes=1 << 20)
        c.put_tensor(K[0], torch.ones(4))
        c.get_tensor(K[0], device="cpu")
        tier = c.device_tier
        ref = weakref.ref(c)
        del c
        assert ref() is None
        assert tier.stats()["entries"] == 0  # closing dropped the device copies
        with pytest.raises(ValueError, match="closed"):
            tier.get(K[0])
    finally:
        gc.enable()

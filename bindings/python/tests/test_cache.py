"""The in-process Cache: bytes in and out, errors, invalidation, statistics, configuration."""
import os
import threading
import time

import numpy as np
import pytest

import gencache

K1 = "result/" + "11" * 32
K2 = "text_embedding/" + "22" * 32


def test_put_get_delete_bytes_like(cache):
    cache.put(K1, bytearray(b"from a bytearray"))
    assert cache.get_bytes(K1) == b"from a bytearray"
    ro = np.frombuffer(b"read-only buffer", dtype=np.uint8)
    cache.put(K1, memoryview(ro))
    assert cache.get_bytes(K1) == b"read-only buffer"
    assert K1 in cache
    assert cache.delete(K1) and K1 not in cache
    assert cache.get(K1) is None and cache.get_bytes(K1) is None and cache.peek(K1) is None


def test_peek_counts_no_access(cache):
    cache.put(K1, b"x")
    cache.peek(K1).close()
    assert cache.stats()["layers"]["result"]["lookups"] == 0
    cache.get(K1).close()
    assert cache.stats()["layers"]["result"]["hits"] == 1


def test_malformed_keys_and_unknown_layers(cache):
    for bad in ("result/xyz", "result/" + "AB" * 32, "noslash", "", "result/" + "1" * 63):
        with pytest.raises(gencache.GencacheError) as e:
            cache.put(bad, b"x")
        assert e.value.name == "EINVAL", bad
        with pytest.raises(gencache.GencacheError):
            cache.get(bad)
    with pytest.raises(gencache.NotFound):
        cache.put("nosuchlayer/" + "00" * 32, b"x")
    assert cache.get("nosuchlayer/" + "00" * 32) is None
    with pytest.raises(ValueError):
        cache.put("result/\0" + "0" * 63, b"x")
    with pytest.raises(TypeError):
        cache.put(123, b"x")
    with pytest.raises(TypeError):
        cache.put(K1, {"not": "bytes"})
    with pytest.raises(ValueError):
        cache.put(K1, b"x", cost_s=-1)


def test_too_big_for_the_tier():
    with gencache.Cache(mem_max_bytes=1000) as c:
        with pytest.raises(gencache.GencacheError) as e:
            c.put(K1, b"x" * 5000)
        assert e.value.name == "ETOOBIG"


def test_stats_count_hits_misses_and_saved_cost(cache):
    cache.put(K2, b"emb", cost_s=0.3)
    assert cache.get(K1) is None
    for _ in range(3):
        cache.get(K2).close()
    s = cache.stats()
    te = s["layers"]["text_embedding"]
    assert (te["hits"], te["puts"], te["cost_ms_saved"]) == (3, 1, 900)
    assert s["layers"]["result"]["misses"] == 1
    assert s["tiers"]["mem"]["entries"] == 1


def test_invalidate_by_tag_layer_and_model(cache):
    cache.put(K1, b"a", tags="red,blue", model="m1")
    cache.put(K2, b"b", tags=["blue"], model="m2")
    cache.put("result/" + "33" * 32, b"c", model="m2")
    assert cache.invalidate(tag="red") == 1
    assert K1 not in cache and K2 in cache
    assert cache.invalidate(model="m2", layer="text_embedding") == 1
    assert cache.invalidate(model="m2") == 1
    assert cache.invalidate(key=K2) == 0
    with pytest.raises(gencache.GencacheError) as e:
        cache.invalidate()  # an empty filter would match everything: refused
    assert e.value.name == "EINVAL"


def test_ttl_expires_entries():
    with gencache.Cache() as c:
        c.put(K1, b"short", ttl_s=0.001)
        c.put(K2, b"long", ttl_s=3600)
        time.sleep(0.01)
        assert c.get(K1) is None
        assert c.get_bytes(K2) == b"long"


def test_config_dict_and_yaml_file(tmp_path):
    cfg = {"tiers": {"memory": {"max_bytes": "2KiB"}},
           "layers": {"thumbs": {"fields": ["model", "image"], "ttl": "10m"}},
           "models": {"sd15": {"prompt_normalization": "clip"}}}
    with gencache.Cache(config=cfg) as c:
        assert c.stats()["tiers"]["mem"]["max_bytes"] == 2048
        k = c.key({"model": "m", "image": {"digest": "sha256:" + "ab" * 32}}, "thumbs")
        assert k.startswith("thumbs/")
        c.put(k, b"t")
        assert c.get_bytes(k) == b"t"
        a = c.key({"model": "sd15", "prompt": "A Cat"}, "text_embedding")
        b = c.key({"model": "sd15", "prompt": "a cat"}, "text_embedding")
        assert a == b  # clip mode lowercases ASCII prompts of that model only
        assert (c.key({"model": "x", "prompt": "A Cat"}, "text_embedding")
                != c.key({"model": "x", "prompt": "a cat"}, "text_embedding"))
    path = tmp_path / "gencache.yaml"
    path.write_text("tiers:\n  memory:\n    max_bytes: 1MiB\n    max_entries: 7\n")
    with gencache.Cache(config=str(path), mem_max_entries=9) as c:  # keywords win
        mem = c.stats()["tiers"]["mem"]
        assert (mem["max_bytes"], mem["max_entries"]) == (1 << 20, 9)


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(TypeError):
        gencache.Cache(no_such_option=1)
    with pytest.raises(ValueError):
        gencache.Cache(config={"tiers": {"memory": {"max_bytes": "lots"}}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ValueError):
        gencache.Cache(config=str(bad))
    with pytest.raises(gencache.GencacheError):
        gencache.Cache(layers={"Bad-Name": {}})
    with pytest.raises(ValueError):
        gencache.Cache(config={"layers": {"result": {"policy": "fifo"}}})
    with pytest.raises(ValueError):
        gencache.Cache(config={"layers": {"x": {"ttl": "soon"}}})


def test_disk_tier_survives_reopen(tmp_path):
    d = str(tmp_path / "data")
    with gencache.Cache(data_dir=d) as c:
        c.put(K1, b"persisted")
    with gencache.Cache(data_dir=d) as c:
        assert c.get_bytes(K1) == b"persisted"


def test_close_is_idempotent_and_refuses_later_calls():
    c = gencache.Cache()
    c.close()
    c.close()
    assert c.closed
    for call in (lambda: c.get(K1), lambda: c.put(K1, b"x"), c.stats, lambda: c.delete(K1)):
        with pytest.raises(ValueError):
            call()


def test_close_waits_for_calls_in_other_threads():
    for _ in range(20):
        c = gencache.Cache()
        c.put(K1, b"x" * 1000)
        stop = threading.Event()
        running = threading.Barrier(5)
        errors = []

        def reader():
            first = True
            while not stop.is_set():
                try:
                    h = c.get(K1)
                    if h is not None:
                        h.close()
                    c.stats()
                except ValueError:
                    return  # closed: the only acceptable failure
                except Exception as e:  # reported below
                    errors.append(e)
                    return
                finally:
                    if first:
                        first = False
                        running.wait()

        threads = [threading.Thread(target=reader) for _ in range(4)]
        for t in threads:
            t.start()
        running.wait()  # every reader is inside its loop
        c.close()
        stop.set()
        for t in threads:
            t.join()
        assert not errors
        assert c._in_progress() == 0


def test_library_was_found_the_documented_way():
    assert os.path.exists(gencache.library_path)
    if os.environ.get("GENCACHE_LIB"):
        assert os.path.samefile(gencache.library_path, os.environ["GENCACHE_LIB"])
    assert gencache.version().count(".") == 2


def test_policy_and_miss_ratio_curve():
    # A cycle of 30 values through a tier that holds about 15: LRU misses every time, a tier
    # twice the size would hit from the second round on (every key sampled).
    c = gencache.Cache(mem_max_bytes=15 * 4600, mem_shards=1, mem_policy="lru",
                       mrc_sample_rate=1.0)
    try:
        for _ in range(3):
            for i in range(30):
                k = "image_latent/%064x" % i
                h = c.get(k)
                if h is None:
                    c.put(k, b"v" * 4000, cost_s=0.5)
                else:
                    h.close()
        mrc = c.stats()["tiers"]["mem"]["mrc"]
        assert [p["scale"] for p in mrc] == [0.5, 2.0, 4.0]
        assert mrc[1]["hit_ratio"] == pytest.approx(60 / 90)
        assert mrc[1]["gpu_seconds_saved"] == pytest.approx(60 * 0.5)
        assert mrc[0]["hit_ratio"] == 0
    finally:
        c.close()
    with gencache.Cache(mem_policy="s3fifo", mrc_sample_rate=0) as c:
        assert "mrc" not in c.stats()["tiers"]["mem"]
    with pytest.raises(ValueError):
        gencache.Cache(mem_policy="arc")

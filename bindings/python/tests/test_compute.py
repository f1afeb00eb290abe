"""get_or_compute and @stage: concurrent callers run the function once, the cost is recorded,
and failures reach only the caller that ran the function."""
import threading
import time

import numpy as np
import pytest

K = "image_latent/" + "77" * 32


def run_threads(n, target):
    barrier = threading.Barrier(n)
    results = [None] * n
    errors = [None] * n

    def worker(i):
        barrier.wait()
        try:
            results[i] = target()
        except Exception as e:
            errors[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results, errors


def test_concurrent_callers_run_the_function_once(cache):
    calls = []
    lock = threading.Lock()

    def compute():
        with lock:
            calls.append(threading.get_ident())
        time.sleep(0.2)
        return np.arange(16, dtype=np.float32)

    results, errors = run_threads(8, lambda: cache.get_or_compute(K, compute,
                                                                  with_outcome=True))
    assert errors == [None] * 8
    assert len(calls) == 1
    outcomes = sorted(o for _, o in results)
    assert outcomes.count("miss") == 1
    assert set(outcomes) <= {"miss", "coalesced", "hit"}
    for value, _ in results:
        assert np.array_equal(value, np.arange(16, dtype=np.float32))
    with cache.get(K) as h:
        assert h.meta["cost_ms"] >= 190  # the measured compute time is the entry's cost
    assert not cache._flights.in_flight(K)


def test_a_failure_reaches_only_the_caller_that_ran_it(cache):
    calls = []
    lock = threading.Lock()

    def flaky():
        with lock:
            calls.append(1)
            first = len(calls) == 1
        time.sleep(0.1)
        if first:
            raise RuntimeError("transient")
        return b"ok"

    results, errors = run_threads(6, lambda: cache.get_or_compute(K, flaky))
    failed = [e for e in errors if e is not None]
    assert len(failed) == 1 and isinstance(failed[0], RuntimeError)
    assert len(calls) == 2  # the first leader failed; one waiter became the next leader
    assert [r for r in results if r is not None] == [b"ok"] * 5
    assert cache.get_bytes(K) == b"ok"


def test_an_unstorable_result_is_an_error_and_not_cached(cache):
    with pytest.raises(TypeError):
        cache.get_or_compute(K, lambda: {"a": 1})
    assert cache.get(K) is None
    assert not cache._flights.in_flight(K)


def test_stage_decorator_keys_on_the_named_arguments(cache):
    torch = pytest.importorskip("torch")
    calls = []

    @cache.stage("text_embedding", key_fields=("model", "prompt"))
    def encode(model, prompt, encoder=None):
        calls.append(prompt)
        return torch.full((2, 3), float(len(prompt)))

    a = encode("toy", "a fox", encoder=object())
    b = encode("toy", "a  fox ", encoder=object())  # same after safe normalization
    assert calls == ["a fox"] and torch.equal(a, b)
    assert encode.with_outcome("toy", "a fox")[1] == "hit"
    encode("toy", "a cat")
    assert calls == ["a fox", "a cat"]
    assert encode.key("toy", "a fox") == cache.key({"model": "toy", "prompt": "a fox"},
                                                   "text_embedding")
    with pytest.raises(TypeError):
        cache.stage("text_embedding", key_fields=("nope",))(lambda model: b"")


def test_stage_records_the_model_so_an_upgrade_invalidates_it(cache):
    calls = []

    @cache.stage("text_embedding", key_fields=("model", "prompt"))
    def encode(model, prompt):
        calls.append((model, prompt))
        return prompt.encode()

    encode("enc-v1", "a fox")
    encode("enc-v2", "a fox")
    assert cache.get(encode.key("enc-v1", "a fox")).meta["model"] == "enc-v1"
    assert cache.invalidate(model="enc-v1") == 1
    assert encode.with_outcome("enc-v1", "a fox")[1] == "miss"
    assert encode.with_outcome("enc-v2", "a fox")[1] == "hit"
    assert calls == [("enc-v1", "a fox"), ("enc-v2", "a fox"), ("enc-v1", "a fox")]


def test_stage_defines_an_unknown_layer(cache):
    @cache.stage("thumbnail")
    def thumb(name, size=64):
        return ("%s@%d" % (name, size)).encode()

    assert thumb("x") == b"x@64"
    assert thumb.with_outcome("x") == (b"x@64", "hit")
    assert thumb.with_outcome("x", size=32) == (b"x@32", "miss")
    assert cache.has_layer("thumbnail")
    assert thumb.key("x").startswith("thumbnail/")


def test_recursion_on_the_same_key_is_an_error_not_a_deadlock(cache):
    def inner():
        return cache.get_or_compute(K, lambda: b"never")

    with pytest.raises(RuntimeError):
        cache.get_or_compute(K, inner)
    assert cache.get(K) is None and not cache._flights.in_flight(K)


def test_hundred_threads_one_computation(cache):
    # The library's single flight: 99 callers block in gencache_claim (GIL released) while one
    # computes; every caller gets the value.
    calls = []
    lock = threading.Lock()

    def compute():
        with lock:
            calls.append(1)
        time.sleep(0.3)
        return b"v" * 1000

    results, errors = run_threads(100, lambda: cache.get_or_compute(K, compute,
                                                                    with_outcome=True))
    assert errors == [None] * 100
    assert len(calls) == 1
    outcomes = [o for _, o in results]
    assert outcomes.count("miss") == 1 and set(outcomes) <= {"miss", "coalesced", "hit"}
    assert outcomes.count("coalesced") >= 50  # the rest may start after the value is stored
    assert all(v == b"v" * 1000 for v, _ in results)


def test_c_callers_and_python_share_flights(cache):
    # A lease taken through the C API makes get_or_compute wait for it, then read its value.
    import ctypes
    from gencache import _lib
    res = _lib.ClaimResult()
    assert _lib.lib.gencache_claim(cache._ptr, K.encode(), None, ctypes.byref(res)) == 0
    assert res.kind == _lib.CLAIM_LEASE
    out = []
    t = threading.Thread(target=lambda: out.append(
        cache.get_or_compute(K, lambda: b"python", with_outcome=True)))
    t.start()
    time.sleep(0.2)
    assert cache._flights.in_flight(K) and not out
    assert _lib.lib.gencache_lease_fulfil(res.lease, b"from C", 6, None) == 0
    t.join(10)
    assert out == [(b"from C", "coalesced")]


def test_a_hit_credits_the_requesters_cost(cache):
    key = "result/" + "5a" * 32
    cache.put(key, b"video", cost_s=2.0)
    cache.get(key, cost_s=9.5).close()
    cache.get(key).close()
    assert cache.stats()["layers"]["result"]["cost_ms_saved"] == 11500

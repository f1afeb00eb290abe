"""Tensors in and out: exact dtype and shape round trips for numpy and torch, zero-copy reads,
and the codecs (f16/bf16 narrowing, int8 quantization)."""
import warnings

import numpy as np
import pytest

import gencache

torch = pytest.importorskip("torch")
K = "image_latent/" + "ab" * 32


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int8, np.uint8, np.int32,
                                   np.int64])
def test_numpy_round_trip_is_exact(cache, dtype):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((2, 3, 5)) * 50).astype(dtype)
    cache.put_tensor(K, x, cost_s=0.01)
    y = cache.get_tensor(K)
    assert isinstance(y, np.ndarray)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert y.tobytes() == x.tobytes()
    assert not y.flags.writeable
    with cache.get(K) as h:
        assert h.dtype == {np.float32: "f32", np.float16: "f16", np.int8: "i8", np.uint8: "u8",
                           np.int32: "i32", np.int64: "i64"}[dtype]
        assert h.shape == (2, 3, 5)
        assert y.ctypes.data == h.data_ptr  # the array reads the cache's memory


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int8])
def test_torch_round_trip_is_exact(cache, dtype):
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(4, 1, 6, generator=g) * 20).to(dtype)
    cache.put_tensor(K, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the non-writable-array warning is handled, not shown
        y = cache.get_tensor(K)
    assert isinstance(y, torch.Tensor)
    assert y.dtype == dtype and tuple(y.shape) == (4, 1, 6)
    assert torch.equal(y, x)
    with cache.get(K) as h:
        assert y.data_ptr() == h.data_ptr
    if dtype == torch.bfloat16:
        with pytest.raises(TypeError):
            cache.get_tensor(K, kind="numpy")  # numpy has no bf16
        assert cache.get(K).dtype == "bf16"


def test_kind_device_and_copy(cache):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    cache.put_tensor(K, x)
    t = cache.get_tensor(K, kind="torch")
    assert isinstance(t, torch.Tensor) and torch.equal(t, torch.from_numpy(x))
    t2 = cache.get_tensor(K, device="cpu", kind="torch", copy=True)
    t2 += 1  # a copy is writable and leaves the cache alone
    assert np.array_equal(cache.get_tensor(K), x)
    c = cache.get_tensor(K, copy=True)
    assert c.flags.writeable and c.ctypes.data != cache.get(K).data_ptr
    with pytest.raises(ValueError):
        cache.get_tensor(K, kind="jax")


def test_non_contiguous_and_big_endian_inputs(cache):
    x = np.arange(12, dtype=np.float32).reshape(3, 4).T  # a transposed view
    cache.put_tensor(K, x)
    assert np.array_equal(cache.get_tensor(K), x)
    be = np.arange(5, dtype=">i4")
    cache.put_tensor(K, be)
    y = cache.get_tensor(K)
    assert y.dtype == np.dtype("<i4") and list(y) == [0, 1, 2, 3, 4]
    t = torch.arange(12, dtype=torch.float16).reshape(3, 4)[:, ::2]
    cache.put_tensor(K, t)
    assert torch.equal(cache.get_tensor(K), t)


def test_scalars_and_empty_tensors(cache):
    for scalar in (np.array(2.5, np.float32), np.float32(2.5)):
        cache.put_tensor(K, scalar)
        y = cache.get_tensor(K)
        assert y.shape == () and y.dtype == np.float32 and y == 2.5
    cache.put_tensor(K, torch.zeros(0, 3, dtype=torch.bfloat16))
    e = cache.get_tensor(K)
    assert e.shape == (0, 3) and e.dtype == torch.bfloat16


def test_unsupported_dtypes_and_misses(cache):
    for bad in (np.zeros(3, np.float64), np.zeros(3, bool), torch.zeros(2, dtype=torch.float64),
                np.zeros((1,) * 9, np.float32), [1, 2, 3]):
        with pytest.raises((TypeError, ValueError)):
            cache.put_tensor(K, bad)
    assert cache.get_tensor(K) is None
    cache.put(K, b"plain bytes")
    with pytest.raises(TypeError):
        cache.get_tensor(K)
    with pytest.raises(gencache.GencacheError):  # shape says 8 bytes, the value has 4
        cache.put(K, b"abcd", dtype="f32", shape=(2,))


def test_raw_bytes_with_dtype_and_shape(cache):
    x = np.arange(6, dtype=np.float16)
    cache.put(K, x.tobytes(), dtype="f16", shape=(2, 3))
    assert np.array_equal(cache.get_tensor(K), x.reshape(2, 3))


@pytest.mark.skipif(not gencache.available("codecs"), reason="no tensor codecs in the library")
def test_f16_and_bf16_codecs(cache):
    x = np.linspace(-3, 3, 24, dtype=np.float32).reshape(2, 12)
    cache.put_tensor(K, x, codec="f16")
    y = cache.get_tensor(K)
    assert y.dtype == np.float16 and np.array_equal(y, x.astype(np.float16))
    z = cache.get_tensor(K, dtype="f32")
    assert z.dtype == np.float32 and np.array_equal(z, x.astype(np.float16).astype(np.float32))
    t = torch.from_numpy(x)
    cache.put_tensor(K, t, codec="bf16")
    b = cache.get_tensor(K)
    assert b.dtype == torch.bfloat16 and torch.equal(b, t.to(torch.bfloat16))
    with pytest.raises(gencache.GencacheError) as e:
        cache.put_tensor(K, np.array([1.0, np.nan], np.float32), codec="f16")
    assert e.value.name == "EINVAL"
    with pytest.raises(TypeError):
        cache.put_tensor(K, np.zeros(4, np.int8), codec="f16")


@pytest.mark.skipif(not gencache.available("int8"), reason="no int8 codec in the library")
@pytest.mark.parametrize("codec", ["int8", "int8-channel", "int8-group"])
def test_int8_codecs_stay_within_half_a_step(cache, codec):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((4, 64)).astype(np.float32) * np.array([[1], [10], [0.1], [5]],
                                                                   np.float32)
    cache.put_tensor(K, x, codec=codec, axis=0, group_size=32)
    with cache.get(K) as h:
        assert h.dtype is None and h.size < x.nbytes / 2  # stored as the int8 payload
    y = cache.get_tensor(K)
    assert y.dtype == np.float32 and y.shape == x.shape
    if codec == "int8":
        step = np.abs(x).max() / 127
    elif codec == "int8-channel":
        step = np.abs(x).max(axis=1, keepdims=True) / 127
    else:
        step = np.abs(x.reshape(-1, 32)).max(axis=1, keepdims=True).reshape(4, 2, 1) / 127
        step = np.broadcast_to(step, (4, 2, 32)).reshape(4, 64)
    assert np.all(np.abs(y - x) <= step / 2 + 1e-6)
    t = torch.from_numpy(x).to(torch.bfloat16)
    cache.put_tensor(K, t, codec=codec, group_size=32)
    u = cache.get_tensor(K)
    assert isinstance(u, torch.Tensor) and u.dtype == torch.bfloat16 and u.shape == t.shape
    with pytest.raises(ValueError):
        cache.put_tensor(K, x, codec="int4")
    with pytest.raises(gencache.GencacheError):
        cache.put_tensor(K, np.array([np.inf], np.float32), codec="int8")

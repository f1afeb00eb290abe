"""The hot calls (Cache.get_bytes, Cache.get_tensor) on both of their paths: the C extension
gencache._fast and the ctypes fallback the package uses when the extension is absent. Each test
runs once per path; the "ctypes" cache is an ordinary Cache whose extension core is switched
off, and a subprocess checks that $GENCACHE_NO_EXTENSION=1 really runs without the module."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import gencache
from gencache import _lib
from conftest import PKG_ROOT

KEY = "result/" + "ab" * 32
TKEY = "image_latent/" + "5a" * 32

PATHS = ["extension", "ctypes"]


def test_the_extension_is_built_and_bound():
    # A build with python3-dev, numpy and libdlpack-dev always has it: a silent fallback to
    # ctypes would lose the per-call speed without any test noticing.
    assert _lib.fast is not None, "gencache._fast was not found beside %s" % _lib.library_path
    c = gencache.Cache(mem_max_bytes=1 << 20)
    try:
        assert c._core is not None
    finally:
        c.close()


@pytest.fixture(params=PATHS)
def pcache(request):
    c = gencache.Cache(mem_max_bytes=64 << 20)
    if request.param == "ctypes":
        c._core = None
    elif _lib.fast is None:
        pytest.fail("the extension is not built")
    yield c
    c.close()


def test_get_bytes_hit_miss_and_copy(pcache):
    assert pcache.get_bytes(KEY) is None
    pcache.put(KEY, b"x" * 100)
    got = pcache.get_bytes(KEY)
    assert type(got) is bytes and got == b"x" * 100
    assert pcache.get_bytes(KEY.encode()) == b"x" * 100
    pcache.put(KEY, b"")
    assert pcache.get_bytes(KEY) == b""


def test_get_bytes_counts_a_hit(pcache):
    pcache.put(KEY, b"v")
    before = pcache.stats()["layers"]["result"]["hits"]
    pcache.get_bytes(KEY)
    assert pcache.stats()["layers"]["result"]["hits"] == before + 1


def test_get_bytes_refuses_bad_keys(pcache):
    with pytest.raises(TypeError):
        pcache.get_bytes(42)
    with pytest.raises(ValueError, match="NUL"):
        pcache.get_bytes("result/ab\0cd")
    with pytest.raises(gencache.GencacheError) as e:
        pcache.get_bytes("result/not-hex")
    assert e.value.name == "EINVAL" and "get result/not-hex" in str(e.value)


def test_calls_on_a_closed_cache_raise(pcache):
    pcache.put(KEY, b"v")
    pcache.close()
    with pytest.raises(ValueError, match="closed"):
        pcache.get_bytes(KEY)
    with pytest.raises(ValueError, match="closed"):
        pcache.get_tensor(TKEY)


def test_get_tensor_is_a_read_only_view(pcache):
    a = np.arange(16 * 4 * 8, dtype=np.float16).reshape(16, 4, 8)
    assert pcache.get_tensor(TKEY) is None
    pcache.put_tensor(TKEY, a)
    v = pcache.get_tensor(TKEY)
    assert isinstance(v, np.ndarray) and v.dtype == np.float16 and v.shape == (16, 4, 8)
    assert np.array_equal(v, a)
    assert not v.flags.writeable
    with pytest.raises(ValueError):
        v.setflags(write=True)
    with pytest.raises(ValueError):
        v[0, 0, 0] = 1
    with pcache.get(TKEY) as h:  # the same stored bytes, not a copy
        assert v.ctypes.data == h.data_ptr


def test_get_tensor_view_outlives_delete_and_close(pcache):
    a = np.full((64, 64), 7, dtype=np.int32)
    pcache.put_tensor(TKEY, a)
    v = pcache.get_tensor(TKEY)
    pcache.delete(TKEY)
    pcache.close()
    assert np.array_equal(v, a)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int8, np.uint8, np.int32,
                                   np.int64])
def test_get_tensor_dtypes_and_shapes(pcache, dtype):
    for shape in [(), (0,), (3,), (2, 3, 4, 1, 1, 1, 1, 2)]:
        a = (np.arange(int(np.prod(shape)), dtype=np.int64) % 100).astype(dtype).reshape(shape)
        pcache.put_tensor(TKEY, a)
        v = pcache.get_tensor(TKEY)
        assert v.dtype == a.dtype and v.shape == a.shape and np.array_equal(v, a)
        assert not v.flags.writeable


def test_get_tensor_kinds(pcache):
    torch = pytest.importorskip("torch")
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    pcache.put_tensor(TKEY, t)
    got = pcache.get_tensor(TKEY)  # stored as torch: comes back as torch
    assert isinstance(got, torch.Tensor) and torch.equal(got, t)
    n = pcache.get_tensor(TKEY, kind="numpy")
    assert isinstance(n, np.ndarray) and np.array_equal(n, t.numpy())
    pcache.put_tensor(TKEY, t.numpy())
    assert isinstance(pcache.get_tensor(TKEY), np.ndarray)
    assert isinstance(pcache.get_tensor(TKEY, kind="torch"), torch.Tensor)
    with pytest.raises(ValueError):
        pcache.get_tensor(TKEY, kind="jax")
    b = torch.randn(5, 7).to(torch.bfloat16)
    pcache.put_tensor(TKEY, b)
    got = pcache.get_tensor(TKEY)
    assert got.dtype == torch.bfloat16 and torch.equal(got, b)
    with pytest.raises(TypeError, match="bfloat16"):
        pcache.get_tensor(TKEY, kind="numpy")


def test_get_tensor_general_path_entries(pcache):
    # Entries the fast path hands on: plain bytes (not a tensor), an int8 payload to decode.
    pcache.put(TKEY, b"plain bytes")
    with pytest.raises(TypeError, match="not a tensor"):
        pcache.get_tensor(TKEY)
    a = np.linspace(-1, 1, 256, dtype=np.float32).reshape(16, 16)
    pcache.put_tensor(TKEY, a, codec="int8")
    got = pcache.get_tensor(TKEY)
    assert got.dtype == np.float32 and got.shape == a.shape
    assert np.abs(got - a).max() < 0.01
    pcache.put_tensor(TKEY, a)
    assert pcache.get_tensor(TKEY, dtype="f16").dtype == np.float16
    w = pcache.get_tensor(TKEY, copy=True)
    assert w.flags.writeable and np.array_equal(w, a)


def test_close_waits_for_lookups_in_other_threads(pcache):
    pcache.put(KEY, b"v" * 100)
    errors = []
    started = threading.Event()

    def reader():
        started.set()
        try:
            while True:
                assert pcache.get_bytes(KEY) == b"v" * 100
        except ValueError as e:  # the cache closed under the loop: the one allowed outcome
            if "closed" not in str(e):
                errors.append(e)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    started.wait(5)
    pcache.close()
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    assert errors == []


def test_without_the_extension_the_package_runs_on_ctypes():
    code = ("import gencache, numpy as np; from gencache import _lib; assert _lib.fast is None; "
            "c = gencache.Cache(); assert c._core is None; k = 'result/' + '0' * 64; "
            "c.put(k, b'ok'); t = 'image_latent/' + '1' * 64; c.put_tensor(t, np.ones(3, np.float32)); "
            "print(c.get_bytes(k).decode(), c.get_tensor(t).sum()); c.close()")
    env = dict(os.environ, GENCACHE_NO_EXTENSION="1",
               PYTHONPATH=PKG_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok", "3.0"]


def test_extension_refuses_bad_bindings_and_keeps_working():
    fast = _lib.fast
    if fast is None:
        pytest.fail("the extension is not built")
    with pytest.raises(KeyError, match="gencache_get"):
        fast.bind({}, _lib.error, None)
    with pytest.raises(TypeError):
        fast.bind([], _lib.error, None)
    with pytest.raises(ValueError):
        fast.Core(0)
    with pytest.raises(ValueError, match="closed"):
        fast.dlpack(0)
    c = gencache.Cache()  # the earlier binding is intact
    try:
        c.put(KEY, b"still bound")
        assert c.get_bytes(KEY) == b"still bound"
    finally:
        c.close()


def test_extension_refs_expose_read_only_bytes_and_the_stamp():
    if _lib.fast is None:
        pytest.fail("the extension is not built")
    c = gencache.Cache()
    try:
        c.put(KEY, b"abc")
        ref = c._core.get(KEY)
        mv = memoryview(ref)
        assert mv.readonly and bytes(mv) == b"abc"
        with c.get(KEY) as h:
            m = h.meta
        assert ref.stamp == (m["checksum"], m["created_ms"], 3)
        assert c._core.peek("result/" + "cd" * 32) is None
        with pytest.raises(TypeError):
            c._core.get(None)
    finally:
        c.close()


def test_extension_view_of_a_ref():
    torch = pytest.importorskip("torch")
    if _lib.fast is None:
        pytest.fail("the extension is not built")
    c = gencache.Cache()
    try:
        c.put_tensor(TKEY, np.arange(6, dtype=np.int32))
        ref = c._core.get(TKEY)
        t = _lib.fast.view(ref, 2)
        assert isinstance(t, torch.Tensor) and t.tolist() == list(range(6))
        a = _lib.fast.view(ref, 1)
        assert isinstance(a, np.ndarray) and not a.flags.writeable
        c.put(KEY, b"bytes")
        r2 = c._core.get(KEY)
        assert _lib.fast.view(r2, 2) is r2  # not a tensor: handed back for the general path
        with pytest.raises(TypeError):
            _lib.fast.view(object(), 2)
    finally:
        c.close()

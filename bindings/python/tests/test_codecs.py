"""One rule for tensors stored with a codec: Cache.put_tensor and gencached both encode and mark
the entry through the library (include/gencache/codec.h), and both decode through it, so an
entry stored by one surface is the same bytes and metadata, and reads back identically, through
the other. The daemon and the in-process cache meet on one disk-tier directory."""
import os
import shutil
import tempfile

import numpy as np
import pytest

import gencache
from conftest import GENCACHED, Daemon

torch = pytest.importorskip("torch")
K1 = "image_latent/" + "ab" * 32
K2 = "image_latent/" + "cd" * 32
CT_NUMPY = "application/vnd.gencache.numpy"
CT_TORCH = "application/vnd.gencache.torch"

pytestmark = pytest.mark.skipif(not gencache.available("int8"), reason="no int8 codec")


def bits(a):
    """The array's bytes, so that comparisons are bit for bit (NaN-proof, -0 distinct)."""
    a = a.numpy() if isinstance(a, torch.Tensor) and a.dtype != torch.bfloat16 else a
    if isinstance(a, torch.Tensor):
        return a.contiguous().view(torch.int16).numpy().tobytes()
    return np.ascontiguousarray(a).tobytes()


def start_daemon(*flags):
    if not os.path.exists(GENCACHED):
        pytest.fail("gencached not built at %s (set GENCACHE_BIN_DIR)" % GENCACHED)
    return Daemon(*flags)


def test_daemon_entry_is_what_put_tensor_stores_and_reads_back_alike():
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((3, 5, 7)) * np.arange(1, 6).reshape(1, 5, 1)).astype(np.float32)
    d = start_daemon()
    try:
        client = gencache.Client(d.url)
        st, _, body = client.request("PUT", "/v1/entries/" + K1, x.tobytes(), {
            "Content-Type": CT_NUMPY, "X-Gencache-Dtype": "f32", "X-Gencache-Shape": "3,5,7",
            "X-Gencache-Codec": "int8-channel", "X-Gencache-Codec-Axis": "1"})
        assert st == 201, bytes(body)
        over_http = client.get_tensor(K1)
        over_http_f16 = client.get_tensor(K1, dtype="f16")
        assert over_http.dtype == np.float32 and over_http.shape == x.shape
        d.stop(cleanup=False)
        with gencache.Cache(data_dir=os.path.join(d.dir, "data")) as c:
            # The daemon's entry, read in process: the same tensor the daemon served.
            assert bits(c.get_tensor(K1)) == bits(over_http)
            assert bits(c.get_tensor(K1, dtype="f16")) == bits(over_http_f16)
            # The same input stored in process: the same bytes and metadata.
            c.put_tensor(K2, x, codec="int8-channel", axis=1)
            with c.get(K1) as h1, c.get(K2) as h2:
                assert h1.content_type == h2.content_type == CT_NUMPY + "; codec=int8-channel"
                assert h1.dtype is None and h2.dtype is None
                assert h1.bytes() == h2.bytes()
    finally:
        d.stop()


def test_put_tensor_entry_reads_back_alike_through_the_daemon():
    rng = np.random.default_rng(6)
    t = torch.from_numpy(rng.standard_normal((4, 33)).astype(np.float32)).to(torch.bfloat16)
    data = tempfile.mkdtemp(prefix="gencache-codec-")
    try:
        with gencache.Cache(data_dir=data) as c:
            c.put_tensor(K1, t, codec="int8-group", group_size=16)
            c.put_tensor(K2, t.float(), codec="bf16")
            in_process = c.get_tensor(K1)
            in_process_f32 = c.get_tensor(K1, dtype="f32")
            narrowed = c.get_tensor(K2)
        assert isinstance(in_process, torch.Tensor) and in_process.dtype == torch.bfloat16
        d = start_daemon("--data-dir", data)  # the later --data-dir wins
        try:
            client = gencache.Client(d.url)
            st, h, _ = client.request("GET", "/v1/entries/" + K1)
            assert st == 200
            assert (h.get("x-gencache-codec"), h.get("x-gencache-dtype"),
                    h.get("x-gencache-shape"), h.get("content-type")) == \
                ("int8-group", "bf16", "4,33", CT_TORCH)
            over_http = client.get_tensor(K1)
            assert isinstance(over_http, torch.Tensor) and bits(over_http) == bits(in_process)
            assert bits(client.get_tensor(K1, dtype="f32")) == bits(in_process_f32)
            # bf16 is a plain tensor: the daemon serves its bytes as stored.
            assert bits(client.get_tensor(K2)) == bits(narrowed) == bits(t)
        finally:
            d.stop()
    finally:
        shutil.rmtree(data, ignore_errors=True)


def test_decoding_in_process(cache):
    x = np.linspace(-8, 8, 35, dtype=np.float32).reshape(5, 7)
    cache.put_tensor(K1, x, codec="int8")
    with cache.get(K1) as h:
        assert h.content_type == CT_NUMPY + "; codec=int8" and h.shape is None
        payload = h.bytes()
    y = cache.get_tensor(K1)
    assert y.dtype == np.float32 and y.shape == (5, 7)
    assert np.all(np.abs(y - x) <= 8 / 127 / 2 + 1e-6)
    assert cache.get_tensor(K1, dtype="bf16").dtype == torch.bfloat16
    assert cache.get_or_compute(K1, lambda: pytest.fail("a hit computes nothing")).shape == (5, 7)
    # An int8 entry written by an older package version (its own content type) still reads.
    cache.put(K2, payload, content_type="application/vnd.gencache.quant;origin=numpy")
    assert bits(cache.get_tensor(K2)) == bits(y)
    # Conversions go through the library too: integers convert to nothing, bytes are no tensor.
    cache.put_tensor(K2, np.arange(4, dtype=np.int32))
    with pytest.raises(TypeError):
        cache.get_tensor(K2, dtype="f32")
    cache.put(K2, b"abc")
    with pytest.raises(TypeError):
        cache.get_tensor(K2, dtype="f32")
    # Codec options the library refuses.
    with pytest.raises(gencache.GencacheError) as e:
        cache.put_tensor(K2, x, codec="int8-channel", axis=2)
    assert e.value.name == "EINVAL"
    with pytest.raises(gencache.GencacheError) as e:
        cache.put_tensor(K2, x, codec="int8-group", group_size=0)
    assert e.value.name == "EINVAL"

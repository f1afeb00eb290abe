"""Sessions and KV windows as Python objects."""
import numpy as np
import pytest

import gencache

pytestmark = pytest.mark.skipif(not (gencache.available("sessions") and
                                     gencache.available("kv")),
                                reason="the loaded library has no sessions or KV windows")


def test_session_values_live_for_their_steps(cache):
    with cache.session("gen-1") as s:
        emb = np.arange(6, dtype=np.float32).reshape(2, 3)
        s.put("text", emb, persistent=True)
        s.put("feat", b"step feature", steps=2)
        got = s.get("text")
        assert np.array_equal(got, emb) and got.flags.writeable  # a copy, safe to keep
        assert s.get("feat") == b"step feature"
        assert s.stats()["entries"] == 2
        s.step()
        assert s.get("feat") == b"step feature"
        assert s.step() > 0
        assert s.get("feat") is None
        assert np.array_equal(s.get("text"), emb)
        assert s.stats()["step"] == 2
        with pytest.raises(gencache.GencacheError) as e:
            s.put("bad", b"x", steps=0)
        assert e.value.name == "EINVAL"
        with pytest.raises(gencache.GencacheError) as e:
            cache.session("gen-1")
        assert e.value.name == "EEXIST"
    with pytest.raises(ValueError):
        s.get("text")


def test_session_bf16_and_close_with_the_cache():
    torch = pytest.importorskip("torch")
    c = gencache.Cache()
    s = c.session("gen-2")
    t = torch.randn(3, 4).to(torch.bfloat16)
    s.put("latent", t)
    assert torch.equal(s.get("latent"), t)
    c.close()  # closes the session first
    with pytest.raises(ValueError):
        s.step()


def test_kv_window_append_retrieve_prune_offload(cache):
    blocks = []
    with cache.kv_window(2, 4, 3, dtype="f32", offload=blocks.append) as kv:
        for p in range(6):
            kv.append(0, p, np.full(4, p, np.float32), np.full(3, -p, np.float32))
        k, v, first = kv.retrieve(0)
        assert first == 0 and k.shape == (6, 4) and v.shape == (6, 3)
        assert np.array_equal(k[:, 0], np.arange(6)) and np.array_equal(v[:, 0], -np.arange(6))
        k, v, first = kv.retrieve(0, end_pos=3)
        assert k.shape == (3, 4)
        assert kv.retrieve(1) is None
        assert kv.prune(2) > 0
        assert len(blocks) == 1 and blocks[0]["n_positions"] == 4
        k, _, first = kv.retrieve(0)
        assert first == 4 and list(k[:, 0]) == [4, 5]
        assert kv.stats()["positions"] == 2
        with pytest.raises(gencache.GencacheError):
            kv.append(0, 9, np.zeros(4, np.float32), np.zeros(3, np.float32))  # out of order
        with pytest.raises(TypeError):
            kv.append(0, 6, np.zeros(4, np.float16), np.zeros(3, np.float16))
        with pytest.raises(ValueError):
            kv.append(0, 6, np.zeros(5, np.float32), np.zeros(3, np.float32))


def test_int8_kv_window_dequantizes(cache):
    torch = pytest.importorskip("torch")
    kv = cache.kv_window(1, 8, 8, dtype="bf16", int8=True)
    rows = torch.randn(5, 8).to(torch.bfloat16)
    for p in range(5):
        kv.append(0, p, rows[p], rows[p])
    k, v, _ = kv.retrieve(0)
    assert k.dtype == torch.bfloat16 and k.shape == (5, 8)
    step = rows.float().abs().amax(dim=1, keepdim=True) / 127
    assert torch.all((k.float() - rows.float()).abs() <= step / 2 + 0.02 * rows.float().abs()
                     + 1e-3)
    kv.close()

"""gencache.chunk_plan over the C planner, safetensors files through the C reader and writer,
and DLPack export of a handle (torch.from_dlpack(handle), no numpy in between)."""
import json
import struct

import numpy as np
import pytest

import gencache
from gencache import _lib

TKEY = "image_latent/" + "7c" * 32


# ---- chunk_plan -------------------------------------------------------------------------------

def test_chunk_plan_covers_every_frame_within_the_budget():
    shape = [1, 16, 21, 60, 104]
    frame = 16 * 60 * 104 * 2  # f16 latent bytes per frame
    budget, per_frame = 64 << 20, 8 << 20
    plan = gencache.chunk_plan(shape, budget_bytes=budget, bytes_per_frame=per_frame, overlap=1)
    fits = budget // (frame + per_frame)
    assert plan[0].start == 0 and plan[0].overlap == 0 and plan[-1].stop == 21
    for prev, cur in zip(plan, plan[1:]):
        assert cur.start == prev.stop - 1 and cur.overlap == 1
    assert all(c.frames <= fits for c in plan)
    assert plan[0].frames == fits  # as long as fits
    one = gencache.chunk_plan(shape, budget_bytes=1 << 40)
    assert one == [gencache.Chunk(0, 21, 0)]
    f32 = gencache.chunk_plan(shape, budget_bytes=budget, bytes_per_frame=per_frame, dtype="f32")
    assert f32[0].frames == budget // (2 * frame + per_frame)


def test_chunk_plan_errors():
    with pytest.raises(gencache.GencacheError) as e:
        gencache.chunk_plan([1, 16, 21, 60, 104], budget_bytes=1000)
    assert e.value.name == "ELIMIT"
    with pytest.raises(gencache.GencacheError) as e:
        gencache.chunk_plan([1, 16, 21, 60, 104], budget_bytes=1 << 20, overlap=5)
    assert e.value.name == "EINVAL"
    with pytest.raises(gencache.GencacheError) as e:
        gencache.chunk_plan([1, 0, 21, 60, 104], budget_bytes=1 << 30)
    assert e.value.name == "EINVAL"
    with pytest.raises(ValueError):
        gencache.chunk_plan([16, 21, 60, 104], budget_bytes=1 << 30)
    with pytest.raises(ValueError):
        gencache.chunk_plan([1, 16, 21, 60, 104], budget_bytes=-1)
    with pytest.raises(ValueError):
        gencache.chunk_plan([1, 16, 21, 60, 104], budget_bytes=1 << 30, dtype="f64")


# ---- safetensors ------------------------------------------------------------------------------

def test_safetensors_round_trip_is_zero_copy(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "t.safetensors"
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    b = torch.randn(3, 5).to(torch.bfloat16)
    c = np.array(7, dtype=np.int64)
    e = np.zeros((0, 4), dtype=np.uint8)
    gencache.save_safetensors(path, {"a": a, "b": b, "c": c, "empty": e},
                              metadata={"format": "pt", "note": "ünïcode"})
    got = gencache.load_safetensors(path)
    assert set(got) == {"a", "b", "c", "empty"}
    assert got["a"].dtype == np.float32 and np.array_equal(got["a"], a)
    assert isinstance(got["b"], torch.Tensor) and torch.equal(got["b"], b)
    assert got["c"].shape == () and got["c"] == 7
    assert got["empty"].shape == (0, 4)
    assert not got["a"].flags.writeable
    with pytest.raises(ValueError):
        got["a"].setflags(write=True)
    with gencache.SafetensorsFile(path) as f:
        assert f.metadata("note") == "ünïcode" and f.metadata("absent") is None
        assert f.names() == ["a", "b", "c", "empty"] and len(f) == 4 and "a" in f
        view = f["a"]
        assert torch.equal(f.get("a", kind="torch"), torch.from_numpy(a))
        with pytest.raises(TypeError):
            f.get("b", kind="numpy")
        with pytest.raises(gencache.NotFound):
            f["nope"]
    # The view holds the mapping: still readable after the file object closed.
    assert np.array_equal(view, a)
    with pytest.raises(ValueError):
        f.names()
    # The header is the format's: the length, then JSON with dtypes and offsets.
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    assert header["a"]["dtype"] == "F32" and header["a"]["shape"] == [2, 3, 4]
    assert header["b"]["dtype"] == "BF16" and header["__metadata__"]["format"] == "pt"


def test_safetensors_from_bytes_and_torch_kind(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "t.safetensors"
    gencache.save_safetensors(str(path), {"x": torch.arange(10, dtype=torch.int32)})
    data = path.read_bytes()
    got = gencache.load_safetensors(data, kind="torch")
    assert torch.equal(got["x"], torch.arange(10, dtype=torch.int32))
    assert gencache.load_safetensors(bytearray(data))["x"].tolist() == list(range(10))


def test_safetensors_refuses_malformed_files(tmp_path):
    bad = tmp_path / "bad.safetensors"
    header = json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    bad.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    with pytest.raises(gencache.GencacheError) as e:
        gencache.load_safetensors(bad)
    assert e.value.name == "EPARSE"
    f64 = json.dumps({"x": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}}).encode()
    with pytest.raises(gencache.GencacheError) as e:
        gencache.load_safetensors(struct.pack("<Q", len(f64)) + f64 + b"\0" * 8)
    assert e.value.name == "EUNSUPPORTED"
    with pytest.raises(gencache.NotFound):
        gencache.load_safetensors(tmp_path / "missing.safetensors")
    with pytest.raises(gencache.GencacheError):
        gencache.load_safetensors(b"\x01\x02")


def test_save_safetensors_errors(tmp_path):
    with pytest.raises(gencache.GencacheError) as e:
        gencache.save_safetensors(tmp_path / "x.st", {"": np.zeros(2, np.float32)})
    assert e.value.name == "EINVAL"
    with pytest.raises(TypeError):
        gencache.save_safetensors(tmp_path / "x.st", {"a": np.zeros(2, np.float64)})
    with pytest.raises(gencache.GencacheError):
        gencache.save_safetensors(tmp_path / "no" / "dir" / "x.st", {"a": np.zeros(2, np.int8)})
    assert not (tmp_path / "x.st").exists()


# ---- DLPack -----------------------------------------------------------------------------------

@pytest.fixture
def tcache():
    c = gencache.Cache(mem_max_bytes=16 << 20)
    yield c
    c.close()


def test_torch_from_dlpack_of_a_handle_shares_the_bytes(tcache):
    torch = pytest.importorskip("torch")
    if _lib.fast is None:
        pytest.fail("the extension is not built")
    for t in (torch.randn(4, 8), torch.randn(3, 3).to(torch.bfloat16),
              torch.arange(5, dtype=torch.int8), torch.tensor(3, dtype=torch.int64)):
        tcache.put_tensor(TKEY, t)
        h = tcache.get(TKEY)
        assert h.__dlpack_device__() == (1, 0)
        got = torch.from_dlpack(h)
        assert got.dtype == t.dtype and got.shape == t.shape and torch.equal(got, t)
        assert got.data_ptr() == h.data_ptr  # no copy, and no numpy in between
        h.close()
        tcache.delete(TKEY)
        assert torch.equal(got, t)  # the capsule's own reference keeps the bytes


def test_dlpack_outlives_the_cache_and_unconsumed_capsules_free(tcache):
    torch = pytest.importorskip("torch")
    tcache.put_tensor(TKEY, torch.ones(1000))
    h = tcache.get(TKEY)
    for _ in range(1000):  # capsules nobody consumes release their reference when collected
        h.__dlpack__()
    got = torch.from_dlpack(h)
    tcache.close()
    h.close()
    assert float(got.sum()) == 1000.0


def test_dlpack_refusals(tcache):
    tcache.put(TKEY, b"not a tensor")
    h = tcache.get(TKEY)
    with pytest.raises(TypeError, match="not a tensor"):
        h.__dlpack__()
    with pytest.raises(BufferError):
        h.__dlpack__(stream=1)
    h.close()
    with pytest.raises(ValueError, match="closed"):
        h.__dlpack__()


def test_dlpack_without_the_extension_is_unsupported(tcache, monkeypatch):
    tcache.put_tensor(TKEY, np.ones(3, np.float32))
    monkeypatch.setattr(_lib, "fast", None)
    with tcache.get(TKEY) as h:
        with pytest.raises(gencache.GencacheError) as e:
            h.__dlpack__()
    assert e.value.name == "EUNSUPPORTED"

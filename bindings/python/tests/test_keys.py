"""Keys, prompt normalization and image identity: Python must derive exactly what the C CLI
derives, for the golden vectors of tests/vectors/keys.json and for images given as files,
arrays or PIL images."""
import json
import os
import re
import subprocess

import numpy as np
import pytest

import gencache
from conftest import GENCACHE, SOURCE_DIR

VECTORS = os.path.join(SOURCE_DIR, "tests", "vectors", "keys.json")
KEY_LINE = re.compile(r"^([a-z0-9_]+)/[0-9a-f]{64}$")


def load_vectors():
    if not os.path.exists(VECTORS):
        pytest.skip("tests/vectors/keys.json does not exist yet: golden key vectors missing")
    with open(VECTORS, encoding="utf-8") as f:
        return json.load(f)


def keyspace_for(v):
    ks = gencache.Keyspace()
    if "mode" in v:
        ks.set_mode(v["mode"])
    for model, mode in (v.get("modes") or {}).items():
        ks.set_mode(mode, model)
    return ks


def request_bytes(v):
    return bytes.fromhex(v["request_hex"]) if "request_hex" in v else v["request"].encode()


def test_golden_vectors():
    data = load_vectors()
    assert data["vectors"], "no vectors in keys.json"
    for v in data["vectors"]:
        ks = keyspace_for(v)
        req = request_bytes(v)
        for layer, want in v["layers"].items():
            if want.get("uncacheable"):
                with pytest.raises(gencache.GencacheError) as e:
                    ks.key(req, layer, tenant=v.get("tenant"))
                assert e.value.name == "EUNCACHEABLE", (v["name"], layer)
                continue
            assert ks.key(req, layer, tenant=v.get("tenant")) == want["key"], (v["name"], layer)
            assert ks.canonical(req, layer, tenant=v.get("tenant")) == want["canonical"], \
                (v["name"], layer)


def test_invalid_requests_fail_like_the_vectors_say():
    data = load_vectors()
    for v in data.get("invalid", []):
        ks = keyspace_for(v)
        with pytest.raises(gencache.GencacheError) as e:
            ks.key(request_bytes(v), "text_embedding")
        assert e.value.name == v["error"], v["name"]


def cli_keys(request_path, mode=None, tenant=None):
    args = [GENCACHE, "key"]
    if mode:
        args += ["--mode", mode]
    if tenant:
        args += ["--tenant", tenant]
    out = subprocess.run(args + [request_path], capture_output=True, text=True, timeout=30)
    lines = [ln for ln in out.stdout.splitlines() if KEY_LINE.match(ln)]
    assert lines, "gencache key printed no key for %s: %s" % (request_path, out.stderr)
    return {KEY_LINE.match(ln).group(1): ln for ln in lines}


def test_keys_equal_the_cli(tmp_path):
    if not os.path.exists(GENCACHE):
        pytest.fail("the gencache CLI is not built at %s" % GENCACHE)
    data = load_vectors()
    checked = 0
    for i, v in enumerate(data["vectors"]):
        if v.get("modes"):
            continue  # per-model modes have no CLI flag; test_golden_vectors covers them
        path = tmp_path / ("req%d.json" % i)
        path.write_bytes(request_bytes(v))
        want = cli_keys(str(path), v.get("mode"), v.get("tenant"))
        ks = keyspace_for(v)
        got = ks.key(request_bytes(v), tenant=v.get("tenant"))
        assert got == want, v["name"]
        checked += 1
    assert checked >= 10


def test_dict_requests_and_module_level_key(cache):
    req = {"model": "wan", "prompt": "a  red\tfox ", "seed": 1, "guidance": 7.0}
    same = {"guidance": 7, "seed": 1, "prompt": "a red fox", "model": "wan"}
    assert gencache.key(req, "result") == gencache.key(same, "result") == cache.key(same,
                                                                                   "result")
    assert gencache.key(json.dumps(req), "text_embedding") == cache.key(req, "text_embedding")
    keys = cache.key(req)
    assert set(keys) == {"result", "text_embedding", "condition"}
    assert all(k.startswith(layer + "/") for layer, k in keys.items())
    with pytest.raises(gencache.GencacheError) as e:
        cache.key({"model": "wan", "prompt": "x"}, "result")  # no seed: a fresh random sample
    assert e.value.name == "EUNCACHEABLE"
    with pytest.raises(gencache.GencacheError) as e:
        cache.key({"steps": "fifty"}, "result")
    assert e.value.name == "EINVAL" and "steps" in str(e.value)
    with pytest.raises(gencache.GencacheError) as e:
        cache.key("{not json", "result")
    assert e.value.name == "EPARSE"
    with pytest.raises(gencache.NotFound):
        cache.key(req, "no_such_layer")
    with pytest.raises(TypeError):
        cache.key(["a", "list"], "result")
    with pytest.raises(ValueError):
        cache.key({"model": "m", "seed": 1, "guidance": float("nan")}, "result")


@pytest.mark.parametrize("mode", ["exact", "safe", "clip", "aggressive"])
def test_normalize_equals_the_cli(mode):
    for text in ["  A  Red\tFox  ", "Caf\u00e9  colour &amp; more", "line\nbreak"]:
        out = subprocess.run([GENCACHE, "normalize", "--mode", mode, text],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert gencache.normalize(text, mode) == out.stdout.rstrip("\n"), (mode, text)
    with pytest.raises(ValueError):
        gencache.normalize("x", "nosuchmode")
    with pytest.raises(gencache.GencacheError) as e:
        gencache.normalize(b"bad \xff utf-8", mode)
    assert e.value.name == "EPARSE"


def test_image_digest_from_file_array_and_pil(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    png = tmp_path / "in.png"
    Image.fromarray(pixels).save(png)
    d_file = gencache.image_digest(str(png))
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", d_file)
    assert gencache.image_digest(png) == d_file  # a PathLike
    assert gencache.image_digest(pixels) == d_file
    assert gencache.image_digest(Image.open(png)) == d_file
    changed = pixels.copy()
    changed[3, 4, 1] ^= 1
    assert gencache.image_digest(changed) != d_file
    # an image in a request: path, array and digest all give one key
    base = {"model": "m", "width": 32, "height": 24}
    k = gencache.key(dict(base, image={"digest": d_file}), "image_latent")
    assert gencache.key(dict(base, image={"path": str(png)}), "image_latent") == k
    assert gencache.key(dict(base, image=pixels), "image_latent") == k
    assert gencache.key(dict(base, image=str(png)), "image_latent") == k
    gray = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    assert gencache.image_digest(gray) == gencache.image_digest(gray[:, :, None])


def test_image_digest_errors(tmp_path):
    not_image = tmp_path / "x.png"
    not_image.write_bytes(b"this is not an image")
    with pytest.raises(gencache.GencacheError) as e:
        gencache.image_digest(str(not_image))
    assert e.value.name in ("EUNSUPPORTED", "EPARSE")
    with pytest.raises(gencache.GencacheError) as e:
        gencache.image_digest(str(tmp_path / "missing.png"))
    assert e.value.name == "EIO"
    with pytest.raises(TypeError):
        gencache.image_digest(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError):
        gencache.image_digest(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(TypeError):
        gencache.image_digest(12345)


@pytest.mark.skipif(not gencache.available("hashes"), reason="no perceptual hashes in the library")
def test_image_hash_file_and_array_agree(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    y, x = np.mgrid[0:64, 0:64]
    pixels = np.stack([(x * 4) % 256, (y * 4) % 256, ((x + y) * 2) % 256], -1).astype(np.uint8)
    png = tmp_path / "h.png"
    Image.fromarray(pixels).save(png)
    for algo in ("ahash", "dhash", "phash"):
        for bits in (64, 256):
            h = gencache.image_hash(str(png), algo, bits)
            assert re.fullmatch("[0-9a-f]{%d}" % (bits // 4), h), (algo, bits, h)
            assert gencache.image_hash(pixels, algo, bits) == h
            assert gencache.image_hash(Image.open(png), algo, bits) == h
    with pytest.raises(ValueError):
        gencache.image_hash(pixels, "xhash")
    with pytest.raises(ValueError):
        gencache.image_hash(pixels, "phash", 128)

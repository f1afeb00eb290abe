"""Approximate step reuse from a denoising loop: gencache.Trajectory over the C API."""
import numpy as np
import pytest

import gencache

pytestmark = pytest.mark.skipif(not gencache.available("trajectory"),
                                reason="the loaded library has no trajectory index")


def unit(axis, turn_to=None, cos=1.0, dim=32, dtype=np.float32):
    v = np.zeros(dim, dtype=np.float64)
    v[axis] = cos
    if turn_to is not None:
        v[turn_to] = np.sqrt(1 - cos * cos)
    return v.astype(dtype)


def denoise(cache, prompt, emb, steps=50, tenant=None):
    """A stand-in for a diffusers loop: the latent after step s is the start plus s. Returns
    the first step run and the final latent."""
    traj = gencache.Trajectory(cache, {"model": "sd-test", "prompt": prompt, "steps": steps},
                               emb, tenant=tenant)
    found = traj.resume()
    if found is None:
        start, latent = 0, np.zeros((4, 8, 8), dtype=np.float16)
    else:
        start, latent = found.step, np.array(found.latent)
    for s in range(start + 1, steps + 1):
        latent = latent + np.float16(1)
        traj.checkpoint(s, latent)
    return start, latent, found


def test_resume_from_a_similar_prompt(cache):
    start, latent, found = denoise(cache, "a red fox", unit(0))
    assert start == 0 and found is None
    assert float(latent[0, 0, 0]) == 50
    assert gencache.trajectory_stats(cache)["vectors"] == 5  # steps 5, 10, 15, 20, 25
    # cos 0.92: the default table lets it skip 20 steps; the latent is the one stored then.
    start, latent, found = denoise(cache, "a red fox, at dusk", unit(0, 1, 0.92))
    assert start == 20
    assert found.latent.shape == (4, 8, 8) and found.latent.dtype == np.float16
    assert float(found.latent[0, 0, 0]) == 20
    assert found.similarity == pytest.approx(0.92, abs=1e-4)
    assert found.key.startswith("trajectory/")
    assert float(latent[0, 0, 0]) == 50
    # Too far: nothing.
    start, _, found = denoise(cache, "a submarine", unit(0, 2, 0.5))
    assert start == 0 and found is None
    st = gencache.trajectory_stats(cache)
    assert st["hits"] == 1 and st["misses"] == 2 and st["steps_skipped"] == 20


def test_f16_and_torch_style_shapes(cache):
    denoise(cache, "a cat", unit(3, dtype=np.float16).reshape(1, 32))
    _, _, found = denoise(cache, "a cat!", unit(3, 4, 0.96, dtype=np.float16))
    assert found is not None and found.step == 25


def test_thresholds_and_errors(cache):
    denoise(cache, "a dog", unit(5))
    gencache.set_trajectory_thresholds(cache, {0.5: 3}, model="sd-test")
    traj = gencache.Trajectory(cache, {"model": "sd-test", "prompt": "x", "steps": 50},
                               unit(5, 6, 0.6))
    found = traj.resume()
    assert found is None  # no latent was stored at step 3 or before
    with pytest.raises(gencache.GencacheError) as e:
        gencache.set_trajectory_thresholds(cache, {1.5: 3}, model="sd-test")
    assert e.value.name == "EINVAL"
    # Another dimension for the same model is refused with EINVAL.
    other = gencache.Trajectory(cache, {"model": "sd-test", "prompt": "y", "steps": 50},
                                unit(1, dim=16))
    with pytest.raises(gencache.GencacheError) as e:
        other.resume()
    assert e.value.name == "EINVAL"
    with pytest.raises(gencache.GencacheError):
        other.checkpoint(5, np.zeros(4, dtype=np.float32))
    with pytest.raises(TypeError):
        gencache.Trajectory(cache, {"model": "m"}, np.zeros(4, dtype=np.int32))
    with pytest.raises(ValueError):
        gencache.Trajectory(cache, {"prompt": "no model"}, unit(0))
    with pytest.raises(ValueError):
        gencache.Trajectory(cache, {"model": "m"}, np.ones((2, 3), dtype=np.float32))


def test_deleted_latents_leave_the_index(cache):
    traj = gencache.Trajectory(cache, {"model": "sd-test", "prompt": "p", "steps": 50}, unit(7))
    keys = [traj.checkpoint(s, np.full(3, s, dtype=np.float32)) for s in (5, 10)]
    assert traj.checkpoint(7, np.zeros(3, dtype=np.float32)) is None  # not a checkpoint
    assert gencache.trajectory_stats(cache)["vectors"] == 2
    assert cache.delete(keys[1])
    assert gencache.trajectory_stats(cache)["vectors"] == 1
    found = traj.resume()
    assert found is not None and found.step == 5 and found.key == keys[0]

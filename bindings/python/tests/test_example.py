"""examples/i2v_pipeline.py runs to completion at small sizes, and its second run is served
partly from the cache (the image latent), its third run wholly (the result)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import PKG_ROOT, SOURCE_DIR

EXAMPLE = os.path.join(SOURCE_DIR, "examples", "i2v_pipeline.py")
SMALL = ["--frames", "2", "--size", "32", "--steps", "2"]


def run_example(*args):
    env = dict(os.environ, PYTHONPATH=PKG_ROOT)
    out = subprocess.run([sys.executable, EXAMPLE, *SMALL, *args], capture_output=True,
                         text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_second_run_reuses_the_image_latent_and_third_the_result():
    pytest.importorskip("torch")
    runs = json.loads(run_example("--runs", "3", "--json"))
    assert len(runs) == 3
    first, second, third = runs
    assert all(first[s]["outcome"] == "miss" for s in ("image_latent", "text_embedding",
                                                      "result"))
    assert second["image_latent"]["outcome"] == "hit"      # same image, model and size
    assert second["text_embedding"]["outcome"] == "miss"   # the prompt changed
    assert second["result"]["outcome"] == "miss"
    assert third["result"]["outcome"] == "hit"
    assert "denoise" not in third and "image_latent" not in third  # skipped entirely


def test_table_output_and_png(tmp_path):
    pytest.importorskip("torch")
    png = tmp_path / "frames.png"
    text = run_example("--out", str(png))
    lines = text.splitlines()
    latent = next(ln for ln in lines if ln.startswith("image_latent"))
    assert latent.split()[2] == "miss" and latent.split()[4] == "hit", text
    assert any(ln.startswith("total") for ln in lines)
    from PIL import Image
    assert Image.open(png).size == (2 * 32, 32)


def test_bad_flags_are_refused():
    env = dict(os.environ, PYTHONPATH=PKG_ROOT)
    out = subprocess.run([sys.executable, EXAMPLE, "--size", "30"], capture_output=True,
                         text=True, timeout=60, env=env)
    assert out.returncode == 2 and "multiple of 8" in out.stderr

#!/usr/bin/python3
"""A small image-to-video pipeline in PyTorch that uses gencache for its expensive stages.

The models are real but tiny, with fixed random weights (torch.manual_seed; nothing is
downloaded): an image encoder (strided convolutions to a 4-channel latent), a text encoder
(a byte-level tokenizer, an embedding and one transformer layer), a denoiser (a small 3-D UNet
over the video latent, conditioned on the image latent, the pooled text embedding and the
timestep) driven by a deterministic DDIM update, and a decoder from latents to RGB frames.

gencache keeps three things: the image latent (layer image_latent: keyed on model, image pixels,
width and height), the text embedding (text_embedding: model, prompt, negative prompt) and the
finished frames (result: every request parameter, seed included). The script runs the pipeline
twice, the second time with a tweaked prompt, and prints how long each stage took in each run and
whether the cache served it: the image latent is reused, the text is encoded again, and a run
repeated with the same request (--runs 3) is served whole from the result layer.

    /usr/bin/python3 examples/i2v_pipeline.py [--frames 8] [--size 64] [--steps 10]
        [--prompt TEXT] [--tweak TEXT] [--image FILE] [--runs 2] [--url DAEMON] [--json]

Run it from a source checkout with PYTHONPATH=bindings/python (and GENCACHE_LIB if the library
is not in build/src), or with the gencache package installed.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

try:
    import gencache
except ImportError:  # run from a checkout without PYTHONPATH
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                    "bindings", "python"))
    import gencache

MODEL = "toy-i2v-v1"
LATENT_CH = 4
TEXT_LEN = 64
TEXT_DIM = 64


# ---- models -----------------------------------------------------------------------------------

def tokenize(prompt):
    """Byte-level tokens: 1 = start, 2 = pad, 3 + byte; truncated to TEXT_LEN."""
    ids = [1] + [3 + b for b in prompt.encode("utf-8")][:TEXT_LEN - 1]
    return torch.tensor(ids + [2] * (TEXT_LEN - len(ids)), dtype=torch.long)


class TextEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(259, TEXT_DIM)
        self.pos = nn.Parameter(torch.randn(TEXT_LEN, TEXT_DIM) * 0.02)
        self.layer = nn.TransformerEncoderLayer(TEXT_DIM, nhead=4, dim_feedforward=4 * TEXT_DIM,
                                                batch_first=True, dropout=0.0)

    def forward(self, tokens):
        x = self.embed(tokens)[None] + self.pos
        return self.layer(x, src_key_padding_mask=(tokens == 2)[None])[0]  # (TEXT_LEN, DIM)


class ImageEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(64, 64, 3, padding=1), nn.SiLU(),
            nn.Conv2d(64, LATENT_CH, 3, stride=2, padding=1))

    def forward(self, image):  # (3, H, W) in [-1, 1] -> (LATENT_CH, H/8, W/8)
        return self.net(image[None])[0]


class Denoiser(nn.Module):
    """A small 3-D UNet: one down and one up level with a skip, FiLM conditioning."""

    def __init__(self, width=32):
        super().__init__()
        self.inp = nn.Conv3d(2 * LATENT_CH, width, 3, padding=1)
        self.down = nn.Conv3d(width, 2 * width, 3, stride=(1, 2, 2), padding=1)
        self.mid = nn.Conv3d(2 * width, 2 * width, 3, padding=1)
        self.up = nn.ConvTranspose3d(2 * width, width, (1, 4, 4), stride=(1, 2, 2),
                                     padding=(0, 1, 1))
        self.out = nn.Conv3d(2 * width, LATENT_CH, 3, padding=1)
        self.film = nn.Linear(TEXT_DIM + 32, 2 * width)

    def forward(self, x, t, image_latent, text):
        # x: (1, C, T, h, w); the image latent conditions every frame
        cond_img = image_latent[None, :, None].expand(-1, -1, x.shape[2], -1, -1)
        half = torch.arange(16, dtype=torch.float32)
        freqs = torch.exp(-math.log(10000.0) * half / 16) * t
        temb = torch.cat([torch.sin(freqs), torch.cos(freqs)])
        scale, shift = self.film(torch.cat([text.mean(0), temb])).chunk(2)
        h0 = F.silu(self.inp(torch.cat([x, cond_img], 1)))
        h0 = h0 * (1 + scale[None, :, None, None, None]) + shift[None, :, None, None, None]
        h1 = F.silu(self.down(h0))
        h1 = F.silu(self.mid(h1)) + h1
        h2 = F.silu(self.up(h1))
        return self.out(torch.cat([h2, h0], 1))


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose2d(LATENT_CH, 64, 4, stride=2, padding=1), nn.SiLU(),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.SiLU(),
            nn.ConvTranspose2d(32, 3, 4, stride=2, padding=1), nn.Tanh())

    def forward(self, latents):  # (T, C, h, w) -> (T, 3, H, W) in [-1, 1]
        return self.net(latents)


def ddim_sample(denoiser, image_latent, text, frames, steps, seed):
    """Deterministic DDIM (eta = 0) over a linear-beta schedule of 1000 training steps."""
    betas = torch.linspace(1e-4, 0.02, 1000)
    alphas = torch.cumprod(1 - betas, 0)
    g = torch.Generator().manual_seed(seed)
    c, h, w = image_latent.shape
    x = torch.randn(1, c, frames, h, w, generator=g)
    ts = torch.linspace(999, 0, steps).long()
    for i, t in enumerate(ts):
        a_t = alphas[t]
        a_prev = alphas[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0)
        eps = denoiser(x, float(t), image_latent, text)
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return x[0].permute(1, 0, 2, 3)  # (T, C, h, w)


# ---- the pipeline -------------------------------------------------------------------------------

class Pipeline:
    def __init__(self, cache):
        torch.manual_seed(1234)
        self.text_encoder = TextEncoder().eval()
        self.image_encoder = ImageEncoder().eval()
        self.denoiser = Denoiser().eval()
        self.decoder = Decoder().eval()
        self.cache = cache
        self.times = {}

        # The stages whose outputs gencache keeps. Only the arguments in key_fields enter the
        # key; `image` is a numpy array whose pixel digest is what the key sees.
        @cache.stage("image_latent", key_fields=("model", "image", "width", "height"))
        def encode_image(model, image, width, height):
            x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
            x = F.interpolate(x[None], size=(height, width), mode="bilinear",
                              align_corners=False)[0]
            return self.image_encoder(x / 127.5 - 1)

        @cache.stage("text_embedding", key_fields=("model", "prompt", "negative_prompt"),
                     codec="bf16")
        def encode_text(model, prompt, negative_prompt=None):
            # The encoder's own cleaning is gencache's lossless "safe" normalization, so two
            # prompts that share a key always give the same embedding.
            cond = self.text_encoder(tokenize(gencache.normalize(prompt, "safe")))
            if negative_prompt:
                cond = cond - 0.1 * self.text_encoder(
                    tokenize(gencache.normalize(negative_prompt, "safe")))
            return cond

        self.encode_image = encode_image
        self.encode_text = encode_text

    def _timed(self, stage, fn, *args, **kwargs):
        t0 = time.perf_counter()
        value, outcome = fn(*args, **kwargs)
        self.times[stage] = ((time.perf_counter() - t0) * 1000, outcome)
        return value

    def run(self, request, image):
        """Generates the frames of `request` (a DESIGN.md request dict) from `image` (H x W x 3
        uint8). Returns (T, H, W, 3) uint8 frames and {stage: (ms, outcome)}."""
        self.times = {}
        r = request
        result_request = dict(r, image={"digest": gencache.image_digest(image)})
        result_key = self.cache.key(result_request, "result")

        def generate():
            with torch.no_grad():
                latent = self._timed("image_latent", self.encode_image.with_outcome, r["model"],
                                     image, r["width"], r["height"])
                text = self._timed("text_embedding", self.encode_text.with_outcome, r["model"],
                                   r["prompt"], r.get("negative_prompt"))
                text = text.float()  # stored as bf16 (codec) to halve its size
                latents = self._timed("denoise", lambda: (ddim_sample(
                    self.denoiser, latent, text, r["frames"], r["steps"], r["seed"]),
                    "computed"))
                video = self._timed("decode", lambda: (self.decoder(latents), "computed"))
            return ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(
                0, 2, 3, 1).contiguous()

        t0 = time.perf_counter()
        frames, outcome = self.cache.get_or_compute(result_key, generate, with_outcome=True,
                                                    model=r["model"])
        total = (time.perf_counter() - t0) * 1000
        inner = sum(ms for ms, _ in self.times.values())
        self.times["result"] = (max(total - inner, 0.0), outcome)
        self.times["total"] = (total, "")
        return frames, dict(self.times)


def test_image(size):
    """A deterministic test picture: gradients and a disc."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    disc = ((x - 0.6) ** 2 + (y - 0.4) ** 2 < 0.05).astype(np.float32)
    rgb = np.stack([x, y * (1 - disc) + disc, 0.5 * (1 - x) + 0.5 * disc], -1)
    return (rgb * 255).round().astype(np.uint8)


STAGES = ("image_latent", "text_embedding", "denoise", "decode", "result", "total")


def print_table(runs, out=sys.stdout):
    head = "%-16s" % "stage" + "".join("  %10s %-9s" % ("run %d ms" % (i + 1), "")
                                       for i in range(len(runs)))
    print(head.rstrip(), file=out)
    print("-" * len(head.rstrip()), file=out)
    for stage in STAGES:
        row = "%-16s" % stage
        for times in runs:
            if stage in times:
                ms, outcome = times[stage]
                row += "  %10.1f %-9s" % (ms, outcome)
            else:
                row += "  %10s %-9s" % ("-", "skipped")
        print(row.rstrip(), file=out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=8, help="video frames (default 8)")
    p.add_argument("--size", type=int, default=64,
                   help="frame width and height in pixels, a multiple of 8 (default 64)")
    p.add_argument("--steps", type=int, default=10, help="denoising steps (default 10)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--prompt", default="a red fox running through snow")
    p.add_argument("--tweak", default="a red fox running through deep snow",
                   help="the prompt of the second run")
    p.add_argument("--image", help="input image file (default: a generated test picture)")
    p.add_argument("--runs", type=int, default=2,
                   help="runs: 1 the prompt, 2 the tweak, 3 and later repeat the tweak")
    p.add_argument("--url", help="use a gencached daemon at URL instead of an in-process cache")
    p.add_argument("--data-dir", help="in-process cache: keep a disk tier here (so a second "
                   "invocation of the script finds the results)")
    p.add_argument("--out", help="write the last run's frames side by side to this PNG")
    p.add_argument("--json", action="store_true", help="print the stage times as JSON")
    args = p.parse_args(argv)
    if args.size % 8 or args.size < 8:
        p.error("--size must be a positive multiple of 8")
    if args.frames < 1 or args.steps < 1 or args.runs < 1:
        p.error("--frames, --steps and --runs must be at least 1")

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    if args.image:
        from PIL import Image
        image = np.asarray(Image.open(args.image).convert("RGB"))
    else:
        image = test_image(args.size)
    cache = gencache.Client(args.url) if args.url else gencache.Cache(
        mem_max_bytes=512 << 20, data_dir=args.data_dir)
    pipe = Pipeline(cache)
    base = {"model": MODEL, "negative_prompt": "blurry", "seed": args.seed,
            "steps": args.steps, "frames": args.frames, "width": args.size,
            "height": args.size, "guidance": 1.0, "scheduler": "ddim"}
    runs = []
    frames = None
    for i in range(args.runs):
        request = dict(base, prompt=args.prompt if i == 0 else args.tweak)
        frames, times = pipe.run(request, image)
        runs.append(times)
    if args.json:
        print(json.dumps([{k: {"ms": round(v[0], 3), "outcome": v[1]} for k, v in t.items()}
                          for t in runs]))
    else:
        print("%s: %d frames of %dx%d, %d steps; run 2 changes the prompt to %r"
              % (MODEL, args.frames, args.size, args.size, args.steps, args.tweak))
        print_table(runs)
    if args.out:
        from PIL import Image
        strip = np.concatenate(list(np.asarray(frames)), axis=1)
        Image.fromarray(strip).save(args.out)
    if hasattr(cache, "close"):
        cache.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

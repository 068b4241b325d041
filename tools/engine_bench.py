#!/usr/bin/env python3
"""Times one UNet call in PyTorch diffusers and in `arenaxl bench unet` on the same
weights, input shapes and CPU thread count, and prints the ratio.

Configs: the tiny-sdxl preset and a mid-sized SDXL-structured UNet
(tests/fixtures/engine/bench-mid-unet.json). Weights are random, written once with
diffusers' save_pretrained and loaded by both sides.

With --pipeline it also times a whole generation end to end: `arenaxl model init --preset
tiny-sdxl` writes a random-weight pipeline folder, then 20 Euler steps at 256x256 with
guidance 5 (batch 2 through the UNet), PNG written, in both: `arenaxl generate` as a whole
process (loading included) against diffusers' StableDiffusionXLPipeline in this process
(from_pretrained to the saved PNG; the interpreter and torch already imported).

    python tools/engine_bench.py --threads 2 --arenaxl target/release/arenaxl [--pipeline]

(in a virtualenv with torch, diffusers and transformers from PyPI)
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import torch
from diffusers import UNet2DConditionModel

CONFIGS = {
    "tiny-sdxl": "src/engine/presets/unet_tiny-sdxl.json",
    "mid-sdxl": "tests/fixtures/engine/bench-mid-unet.json",
}


def torch_time(unet, cfg, batch, iters):
    h = w = cfg["sample_size"]
    cross = cfg["cross_attention_dim"]
    pooled = cfg["projection_class_embeddings_input_dim"] - 6 * cfg["addition_time_embed_dim"]
    g = torch.Generator().manual_seed(0)
    sample = torch.randn((batch, cfg["in_channels"], h, w), generator=g)
    ctx = torch.randn((batch, 77, cross), generator=g)
    added = {"text_embeds": torch.randn((batch, pooled), generator=g), "time_ids": torch.full((batch, 6), 1024.0)}
    t = torch.tensor([500.0])
    times = []
    with torch.no_grad():
        for i in range(iters + 1):
            start = time.perf_counter()
            unet(sample, t, encoder_hidden_states=ctx, added_cond_kwargs=added)
            if i > 0:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def pipeline_times(cmd, threads, runs):
    from diffusers import StableDiffusionXLPipeline

    prompt = "a red cube on a blue sphere"
    rust, torch_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "tiny")
        subprocess.run(cmd + ["model", "init", "--preset", "tiny-sdxl", "--out", folder], check=True,
                       capture_output=True)
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
        for i in range(runs + 1):
            start = time.perf_counter()
            subprocess.run(cmd + ["generate", "--model", folder, "--prompt", prompt, "--steps", "20",
                                  "--guidance", "5", "--width", "256", "--height", "256", "--scheduler", "euler",
                                  "--out", os.path.join(tmp, "a.png")], check=True, capture_output=True, env=env)
            if i > 0:
                rust.append(time.perf_counter() - start)
            start = time.perf_counter()
            pipe = StableDiffusionXLPipeline.from_pretrained(folder)
            pipe.set_progress_bar_config(disable=True)
            with torch.no_grad():
                image = pipe(prompt, num_inference_steps=20, guidance_scale=5.0, width=256, height=256,
                             generator=torch.Generator().manual_seed(0)).images[0]
            image.save(os.path.join(tmp, "t.png"))
            if i > 0:
                torch_s.append(time.perf_counter() - start)
    return statistics.median(torch_s), statistics.median(rust)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--arenaxl", default=None, help="arenaxl binary (default: cargo run -q --)")
    ap.add_argument("--pipeline", action="store_true", help="also time a 20-step 256x256 tiny-sdxl generation")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cmd = [args.arenaxl] if args.arenaxl else ["cargo", "run", "-q", "--"]
    rows = []
    for name, path in CONFIGS.items():
        cfg = json.load(open(path))
        unet = UNet2DConditionModel.from_config(cfg).eval()
        params = sum(p.numel() for p in unet.parameters())
        with tempfile.TemporaryDirectory() as tmp:
            unet.save_pretrained(tmp, safe_serialization=True)
            t_torch = torch_time(unet, cfg, args.batch, args.iters)
            out = subprocess.run(
                cmd + ["bench", "unet", "--unet-dir", tmp, "--threads", str(args.threads), "--batch", str(args.batch),
                       "--iters", str(args.iters), "--json"],
                check=True, capture_output=True, text=True,
            ).stdout
            rust = json.loads(out.strip().splitlines()[-1])
        t_rust = rust["median_ms"] / 1000
        rows.append((name, params, cfg["sample_size"], t_torch, t_rust))
        print(f"{name}: {params:,} params, latents {cfg['sample_size']}^2, batch {args.batch}, {args.threads} threads: "
              f"diffusers {t_torch*1e3:.1f} ms, arenaxl {t_rust*1e3:.1f} ms, ratio arenaxl/diffusers {t_rust/t_torch:.2f}",
              flush=True)
    if args.pipeline:
        t_torch, t_rust = pipeline_times(cmd, args.threads, args.iters)
        rows.append(("tiny-sdxl pipeline, 20 steps, 256x256", None, 32, t_torch, t_rust))
        print(f"tiny-sdxl pipeline, 20 Euler steps at 256x256, guidance 5, {args.threads} threads, end to end: "
              f"diffusers {t_torch*1e3:.0f} ms, arenaxl {t_rust*1e3:.0f} ms, ratio arenaxl/diffusers {t_rust/t_torch:.2f}",
              flush=True)
    print(json.dumps([dict(zip(["config", "params", "latent", "torch_s", "arenaxl_s"], r)) for r in rows]))


if __name__ == "__main__":
    main()

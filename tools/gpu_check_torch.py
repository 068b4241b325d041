#!/usr/bin/env python3
"""One UNet call (batch 2) of a diffusers `unet/` folder in PyTorch; prints the median
time in milliseconds over --iters calls after one warm-up call. Used by tools/gpu-check.sh
to compare with `arenaxl bench unet` on the same weights and shapes."""

import argparse
import statistics
import time

import torch
from diffusers import UNet2DConditionModel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("unet_dir")
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--dtype", default="f16", choices=["f16", "bf16", "f32"])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--iters", type=int, default=5)
    a = ap.parse_args()
    dtype = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}[a.dtype]
    dev = torch.device(a.device)
    unet = UNet2DConditionModel.from_pretrained(a.unet_dir, torch_dtype=dtype).to(dev).eval()
    c = unet.config
    lat = a.size // 8
    cross = c.cross_attention_dim if isinstance(c.cross_attention_dim, int) else c.cross_attention_dim[0]
    g = torch.Generator().manual_seed(0)
    sample = torch.randn((2, c.in_channels, lat, lat), generator=g).to(dev, dtype)
    ctx = torch.randn((2, 77, cross), generator=g).to(dev, dtype)
    kwargs = {}
    if c.addition_embed_type == "text_time":
        pooled = c.projection_class_embeddings_input_dim - 6 * c.addition_time_embed_dim
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.randn((2, pooled), generator=g).to(dev, dtype),
            "time_ids": torch.full((2, 6), float(a.size)).to(dev, dtype),
        }
    t = torch.tensor([500.0], device=dev)
    times = []
    with torch.no_grad():
        for i in range(a.iters + 1):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            start = time.perf_counter()
            unet(sample, t, encoder_hidden_states=ctx, **kwargs)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if i > 0:
                times.append(time.perf_counter() - start)
    print(f"{statistics.median(times) * 1e3:.3f}")


if __name__ == "__main__":
    main()

"""The distillation training step in PyTorch/diffusers, for `arenaxl bench distill`:
teacher forward (no grad), student forward with every resnet/transformer/mid output
captured by hooks, task + 0.5 output + 0.5 feature MSE, backward, grad-norm clip, AdamW.
Same models (the folders the bench writes), batch, latent size and thread count.

Usage: python tools/distill_bench.py TEACHER STUDENT [--batch B] [--latent L] [--steps N] [--threads T]
Prints `steps_per_s X`.
"""
import argparse
import time

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel


def hook_features(unet, store):
    """Records outputs under the engine's names (down.i.resnets.j, mid, ...)."""
    def rec(name):
        def f(_m, _i, out):
            store[name] = out[0] if isinstance(out, tuple) else getattr(out, "sample", out)
        return f
    for kind, blocks in (("down", unet.down_blocks), ("up", unet.up_blocks)):
        for i, b in enumerate(blocks):
            for j, r in enumerate(b.resnets):
                r.register_forward_hook(rec(f"{kind}.{i}.resnets.{j}"))
            for j, a in enumerate(getattr(b, "attentions", [])):
                a.register_forward_hook(rec(f"{kind}.{i}.attentions.{j}"))
    if unet.mid_block is not None:
        unet.mid_block.register_forward_hook(rec("mid"))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("teacher")
    p.add_argument("student")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    teacher = UNet2DConditionModel.from_pretrained(a.teacher, subfolder="unet").eval()
    student = UNet2DConditionModel.from_pretrained(a.student, subfolder="unet").train()
    teacher.requires_grad_(False)
    tf, sf = {}, {}
    hook_features(teacher, tf)
    hook_features(student, sf)
    cfg = student.config
    b, L = a.batch, a.latent
    pooled = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
    opt = torch.optim.AdamW(student.parameters(), lr=1e-4, weight_decay=1e-2)
    alphas = torch.cumprod(1 - torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2, 0)
    latents = torch.randn(4 * b, 4, L, L)
    embeds = torch.randn(4 * b, 77, cfg.cross_attention_dim)
    text = torch.randn(4 * b, pooled)
    ids = torch.full((b, 6), float(L * 8))

    def step():
        idx = torch.randint(0, 4 * b, (b,))
        x0, noise = latents[idx], torch.randn(b, 4, L, L)
        t = torch.randint(0, 1000, (b,))
        ab = alphas[t].view(b, 1, 1, 1)
        noisy = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        cond = {"text_embeds": text[idx], "time_ids": ids}
        with torch.no_grad():
            tout = teacher(noisy, t, encoder_hidden_states=embeds[idx], added_cond_kwargs=cond).sample
        sout = student(noisy, t, encoder_hidden_states=embeds[idx], added_cond_kwargs=cond).sample
        feat = sum(F.mse_loss(v, tf[k]) for k, v in sf.items() if k in tf)
        loss = F.mse_loss(sout, noise) + 0.5 * F.mse_loss(sout, tout) + 0.5 * feat
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    print(f"steps_per_s {a.steps / (time.perf_counter() - start):.4f}")


if __name__ == "__main__":
    main()

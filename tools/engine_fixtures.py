#!/usr/bin/env python3
"""Writes the engine's reference fixtures with PyTorch diffusers/transformers.

Builds tiny random-weight SDXL-, SSD-1B- and Vega-shaped pipelines, saves them with
`save_pretrained` under tests/fixtures/engine/<name>/, and records what diffusers computes
from them: token ids, text embeddings, one UNet call (with per-block features), one VAE
decode, scheduler timesteps/sigmas, and final 8-bit images for a set of generation cases.
The Rust tests (tests/engine_*.rs) load the same folders and compare.

Run from the repository root:  .venv/bin/python tools/engine_fixtures.py [--only formats]

`--only formats` writes just tests/fixtures/engine/tiny-formats/ (see build_formats): a
pipeline saved the way current diffusers (0.42) and transformers (5.x) save real models.
"""

import json
import os
import shutil
import sys

import numpy as np
import torch
from safetensors.torch import save_file

from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

OUT = os.path.join("tests", "fixtures", "engine")
torch.set_num_threads(2)

# Kept in sync with src/engine/presets.rs (a Rust test checks the configs agree).
TINY_UNET_BASE = {
    "sample_size": 16,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [16, 32, 32],
    "layers_per_block": 2,
    "attention_head_dim": [1, 2, 2],
    "norm_num_groups": 8,
    "cross_attention_dim": 64,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 80,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
}
TINY_UNETS = {
    "tiny-sdxl": dict(TINY_UNET_BASE, transformer_layers_per_block=[1, 2, 3], mid_block_type="UNetMidBlock2DCrossAttn"),
    "tiny-ssd-1b": dict(
        TINY_UNET_BASE,
        transformer_layers_per_block=[1, [2, 1], [3, 2]],
        reverse_transformer_layers_per_block=[[2, 2, 3], [2, 1, 1], 1],
        mid_block_type="UNetMidBlock2D",
    ),
    "tiny-vega": dict(TINY_UNET_BASE, transformer_layers_per_block=[0, 1, 2], mid_block_type="UNetMidBlock2D"),
}
TINY_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [8, 16, 16, 16],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 128,
    "scaling_factor": 0.13025,
    "force_upcast": True,
}
SDXL_SCHEDULER = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}

WORDS = ["a", "photo", "of", "cat", "dog", "red", "blue", "astronaut", "riding", "horse", "on", "the",
         "moon", "blurry", "painting", "city", "at", "night", "in", "style"]


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable unicode character table."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(keep, chars)}


def tiny_bpe():
    """A CLIP-style vocabulary: bytes, bytes+</w>, merges spelling WORDS, then specials."""
    symbols = list(bytes_to_unicode().values())
    vocab = {}
    for s in symbols:
        vocab[s] = len(vocab)
    for s in symbols:
        vocab[s + "</w>"] = len(vocab)
    merges = []
    for w in WORDS:
        parts = list(w[:-1]) + [w[-1] + "</w>"]
        while len(parts) > 1:
            pair = (parts[0], parts[1])
            merged = parts[0] + parts[1]
            if " ".join(pair) not in merges:
                merges.append(" ".join(pair))
                if merged not in vocab:
                    vocab[merged] = len(vocab)
            parts = [merged] + parts[2:]
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, merges


def write_tokenizer(dirname, vocab, merges, pad):
    os.makedirs(dirname, exist_ok=True)
    with open(os.path.join(dirname, "vocab.json"), "w") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(dirname, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizer(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges], pad_token=pad,
                        model_max_length=77)
    return tok


def text_config(vocab_size, act, eos):
    return CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, max_position_embeddings=77, hidden_act=act, projection_dim=32,
        bos_token_id=eos - 1, eos_token_id=eos, pad_token_id=1,
    )


def randomize(module, seed):
    """Random weights everywhere (norms too), so that every parameter matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        # Values are rounded to f16 so that the checkpoints can be stored in half precision
        # (small fixtures) while both implementations compute in f32 on identical weights.
        for name, p in module.named_parameters():
            if name.endswith("weight") and ("norm" in name or "layer_norm" in name):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif p.ndim >= 2:
                fan_in = int(np.prod(p.shape[1:]))
                p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(fan_in))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            p.copy_(p.half().float())


def build_pipeline(name, seed):
    vocab, merges = tiny_bpe()
    tmp = os.path.join(OUT, name)
    shutil.rmtree(tmp, ignore_errors=True)
    tok1 = write_tokenizer(os.path.join(tmp, "tokenizer"), vocab, merges, "<|endoftext|>")
    tok2 = write_tokenizer(os.path.join(tmp, "tokenizer_2"), vocab, merges, "!")
    eos = vocab["<|endoftext|>"]
    te1 = CLIPTextModel(text_config(len(vocab), "quick_gelu", eos))
    te2 = CLIPTextModelWithProjection(text_config(len(vocab), "gelu", eos))
    unet = UNet2DConditionModel(**TINY_UNETS[name])
    vae = AutoencoderKL(**TINY_VAE)
    for i, m in enumerate([te1, te2, unet, vae]):
        randomize(m, seed * 10 + i)
    sched = EulerDiscreteScheduler.from_config(SDXL_SCHEDULER)
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=tok1,
                                     tokenizer_2=tok2, unet=unet, scheduler=sched)
    pipe.to(torch.float16)
    pipe.save_pretrained(tmp, safe_serialization=True)
    pipe.to(torch.float32)
    # save_pretrained rewrote the tokenizer folders; keep the slow-format files the engine reads.
    write_tokenizer(os.path.join(tmp, "tokenizer"), vocab, merges, "<|endoftext|>")
    write_tokenizer(os.path.join(tmp, "tokenizer_2"), vocab, merges, "!")
    for sub in ["tokenizer", "tokenizer_2"]:
        p = os.path.join(tmp, sub, "tokenizer.json")
        if os.path.exists(p):
            os.remove(p)  # optional for the engine; keeps fixtures small
    pipe.set_progress_bar_config(disable=True)
    return pipe


SCHEDULERS = {
    "euler": EulerDiscreteScheduler,
    "ddim": DDIMScheduler,
    "dpmpp-2m": DPMSolverMultistepScheduler,
    "euler-a": EulerAncestralDiscreteScheduler,
}

PROMPTS = ["a photo of a cat", "an astronaut riding a horse on the moon, painting"]
# Tokenizer edge cases: case, punctuation runs, contractions, digits, non-ASCII letters,
# whitespace runs, special tokens inside the text, and truncation past 77 tokens.
TOKENIZER_PROMPTS = PROMPTS + [
    "",
    "Hello, World! 42 cats",
    "It's the astronaut's horse; they'll ride at 10:30pm!!",
    "café déjà vu — naïve Ünïcode æø",
    "   multiple   spaces\tand\nnewlines  ",
    "a cat <|endoftext|> a dog",
    "a red horse " * 30,
]

CASES = {
    "tiny-sdxl": [
        dict(prompts=[PROMPTS[0]], negative=None, steps=4, guidance=5.0, width=64, height=64, scheduler="euler", seed=1),
        dict(prompts=PROMPTS, negative=None, steps=3, guidance=1.0, width=96, height=64, scheduler="ddim", seed=2),
        dict(prompts=[PROMPTS[1]], negative="blurry", steps=5, guidance=3.0, width=64, height=64, scheduler="dpmpp-2m", seed=3),
        dict(prompts=[""], negative=None, steps=3, guidance=4.0, width=64, height=80, scheduler="euler", seed=4),
    ],
    "tiny-ssd-1b": [
        dict(prompts=[PROMPTS[0]], negative=None, steps=4, guidance=5.0, width=64, height=64, scheduler="euler", seed=5),
        dict(prompts=[PROMPTS[1]], negative="blurry", steps=3, guidance=1.0, width=64, height=96, scheduler="dpmpp-2m", seed=6),
    ],
    "tiny-vega": [
        dict(prompts=[PROMPTS[1]], negative=None, steps=4, guidance=4.0, width=96, height=64, scheduler="ddim", seed=7),
        dict(prompts=[PROMPTS[0]], negative=None, steps=2, guidance=1.0, width=64, height=64, scheduler="euler", seed=8),
    ],
}


def feature_hooks(unet, store):
    hooks = []

    def add(module, key):
        def hook(_m, _inp, out):
            store[key] = (out[0] if isinstance(out, tuple) else getattr(out, "sample", out)).detach().clone()
        hooks.append(module.register_forward_hook(hook))

    for i, b in enumerate(unet.down_blocks):
        for j, r in enumerate(b.resnets):
            add(r, f"down.{i}.resnets.{j}")
        for j, a in enumerate(getattr(b, "attentions", []) or []):
            add(a, f"down.{i}.attentions.{j}")
    if unet.mid_block is not None:
        add(unet.mid_block, "mid")
    for i, b in enumerate(unet.up_blocks):
        for j, r in enumerate(b.resnets):
            add(r, f"up.{i}.resnets.{j}")
        for j, a in enumerate(getattr(b, "attentions", []) or []):
            add(a, f"up.{i}.attentions.{j}")
    return hooks


def record_components(pipe, folder):
    tensors = {}
    for k, tok in [("tokenizer", pipe.tokenizer), ("tokenizer_2", pipe.tokenizer_2)]:
        ids = tok(TOKENIZER_PROMPTS, padding="max_length", max_length=tok.model_max_length,
                  truncation=True, return_tensors="pt").input_ids
        tensors[f"{k}.input_ids"] = ids.to(torch.int64)
    with torch.no_grad():
        emb, neg, pooled, neg_pooled = pipe.encode_prompt(PROMPTS, device="cpu", num_images_per_prompt=1,
                                                          do_classifier_free_guidance=True, negative_prompt="blurry")
    tensors.update({"text.prompt_embeds": emb, "text.pooled": pooled, "text.negative_embeds": neg,
                    "text.negative_pooled": neg_pooled})

    g = torch.Generator().manual_seed(0)
    sample = torch.randn((2, 4, 8, 12), generator=g)
    ehs = torch.randn((2, 77, 64), generator=g)
    text_embeds = torch.randn((2, 32), generator=g)
    time_ids = torch.tensor([[64.0, 96.0, 0.0, 0.0, 64.0, 96.0], [128.0, 128.0, 4.0, 8.0, 64.0, 96.0]])
    t = torch.tensor([999.0, 437.5])
    store = {}
    hooks = feature_hooks(pipe.unet, store)
    with torch.no_grad():
        out = pipe.unet(sample, t, encoder_hidden_states=ehs,
                        added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids}).sample
    for h in hooks:
        h.remove()
    tensors.update({"unet.sample": sample, "unet.timesteps": t, "unet.encoder_hidden_states": ehs,
                    "unet.text_embeds": text_embeds, "unet.time_ids": time_ids, "unet.out": out})
    for k, v in store.items():
        tensors["feature." + k] = v

    latents = torch.randn((1, 4, 8, 12), generator=g)
    with torch.no_grad():
        image = pipe.vae.decode(latents).sample
    tensors.update({"vae.latents": latents, "vae.image": image})
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(folder, "reference.safetensors"))


def record_cases(pipe, name, folder):
    out = {}
    cases = []
    base_config = pipe.scheduler.config
    for idx, c in enumerate(CASES[name]):
        pipe.scheduler = SCHEDULERS[c["scheduler"]].from_config(base_config)
        g = torch.Generator().manual_seed(c["seed"])
        shape = (len(c["prompts"]), 4, c["height"] // 8, c["width"] // 8)
        latents = torch.randn(shape, generator=g)
        with torch.no_grad():
            images = pipe(prompt=c["prompts"], negative_prompt=c["negative"], num_inference_steps=c["steps"],
                          guidance_scale=c["guidance"], width=c["width"], height=c["height"], latents=latents.clone(),
                          output_type="np").images
        out[f"case{idx}.latents"] = latents
        out[f"case{idx}.image"] = torch.from_numpy((images * 255).round().astype(np.uint8))
        cases.append(c)
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(folder, "cases.safetensors"))
    with open(os.path.join(folder, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)


def record_schedulers():
    rows = []
    for kind, cls in SCHEDULERS.items():
        for spacing in ["leading", "trailing", "linspace"]:
            for steps in [1, 4, 7, 25]:
                s = cls.from_config(dict(SDXL_SCHEDULER, timestep_spacing=spacing))
                s.set_timesteps(steps)
                row = {"scheduler": kind, "spacing": spacing, "steps": steps,
                       "timesteps": [float(t) for t in s.timesteps],
                       "init_noise_sigma": float(s.init_noise_sigma)}
                if hasattr(s, "sigmas"):
                    row["sigmas"] = [float(x) for x in s.sigmas]
                rows.append(row)
    with open(os.path.join(OUT, "schedulers.json"), "w") as f:
        json.dump(rows, f)


# The folder of file formats: written by diffusers' and transformers' own save_pretrained,
# as published checkpoints are. A DPM-Solver++ config (holding `lambda_min_clipped:
# -Infinity`) with Karras sigmas; tokenizers saved by transformers 5 (tokenizer.json only);
# every component under the `fp16` variant name only; the UNet sharded through its
# `.index.fp16.json`; the second text encoder stored in bf16.
FORMATS_UNET = dict(TINY_UNET_BASE, transformer_layers_per_block=[0, 1, 2], mid_block_type="UNetMidBlock2D")
FORMATS_CASES = [
    # DPM++ 2M Karras: the folder's own scheduler.
    dict(prompts=[PROMPTS[0]], negative=None, steps=6, guidance=5.0, width=64, height=64, scheduler="dpmpp-2m", seed=21,
         overrides={}),
    # Euler Karras.
    dict(prompts=[PROMPTS[1]], negative="blurry", steps=5, guidance=4.0, width=64, height=64, scheduler="euler", seed=22,
         overrides={}),
    # DPM++ 2M Karras ending at sigma_min, second order to the end (16 steps).
    dict(prompts=[PROMPTS[0]], negative=None, steps=16, guidance=3.0, width=64, height=64, scheduler="dpmpp-2m",
         seed=23, overrides={"final_sigmas_type": "sigma_min", "lower_order_final": False}),
    # DPM++ 2M (spaced timesteps) ending at sigma_min: the last step, from t=201 down to
    # sigma_min, is second order here and first order with euler_at_final in the next case.
    dict(prompts=[PROMPTS[1]], negative=None, steps=4, guidance=3.0, width=64, height=64, scheduler="dpmpp-2m",
         seed=25, overrides={"final_sigmas_type": "sigma_min", "lower_order_final": False, "use_karras_sigmas": False}),
    dict(prompts=[PROMPTS[1]], negative=None, steps=4, guidance=3.0, width=64, height=64, scheduler="dpmpp-2m",
         seed=25, overrides={"final_sigmas_type": "sigma_min", "euler_at_final": True, "use_karras_sigmas": False}),
    # Euler Karras ending at sigma_min, trailing spacing.
    dict(prompts=[PROMPTS[1]], negative=None, steps=4, guidance=5.0, width=64, height=64, scheduler="euler", seed=24,
         overrides={"final_sigmas_type": "sigma_min", "timestep_spacing": "trailing"}),
]


def round_bf16(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.bfloat16().float())


def build_formats():
    name = "tiny-formats"
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    vocab, merges = tiny_bpe()
    merge_pairs = [tuple(m.split(" ")) for m in merges]
    tok1 = CLIPTokenizer(vocab=vocab, merges=merge_pairs, pad_token="<|endoftext|>", model_max_length=77)
    tok2 = CLIPTokenizer(vocab=vocab, merges=merge_pairs, pad_token="!", model_max_length=77)
    eos = vocab["<|endoftext|>"]
    te1 = CLIPTextModel(text_config(len(vocab), "quick_gelu", eos))
    te2 = CLIPTextModelWithProjection(text_config(len(vocab), "gelu", eos))
    unet = UNet2DConditionModel(**FORMATS_UNET)
    vae = AutoencoderKL(**TINY_VAE)
    for i, m in enumerate([te1, te2, unet, vae]):
        randomize(m, 90 + i)
    round_bf16(te2)
    sched = DPMSolverMultistepScheduler.from_config(dict(SDXL_SCHEDULER, use_karras_sigmas=True))
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=tok1,
                                     tokenizer_2=tok2, unet=unet, scheduler=sched)
    pipe.to(torch.float16)
    pipe.text_encoder_2.to(torch.bfloat16)
    pipe.save_pretrained(folder, safe_serialization=True, variant="fp16")
    # Sharded as large checkpoints are published (max_shard_size), under the variant name.
    shutil.rmtree(os.path.join(folder, "unet"))
    pipe.unet.save_pretrained(os.path.join(folder, "unet"), safe_serialization=True, variant="fp16",
                              max_shard_size="600KB")
    pipe.to(torch.float32)
    pipe.set_progress_bar_config(disable=True)
    # Reload as a user would, so that the references come from what is on disk.
    pipe = StableDiffusionXLPipeline.from_pretrained(folder, variant="fp16", torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    record_components(pipe, folder)
    out, cases = {}, []
    base = dict(pipe.scheduler.config)
    for idx, c in enumerate(FORMATS_CASES):
        pipe.scheduler = SCHEDULERS[c["scheduler"]].from_config(dict(base, **c["overrides"]))
        g = torch.Generator().manual_seed(c["seed"])
        latents = torch.randn((len(c["prompts"]), 4, c["height"] // 8, c["width"] // 8), generator=g)
        with torch.no_grad():
            images = pipe(prompt=c["prompts"], negative_prompt=c["negative"], num_inference_steps=c["steps"],
                          guidance_scale=c["guidance"], width=c["width"], height=c["height"],
                          latents=latents.clone(), output_type="np").images
        out[f"case{idx}.latents"] = latents
        out[f"case{idx}.image"] = torch.from_numpy((images * 255).round().astype(np.uint8))
        s = SCHEDULERS[c["scheduler"]].from_config(dict(base, **c["overrides"]))
        s.set_timesteps(c["steps"])
        cases.append(dict(c, timesteps=[float(t) for t in s.timesteps], sigmas=[float(x) for x in s.sigmas]))
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(folder, "cases.safetensors"))
    with open(os.path.join(folder, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)
    record_karras_schedules()


def record_karras_schedules():
    """Timesteps and sigmas of Euler and DPM-Solver++ with Karras sigmas and both final
    sigma types, over spacings and step counts, as diffusers sets them."""
    rows = []
    for kind in ["euler", "dpmpp-2m"]:
        for spacing in ["leading", "trailing", "linspace"]:
            for final in ["zero", "sigma_min"]:
                for steps in [1, 4, 7, 25]:
                    cfg = dict(SDXL_SCHEDULER, timestep_spacing=spacing, use_karras_sigmas=True,
                               final_sigmas_type=final)
                    s = SCHEDULERS[kind].from_config(cfg)
                    s.set_timesteps(steps)
                    rows.append({"scheduler": kind, "spacing": spacing, "final_sigmas_type": final, "steps": steps,
                                 "timesteps": [float(t) for t in s.timesteps],
                                 "sigmas": [float(x) for x in s.sigmas],
                                 "init_noise_sigma": float(s.init_noise_sigma)})
    with open(os.path.join(OUT, "schedulers_karras.json"), "w") as f:
        json.dump(rows, f)


def main():
    os.makedirs(OUT, exist_ok=True)
    if sys.argv[1:] == ["--only", "formats"]:
        build_formats()
        return
    with open(os.path.join(OUT, "tokenizer_prompts.json"), "w") as f:
        json.dump(TOKENIZER_PROMPTS, f, ensure_ascii=False)
    record_schedulers()
    for seed, name in enumerate(TINY_UNETS):
        print("building", name, file=sys.stderr)
        pipe = build_pipeline(name, seed + 1)
        record_components(pipe, os.path.join(OUT, name))
        record_cases(pipe, name, os.path.join(OUT, name))
    build_formats()


if __name__ == "__main__":
    main()

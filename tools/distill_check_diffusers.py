"""Checks that diffusers loads a pruned/distilled student UNet with no missing or
unexpected weights, and that one forward pass runs (config and weights agree).

Usage: python tools/distill_check_diffusers.py STUDENT_DIR [STUDENT_DIR...]
Exit status 0 when every folder loads cleanly.
"""
import sys

import torch
from diffusers import UNet2DConditionModel


def check(folder: str) -> bool:
    model, info = UNet2DConditionModel.from_pretrained(
        folder, subfolder="unet", output_loading_info=True, low_cpu_mem_usage=False
    )
    problems = {k: v for k, v in info.items() if v}
    cfg = model.config
    print(
        f"{folder}: {sum(p.numel() for p in model.parameters()):,} parameters, "
        f"mid_block_type={cfg.mid_block_type}, "
        f"transformer_layers_per_block={cfg.transformer_layers_per_block}, "
        f"reverse={cfg.reverse_transformer_layers_per_block}"
    )
    if problems:
        print(f"  LOADING PROBLEMS: {problems}")
        return False
    # A forward pass proves the config and weights agree on every shape.
    b, s = 1, cfg.sample_size
    with torch.no_grad():
        out = model(
            torch.randn(b, cfg.in_channels, s, s),
            torch.tensor([500.0]),
            encoder_hidden_states=torch.randn(b, 7, cfg.cross_attention_dim),
            added_cond_kwargs={
                "text_embeds": torch.randn(
                    b,
                    cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim,
                ),
                "time_ids": torch.tensor([[s * 8.0, s * 8.0, 0, 0, s * 8.0, s * 8.0]]),
            },
        ).sample
    print(f"  ok: no missing, unexpected or mismatched weights; output {tuple(out.shape)}")
    return True


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    ok = all([check(f) for f in sys.argv[1:]])
    sys.exit(0 if ok else 1)

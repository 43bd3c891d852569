#!/usr/bin/env python3
"""A Versatile Diffusion folder whose U-Net configs use diffusers' per-block forms, and the dual U-Net's
outputs as diffusers computes them (issue 15, point 5).

Writes --out (default crates/versatile-diffusion/tests/fixtures/per_block):

  image_unet/   UNet2DConditionModel.save_pretrained (safetensors) at a tiny config with per-block
                `attention_head_dim` (one with 16 channels over 3 heads, so diffusers' head width 16 // 3 = 5
                and inner width 15), per-block `layers_per_block`, per-layer `transformer_layers_per_block`
                with `reverse_transformer_layers_per_block`, per-block `only_cross_attention`, a per-block
                `cross_attention_dim` list, `use_linear_projection`, `upcast_attention`, `center_input_sample`
                and `time_embedding_dim`
  text_unet/    UNetFlatConditionModel with other per-block heads, other norm groups, 1x1-conv projections, its
                own `only_cross_attention` list and `transformer_layers_per_block: 3`, which the flat down and up
                blocks ignore (one transformer block each) while its mid block reads it (three)
  vae/, scheduler/  a tiny AutoencoderKL and VD's DDIM config, so that the folder is complete
  cases.safetensors  `sample`, `context` and `out_w{0,4,10}`: the dual U-Net (diffusers'
                own _convert_to_dual_attention) at timestep 721 for text weights 0, 0.4 and 1
  cases.json    the generator's settings and the checks it made

Usage (from the repository root, with the tools/ Python of tools/setup.sh):
  python tools/versatile-diffusion/make_per_block_fixture.py --seed 0
"""
import argparse
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import (  # noqa: E402  (the shared helpers of the main generator)
    IMAGE_TOKENS,
    TEXT_TOKENS,
    accept_encoder_attention_mask,
    convert_to_dual,
    randomise,
    scheduler,
    set_mix,
    vae_config,
)

from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402
from diffusers.models.transformers.transformer_2d import Transformer2DModel  # noqa: E402
from diffusers.pipelines.deprecated.versatile_diffusion.modeling_text_unet import (  # noqa: E402
    UNetFlatConditionModel,
)

CHANNELS = [8, 16, 24]
LAYERS = [1, 2, 1]
CROSS = 16
LATENT = 8

IMAGE = dict(
    sample_size=LATENT, in_channels=4, out_channels=4, block_out_channels=CHANNELS, layers_per_block=LAYERS,
    attention_head_dim=[2, 3, 4], cross_attention_dim=[CROSS] * 3, norm_num_groups=4, norm_eps=1e-5,
    flip_sin_to_cos=True, freq_shift=0, act_fn="silu", downsample_padding=1, mid_block_scale_factor=1,
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    transformer_layers_per_block=[1, [2, 1], 2],
    reverse_transformer_layers_per_block=[[1, 1], [1, 2, 1], [2, 1]],
    only_cross_attention=[True, False, False], use_linear_projection=True, upcast_attention=True,
    center_input_sample=True, time_embedding_dim=40,
)

TEXT = dict(
    sample_size=None, in_channels=[8, 1, 1], out_channels=[8, 1, 1], block_out_channels=CHANNELS,
    layers_per_block=LAYERS, attention_head_dim=[4, 2, 6], cross_attention_dim=CROSS, norm_num_groups=2,
    norm_eps=1e-5, flip_sin_to_cos=True, freq_shift=0, act_fn="silu", downsample_padding=1,
    mid_block_scale_factor=1,
    down_block_types=["CrossAttnDownBlockFlat", "CrossAttnDownBlockFlat", "DownBlockFlat"],
    up_block_types=["UpBlockFlat", "CrossAttnUpBlockFlat", "CrossAttnUpBlockFlat"],
    transformer_layers_per_block=3, only_cross_attention=[False, True, False], use_linear_projection=False,
)


def transformer_summary(unet):
    """name -> (heads, head width, transformer blocks, norm groups, linear projection, only-cross) of every
    Transformer2DModel, to record (and check) what diffusers built."""
    out = {}
    for name, m in unet.named_modules():
        if isinstance(m, Transformer2DModel):
            block = m.transformer_blocks[0] if len(m.transformer_blocks) else None
            out[name] = dict(
                heads=m.config.num_attention_heads, head_dim=m.config.attention_head_dim,
                blocks=len(m.transformer_blocks), groups=m.norm.num_groups,
                linear=bool(m.use_linear_projection),
                only_cross=bool(block.only_cross_attention) if block is not None else None,
            )
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="crates/versatile-diffusion/tests/fixtures/per_block")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    accept_encoder_attention_mask()
    gen = torch.Generator().manual_seed(a.seed)
    shutil.rmtree(a.out, ignore_errors=True)
    os.makedirs(a.out)

    iu, tu = UNet2DConditionModel(**IMAGE), UNetFlatConditionModel(**TEXT)
    randomise(iu, gen)
    randomise(tu, gen)
    iu.save_pretrained(os.path.join(a.out, "image_unet"))
    tu.save_pretrained(os.path.join(a.out, "text_unet"))
    image_px = LATENT * 4
    vae = AutoencoderKL(**vae_config([8, 16, 16], 4, image_px))
    randomise(vae, gen)
    vae.save_pretrained(os.path.join(a.out, "vae"))
    scheduler().save_config(os.path.join(a.out, "scheduler"))

    image_summary, text_summary = transformer_summary(iu), transformer_summary(tu)
    # The quirks the Rust side must reproduce, checked here on what diffusers built.
    assert text_summary["mid_block.attentions.0"]["blocks"] == 3, text_summary
    assert all(s["blocks"] == 1 for n, s in text_summary.items() if not n.startswith("mid_block")), text_summary
    assert image_summary["down_blocks.1.attentions.0"]["blocks"] == 2, image_summary
    assert image_summary["up_blocks.1.attentions.1"]["blocks"] == 2, image_summary
    assert image_summary["down_blocks.1.attentions.0"]["head_dim"] == 5, image_summary
    assert image_summary["down_blocks.0.attentions.0"]["only_cross"], image_summary
    assert not image_summary["mid_block.attentions.0"]["only_cross"], image_summary

    iu.eval()
    tu.eval()
    convert_to_dual(iu, tu, 0.4)
    x = torch.randn(2, 4, LATENT, LATENT, generator=gen)
    ctx = torch.randn(2, TEXT_TOKENS + IMAGE_TOKENS, CROSS, generator=gen)
    t = {"sample": x, "context": ctx}
    for w in (0.0, 0.4, 1.0):
        set_mix(iu, w)
        t[f"out_w{int(w * 10)}"] = iu(x, 721, encoder_hidden_states=ctx).sample
    assert (t["out_w0"] - t["out_w10"]).abs().max() > 1e-2, "text and image transformers agree"
    save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(a.out, "cases.safetensors"))
    meta = {
        "generator": "tools/versatile-diffusion/make_per_block_fixture.py",
        "args": vars(a),
        "timestep": 721,
        "text_weights": [0.0, 0.4, 1.0],
        "image_transformers": image_summary,
        "text_transformers": text_summary,
    }
    with open(os.path.join(a.out, "cases.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    print("wrote", a.out)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""diffusers side of the `versatile-diffusion` speed comparison (called by the crate's `vd_speed` bench).

Builds diffusers' UNet2DConditionModel at the Versatile Diffusion layout with random weights, turns
it into the dual-attention U-Net with diffusers' own `_convert_to_dual_attention` (the second
transformer of each position is a copy of the first: timing does not depend on the values), and
times either one U-Net step (batch 2: CFG halves) or a whole dual-guided img2img run
(AutoencoderKL encode, DDIM over the strength's steps with CFG, decode). Prints one JSON line.

  python tools/versatile-diffusion/bench.py --mode unet-step --channels 320,640,1280,1280 --latent 64
  python tools/versatile-diffusion/bench.py --mode img2img --device cuda --dtype f16 --latent 64
"""
import argparse
import copy
import json
import statistics
import time
import types

import torch

from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from diffusers.models.transformers.dual_transformer_2d import DualTransformer2DModel
from diffusers.pipelines.deprecated.versatile_diffusion.pipeline_versatile_diffusion_dual_guided import (
    VersatileDiffusionDualGuidedPipeline,
)


def accept_encoder_attention_mask():
    # diffusers 0.42's deprecated DualTransformer2DModel.forward lacks this keyword (always None here).
    original = DualTransformer2DModel.forward

    def forward(self, hidden_states, encoder_hidden_states, *args, encoder_attention_mask=None, **kwargs):
        return original(self, hidden_states, encoder_hidden_states, *args, **kwargs)

    DualTransformer2DModel.forward = forward


def dual_unet(channels, groups, heads, cross):
    n = len(channels)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, block_out_channels=channels, layers_per_block=2,
        attention_head_dim=heads, cross_attention_dim=cross, norm_num_groups=groups, flip_sin_to_cos=True,
        freq_shift=0, down_block_types=["CrossAttnDownBlock2D"] * (n - 1) + ["DownBlock2D"],
        up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (n - 1),
    )
    copies = types.SimpleNamespace(get_submodule=lambda name: [copy.deepcopy(m) for m in unet.get_submodule(name)])
    holder = types.SimpleNamespace(
        image_unet=unet, text_unet=copies,
        text_encoder=types.SimpleNamespace(config=types.SimpleNamespace(max_position_embeddings=77)),
    )
    VersatileDiffusionDualGuidedPipeline._convert_to_dual_attention(holder)
    VersatileDiffusionDualGuidedPipeline.set_transformer_params(holder, 0.4, ("text", "image"))
    return unet


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["unet-step", "img2img"], default="unet-step")
    ap.add_argument("--channels", default="320,640,1280,1280")
    ap.add_argument("--groups", type=int, default=32)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--cross-dim", type=int, default=768)
    ap.add_argument("--vae-channels", default="128,256,512,512")
    ap.add_argument("--latent", type=int, default=64)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--strength", type=float, default=0.75)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    accept_encoder_attention_mask()
    device = torch.device(a.device)
    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[a.dtype]
    channels = [int(c) for c in a.channels.split(",")]
    unet = dual_unet(channels, a.groups, a.heads, a.cross_dim).to(device, dtype).eval()
    ctx = torch.randn(a.batch, 77 + 257, a.cross_dim, device=device, dtype=dtype)
    times = []
    if a.mode == "unet-step":
        x = torch.randn(a.batch, 4, a.latent, a.latent, device=device, dtype=dtype)
        unet(x, 721, encoder_hidden_states=ctx)  # warm-up
        for _ in range(a.iters):
            sync(device)
            t0 = time.perf_counter()
            unet(x, 721, encoder_hidden_states=ctx)
            sync(device)
            times.append(time.perf_counter() - t0)
    else:
        vch = [int(c) for c in a.vae_channels.split(",")]
        vae = AutoencoderKL(block_out_channels=vch, layers_per_block=2, latent_channels=4, norm_num_groups=a.groups,
                            down_block_types=["DownEncoderBlock2D"] * len(vch),
                            up_block_types=["UpDecoderBlock2D"] * len(vch)).to(device, dtype).eval()
        px = a.latent * 2 ** (len(vch) - 1)
        sch = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                            set_alpha_to_one=False, steps_offset=1)
        image = torch.rand(1, 3, px, px, device=device, dtype=dtype) * 2 - 1

        def run(steps, strength):
            z0 = vae.encode(image).latent_dist.sample() * vae.config.scaling_factor
            sch.set_timesteps(steps, device=device)
            start = steps - min(int(steps * strength), steps)
            ts = sch.timesteps[start:]
            lat = sch.add_noise(z0, torch.randn_like(z0), ts[:1])
            c = ctx[:2]
            for t in ts:
                e = unet(torch.cat([lat, lat]), t, encoder_hidden_states=c).sample
                eu, ec = e.chunk(2)
                lat = sch.step(eu + 7.5 * (ec - eu), t, lat).prev_sample
            out = vae.decode(lat / vae.config.scaling_factor).sample
            return ((out / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).cpu(), len(ts)

        run(2, 1.0)  # warm-up
        for _ in range(a.iters):
            sync(device)
            t0 = time.perf_counter()
            _, n_steps = run(a.steps, a.strength)
            sync(device)
            times.append(time.perf_counter() - t0)
    result = {"impl": "diffusers", "mode": a.mode, "median_s": statistics.median(times), "min_s": min(times),
              "iters": a.iters, "device": a.device, "dtype": a.dtype, "torch": torch.__version__}
    if device.type == "cuda":
        result["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    print(json.dumps(result))


if __name__ == "__main__":
    main()

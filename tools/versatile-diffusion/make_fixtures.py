#!/usr/bin/env python3
"""Parity fixtures for the `versatile-diffusion` crate, produced with the real diffusers classes.

Writes, under --out (default crates/versatile-diffusion/tests/fixtures):

  tiny/                 a tiny random-weight Versatile Diffusion checkpoint in the diffusers folder layout
    image_unet/         UNet2DConditionModel.save_pretrained (config.json + zip-format .bin)
    text_unet/          UNetFlatConditionModel.save_pretrained (the VD text U-Net class itself)
    vae/                AutoencoderKL, .bin re-saved with the *legacy* mid-block attention names
                        (query/key/value/proj_attn), as in shi-labs/versatile-diffusion; the generator
                        checks that diffusers loads it back unchanged
    scheduler/          DDIMScheduler.save_config (VD's scheduler_config.json values)
  tiny/cases.safetensors  inputs (including every random draw) and expected outputs:
    unet_*          dual U-Net forward (after diffusers' own _convert_to_dual_attention) for text weights 0, 0.4, 1
    vae_*           encode (posterior mean, logvar) and decode
    ddim_*          timesteps, alphas_cumprod, single steps with eta 0 and eta 0.5 (supplied variance noise), add_noise
    img2img_*       a few-step dual-guided img2img with CFG and supplied noise, both noise-timestep conventions
  tiny/cases.json       the scalar settings of those cases
  full/                 configs of the real checkpoint and manifests (name -> shape) of the diffusers models at
                        full size, built on the meta device (no weights allocated):
    dual_unet_manifest.json  image U-Net after dual conversion (transformers.0 image / transformers.1 text)
    vae_manifest.json        AutoencoderKL (current diffusers names)

Usage (the tiny configuration is given on the command line; defaults shown):
  python tools/versatile-diffusion/make_fixtures.py --channels 8,16,16 --layers-per-block 2 \
      --heads 2 --groups 4 --cross-dim 16 --latent 16 --vae-channels 8,16,16 --vae-groups 4 --seed 0
"""
import argparse
import json
import os
import shutil
import types

import torch
from safetensors.torch import save_file

from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from diffusers.models.transformers.dual_transformer_2d import DualTransformer2DModel
from diffusers.pipelines.deprecated.versatile_diffusion.modeling_text_unet import UNetFlatConditionModel
from diffusers.pipelines.deprecated.versatile_diffusion.pipeline_versatile_diffusion_dual_guided import (
    VersatileDiffusionDualGuidedPipeline,
)

TEXT_TOKENS, IMAGE_TOKENS = 77, 257


def ints(s):
    return [int(v) for v in s.split(",")]


def image_unet_config(ch, lpb, heads, groups, cross, sample):
    n = len(ch)
    return dict(
        sample_size=sample, in_channels=4, out_channels=4, block_out_channels=ch, layers_per_block=lpb,
        attention_head_dim=heads, cross_attention_dim=cross, norm_num_groups=groups, norm_eps=1e-5,
        flip_sin_to_cos=True, freq_shift=0, act_fn="silu", downsample_padding=1, mid_block_scale_factor=1,
        down_block_types=["CrossAttnDownBlock2D"] * (n - 1) + ["DownBlock2D"],
        up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (n - 1),
    )


def text_unet_config(ch, lpb, heads, groups, cross, in_features):
    n = len(ch)
    return dict(
        sample_size=None, in_channels=[in_features, 1, 1], out_channels=[in_features, 1, 1],
        block_out_channels=ch, layers_per_block=lpb, attention_head_dim=heads, cross_attention_dim=cross,
        norm_num_groups=groups, norm_eps=1e-5, flip_sin_to_cos=True, freq_shift=0, act_fn="silu",
        downsample_padding=1, mid_block_scale_factor=1,
        down_block_types=["CrossAttnDownBlockFlat"] * (n - 1) + ["DownBlockFlat"],
        up_block_types=["UpBlockFlat"] + ["CrossAttnUpBlockFlat"] * (n - 1),
    )


def vae_config(ch, groups, sample):
    n = len(ch)
    return dict(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=ch, layers_per_block=2,
        norm_num_groups=groups, act_fn="silu", sample_size=sample,
        down_block_types=["DownEncoderBlock2D"] * n, up_block_types=["UpDecoderBlock2D"] * n,
    )


def scheduler():
    return DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1, trained_betas=None,
    )


def randomise(model, gen):
    """Every parameter gets a seeded random value (norm weights near 1) so that any wrong wiring shows."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and ("norm" in name or name.endswith("bias")):
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = p[0].numel() if p.dim() > 1 else p.numel()
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in**0.5)


def convert_to_dual(image_unet, text_unet, text_weight):
    """diffusers' own conversion and mixing setup, run on a stand-in for the pipeline object."""
    holder = types.SimpleNamespace(
        image_unet=image_unet, text_unet=text_unet,
        text_encoder=types.SimpleNamespace(config=types.SimpleNamespace(max_position_embeddings=TEXT_TOKENS)),
    )
    VersatileDiffusionDualGuidedPipeline._convert_to_dual_attention(holder)
    VersatileDiffusionDualGuidedPipeline.set_transformer_params(holder, text_weight, ("text", "image"))
    return holder


def accept_encoder_attention_mask():
    """diffusers 0.42's deprecated DualTransformer2DModel.forward lacks the `encoder_attention_mask` keyword
    that today's CrossAttn blocks pass (always None here), so the dual U-Net cannot run as shipped. This shim
    drops that keyword and otherwise calls diffusers' own forward unchanged."""
    original = DualTransformer2DModel.forward

    def forward(self, hidden_states, encoder_hidden_states, *args, encoder_attention_mask=None, **kwargs):
        assert encoder_attention_mask is None
        return original(self, hidden_states, encoder_hidden_states, *args, **kwargs)

    DualTransformer2DModel.forward = forward


def set_mix(unet, text_weight):
    for m in unet.modules():
        if isinstance(m, DualTransformer2DModel):
            m.mix_ratio = text_weight


LEGACY = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def to_legacy_vae_names(sd):
    out = {}
    for k, v in sd.items():
        nk = k
        if ".mid_block.attentions." in k:
            for new, old in LEGACY.items():
                if f".{new}." in k:
                    nk = k.replace(f".{new}.", f".{old}.")
        out[nk] = v
    return out


def manifest(model):
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def write_full(out):
    """Full-size configs and name/shape manifests, on the meta device (nothing allocated)."""
    full = os.path.join(out, "full")
    os.makedirs(full, exist_ok=True)
    ch = [320, 640, 1280, 1280]
    icfg = image_unet_config(ch, 2, 8, 32, 768, 64)
    tcfg = text_unet_config(ch, 2, 8, 32, 768, 768)
    vcfg = vae_config([128, 256, 512, 512], 32, 256)
    with torch.device("meta"):
        iu = UNet2DConditionModel(**icfg)
        tu = UNetFlatConditionModel(**tcfg)
        vae = AutoencoderKL(**vcfg)
    convert_to_dual(iu, tu, 0.4)
    for name, cfg, model in [("image_unet", icfg, iu), ("text_unet", tcfg, tu), ("vae", vcfg, vae)]:
        os.makedirs(os.path.join(full, name), exist_ok=True)
        with open(os.path.join(full, name, "config.json"), "w") as f:
            json.dump(dict(cfg, _class_name=type(model).__name__), f, indent=1)
    with open(os.path.join(full, "dual_unet_manifest.json"), "w") as f:
        json.dump(manifest(iu), f, indent=0, sort_keys=True)
    with open(os.path.join(full, "vae_manifest.json"), "w") as f:
        json.dump(manifest(vae), f, indent=0, sort_keys=True)
    os.makedirs(os.path.join(full, "scheduler"), exist_ok=True)
    scheduler().save_config(os.path.join(full, "scheduler"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="crates/versatile-diffusion/tests/fixtures")
    ap.add_argument("--channels", type=ints, default=[8, 16, 16])
    ap.add_argument("--layers-per-block", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2, help="attention_head_dim as diffusers reads it (= heads)")
    ap.add_argument("--groups", type=int, default=4)
    ap.add_argument("--cross-dim", type=int, default=16)
    ap.add_argument("--latent", type=int, default=16)
    ap.add_argument("--vae-channels", type=ints, default=[8, 16, 16])
    ap.add_argument("--vae-groups", type=int, default=4)
    ap.add_argument("--img2img-steps", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    accept_encoder_attention_mask()
    gen = torch.Generator().manual_seed(a.seed)
    tiny = os.path.join(a.out, "tiny")
    shutil.rmtree(tiny, ignore_errors=True)
    os.makedirs(tiny)
    t = {}
    meta = {"generator": "tools/versatile-diffusion/make_fixtures.py", "args": vars(a)}

    # --- checkpoint folders -------------------------------------------------------------------------
    icfg = image_unet_config(a.channels, a.layers_per_block, a.heads, a.groups, a.cross_dim, a.latent)
    tcfg = text_unet_config(a.channels, a.layers_per_block, a.heads, a.groups, a.cross_dim, 8)
    iu, tu = UNet2DConditionModel(**icfg), UNetFlatConditionModel(**tcfg)
    randomise(iu, gen)
    randomise(tu, gen)
    iu.save_pretrained(os.path.join(tiny, "image_unet"), safe_serialization=False)
    tu.save_pretrained(os.path.join(tiny, "text_unet"), safe_serialization=False)
    vae_ch = a.vae_channels
    image_px = a.latent * 2 ** (len(vae_ch) - 1)
    vae = AutoencoderKL(**vae_config(vae_ch, a.vae_groups, image_px))
    randomise(vae, gen)
    vae.eval()
    vdir = os.path.join(tiny, "vae")
    vae.save_pretrained(vdir, safe_serialization=False)
    legacy = to_legacy_vae_names(vae.state_dict())
    assert any(".query." in k for k in legacy), "no legacy attention names produced"
    torch.save(legacy, os.path.join(vdir, "diffusion_pytorch_model.bin"))
    reloaded = AutoencoderKL.from_pretrained(vdir)
    for k, v in vae.state_dict().items():
        assert torch.equal(v, reloaded.state_dict()[k]), f"diffusers did not map legacy name back: {k}"
    scheduler().save_config(os.path.join(tiny, "scheduler"))
    sch = DDIMScheduler.from_pretrained(os.path.join(tiny, "scheduler"))

    # --- dual U-Net forward ---------------------------------------------------------------------------
    iu.eval()
    tu.eval()
    convert_to_dual(iu, tu, 0.4)
    ctx_dim = a.cross_dim
    x = torch.randn(2, 4, a.latent, a.latent, generator=gen)
    ctx = torch.randn(2, TEXT_TOKENS + IMAGE_TOKENS, ctx_dim, generator=gen)
    t["unet_sample"], t["unet_context"] = x, ctx
    for w in (0.0, 0.4, 1.0):
        set_mix(iu, w)
        t[f"unet_out_w{int(w * 10)}"] = iu(x, 721, encoder_hidden_states=ctx).sample
    meta["unet"] = {"timestep": 721, "text_weights": [0.0, 0.4, 1.0]}

    # --- AutoencoderKL --------------------------------------------------------------------------------
    img = torch.rand(1, 3, image_px, image_px, generator=gen) * 2 - 1
    post = vae.encode(img).latent_dist
    t["vae_image"], t["vae_mean"], t["vae_logvar"] = img, post.mean, post.logvar
    z = torch.randn(1, 4, a.latent, a.latent, generator=gen)
    t["vae_z"], t["vae_decoded"] = z, vae.decode(z).sample

    # --- DDIM -------------------------------------------------------------------------------------------
    sch.set_timesteps(50)
    t["ddim_timesteps_50"] = sch.timesteps.to(torch.int64)
    t["ddim_alphas_cumprod"] = sch.alphas_cumprod
    xs = torch.randn(1, 4, 8, 8, generator=gen)
    eps = torch.randn(1, 4, 8, 8, generator=gen)
    vn = torch.randn(1, 4, 8, 8, generator=gen)
    t["ddim_x"], t["ddim_eps"], t["ddim_variance_noise"] = xs, eps, vn
    for tt in (981, 721, 1):
        t[f"ddim_step_t{tt}_eta0"] = sch.step(eps, tt, xs, eta=0.0).prev_sample
        t[f"ddim_step_t{tt}_eta5"] = sch.step(eps, tt, xs, eta=0.5, variance_noise=vn).prev_sample
    t["ddim_add_noise_t721"] = sch.add_noise(xs, eps, torch.tensor([721]))
    sch.set_timesteps(7)  # a count that does not divide 1000
    t["ddim_timesteps_7"] = sch.timesteps.to(torch.int64)
    meta["ddim"] = {"step_timesteps": [981, 721, 1], "eta": [0.0, 0.5], "steps": [50, 7]}

    # --- img2img, diffusers' StableDiffusionImg2Img timestep logic with the dual U-Net ----------------
    n_steps, strength, guidance, text_w = a.img2img_steps, 0.75, 7.5, 0.4
    init_u8 = torch.randint(0, 256, (1, image_px, image_px, 3), generator=gen, dtype=torch.uint8)
    vis = torch.randn(1, IMAGE_TOKENS, ctx_dim, generator=gen)
    txt = torch.randn(1, TEXT_TOKENS, ctx_dim, generator=gen)
    nvis = torch.randn(1, IMAGE_TOKENS, ctx_dim, generator=gen)
    ntxt = torch.randn(1, TEXT_TOKENS, ctx_dim, generator=gen)
    post_eps = torch.randn(1, 4, a.latent, a.latent, generator=gen)
    noise = torch.randn(1, 4, a.latent, a.latent, generator=gen)
    t.update(img2img_init=init_u8, img2img_vision=vis, img2img_text=txt, img2img_neg_vision=nvis,
             img2img_neg_text=ntxt, img2img_posterior_noise=post_eps, img2img_noise=noise)
    set_mix(iu, text_w)
    x0 = init_u8.permute(0, 3, 1, 2).float() / 255.0 * 2 - 1
    post = vae.encode(x0).latent_dist
    z0 = (post.mean + post.std * post_eps) * vae.config.scaling_factor
    # the uncond half first, like diffusers; per half the context is cat(text, vision)
    ctx = torch.cat([torch.cat([ntxt, nvis], 1), torch.cat([txt, vis], 1)], 0)
    for mode in ("diffusers", "brain_diffuser"):
        sch.set_timesteps(n_steps)
        init_timestep = min(int(n_steps * strength), n_steps)
        t_start = max(n_steps - init_timestep, 0)
        steps = sch.timesteps[t_start:]
        # brain-diffuser (CompVis img2img): noised one DDIM step above the first denoised step
        t_noise = steps[:1] if mode == "diffusers" else sch.timesteps[t_start - 1 : t_start]
        lat = sch.add_noise(z0, noise, t_noise)
        for tt in steps:
            e = iu(torch.cat([lat, lat]), tt, encoder_hidden_states=ctx).sample
            eu, ec = e.chunk(2)
            lat = sch.step(eu + guidance * (ec - eu), tt, lat).prev_sample
        out = vae.decode(lat / vae.config.scaling_factor).sample
        t[f"img2img_{mode}_latents"] = lat
        t[f"img2img_{mode}_decoded"] = out
        img01 = (out / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
        t[f"img2img_{mode}_u8_round"] = (img01 * 255).round().to(torch.uint8)
        t[f"img2img_{mode}_u8_trunc"] = (img01 * 255).to(torch.uint8)
        meta[f"img2img_{mode}"] = {"t_noise": int(t_noise[0]), "timesteps": [int(v) for v in steps]}
    meta["img2img"] = {"steps": n_steps, "strength": strength, "guidance": guidance, "text_weight": text_w,
                       "image_px": image_px}

    save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(tiny, "cases.safetensors"))
    with open(os.path.join(tiny, "cases.json"), "w") as f:
        json.dump(meta, f, indent=1)
    write_full(a.out)
    print("wrote", a.out)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The reference side of `benches/whole_step.rs`: the original code's per-image loops at full model
size with random weights, timed on the inputs our bench run wrote. Prints one JSON line.

  reconstruct  VersatileDiffusionDualGuidedPipeline-equivalent img2img, one image at a time (the
               reference's batch 1): diffusers' dual-attention U-Net (tools/versatile-diffusion/bench.py)
               and AutoencoderKL at Versatile Diffusion's configuration, DDIM over the strength's steps,
               the unconditional and conditional halves batched as 2 per step (classifier-free guidance),
               then decode and a PNG per image. Inputs: the stage-1 PNGs and the predicted CLIP
               embeddings of our run (`--subject-dir`), the same images and rows our `reconstruct` used.
  extract      the reference's feature loops over the stimuli our `extract` encoded (`--images`, PNGs):
               CLIP-Vision one image per forward (clipvision_extract_features.py), CLIP-Text the captions
               of one image per forward (cliptext_extract_features.py; random token ids, since the CLIP
               vocabulary cannot be downloaded here, which changes no timing), and, with `--vdvae-repo`
               (a checkout of openai/vdvae), VDVAE encoder + full posterior pass in batches of 30
               (vdvae_extract_features.py). Without `--vdvae-repo` the VDVAE row is not measured.

  python tools/brain-diffuser/whole_step_reference.py reconstruct --subject-dir RUN/subj01 --steps 50 --strength 0.04
  python tools/brain-diffuser/whole_step_reference.py extract --images DIR --captions 5 --vdvae-repo /path/to/vdvae
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "versatile-diffusion"))
from bench import accept_encoder_attention_mask, dual_unet, sync  # noqa: E402


def timed(device, fn):
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


def reconstruct(a, device, dtype):
    from diffusers import AutoencoderKL, DDIMScheduler

    accept_encoder_attention_mask()
    built = time.perf_counter()
    unet = dual_unet([320, 640, 1280, 1280], 32, 8, 768).to(device, dtype).eval()
    vae = AutoencoderKL(block_out_channels=[128, 256, 512, 512], layers_per_block=2, latent_channels=4,
                        norm_num_groups=32, down_block_types=["DownEncoderBlock2D"] * 4,
                        up_block_types=["UpDecoderBlock2D"] * 4).to(device, dtype).eval()
    sch = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                        set_alpha_to_one=False, steps_offset=1)
    build_s = time.perf_counter() - built
    predicted = os.path.join(a.subject_dir, "predicted")
    vision = np.load(os.path.join(predicted, "clip-vision.npy")).reshape(-1, 257, 768)
    text = np.load(os.path.join(predicted, "clip-text.npy")).reshape(-1, 77, 768)
    stage1 = os.path.join(a.subject_dir, "reconstructions", "only-vdvae")
    names = sorted(f for f in os.listdir(stage1) if f.endswith(".png"))[: a.images or None]
    out_dir = a.out
    os.makedirs(out_dir, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    # The unconditional context (empty caption, grey image) is computed once per run by the reference.
    negative = torch.randn(1, 77 + 257, 768, generator=g).to(device, dtype)

    def one(i, name):
        init = Image.open(os.path.join(stage1, name)).convert("RGB").resize((512, 512), resample=Image.BICUBIC)
        x = torch.from_numpy(np.asarray(init).copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
        x = x.to(device, dtype)
        ctx = torch.from_numpy(np.concatenate([text[i], vision[i]])[None]).to(device, dtype)
        z0 = vae.encode(x).latent_dist.sample() * vae.config.scaling_factor
        sch.set_timesteps(a.steps, device=device)
        start = a.steps - min(int(a.steps * a.strength), a.steps)
        ts = sch.timesteps[start:]
        lat = sch.add_noise(z0, torch.randn_like(z0), ts[:1])
        c = torch.cat([negative, ctx])
        for t in ts:
            e = unet(torch.cat([lat, lat]), t, encoder_hidden_states=c).sample
            eu, ec = e.chunk(2)
            lat = sch.step(eu + a.guidance * (ec - eu), t, lat).prev_sample
        out = vae.decode(lat / vae.config.scaling_factor).sample
        pixels = ((out / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)[0].permute(1, 2, 0).cpu().numpy()
        Image.fromarray(pixels).save(os.path.join(out_dir, name))
        return len(ts)

    with torch.no_grad():
        one(0, names[0])  # warm-up, as our side loads and checks before its first image
        steps, seconds = 0, []
        for i, name in enumerate(names):
            n, s = timed(device, lambda: one(i, name))
            steps, _ = n, seconds.append(s)
    result = {"impl": "diffusers", "mode": "reconstruct", "images": len(names), "denoising_steps": steps,
              "seconds": sum(seconds), "per_image_s": seconds, "build_s": build_s}
    return result


def clip_configs():
    from transformers import CLIPTextConfig, CLIPVisionConfig

    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                              num_attention_heads=16, image_size=224, patch_size=14, projection_dim=768,
                              hidden_act="quick_gelu")
    text = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                          num_attention_heads=12, max_position_embeddings=77, projection_dim=768,
                          hidden_act="quick_gelu")
    return vision, text


def extract(a, device, dtype):
    from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

    names = sorted(f for f in os.listdir(a.images) if f.endswith(".png"))
    images = [Image.open(os.path.join(a.images, f)).convert("RGB") for f in names]
    vision_config, text_config = clip_configs()
    vision = CLIPVisionModelWithProjection(vision_config).to(device, dtype).eval()
    text = CLIPTextModelWithProjection(text_config).to(device, dtype).eval()
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711], device=device).view(1, 3, 1, 1)
    g = torch.Generator().manual_seed(0)
    result = {"impl": "reference loops", "mode": "extract", "images": len(images)}

    def clip_vision(image):
        # clipvision_extract_features.py: resize to 512, then VD's CLIP preprocessing (224) and tower,
        # every token projected and scaled by the CLS token's norm.
        x = torch.from_numpy(np.asarray(image.resize((512, 512), Image.BILINEAR)).copy()).permute(2, 0, 1)[None]
        x = torch.nn.functional.interpolate(x.float().to(device) / 255, size=(224, 224), mode="bicubic")
        out = vision.vision_model(pixel_values=((x - mean) / std).to(dtype))
        tokens = vision.visual_projection(vision.vision_model.post_layernorm(out.last_hidden_state))
        return (tokens / tokens[:, :1].norm(dim=-1, keepdim=True)).float().cpu()

    def clip_text(_image):
        ids = torch.randint(0, 49406, (a.captions, 77), generator=g).to(device)
        out = text.text_model(input_ids=ids)
        tokens = text.text_projection(out.last_hidden_state)
        pooled = tokens[torch.arange(a.captions), ids.argmax(-1)]
        return (tokens / pooled.norm(dim=-1, keepdim=True)[:, None]).mean(0).float().cpu()

    with torch.no_grad():
        for label, fn in [("clip_vision_s", clip_vision), ("clip_text_s", clip_text)]:
            fn(images[0])  # warm-up
            _, result[label] = timed(device, lambda: [fn(im) for im in images])
        if a.vdvae_repo:
            result["vdvae_s"] = vdvae_extract(a, device, images)
    return result


def vdvae_extract(a, device, images):
    sys.path.insert(0, a.vdvae_repo)
    from hps import HPARAMS_REGISTRY, Hyperparams
    from vae import VAE

    H = Hyperparams()
    H.update(HPARAMS_REGISTRY["imagenet64"])
    H.update(image_size=64, image_channels=3, custom_width_str="", bottleneck_multiple=0.25, no_bias_above=64,
             num_mixtures=10, zdim=16, width=512)
    torch.manual_seed(0)
    vae = VAE(H).to(device).eval()
    # vdvae_extract_features.py: 64x64 images, normalised with ImageNet-64's shift and scale, batches of 30.
    x = np.stack([np.asarray(im.resize((64, 64), Image.BILINEAR)) for im in images]).astype(np.float32)
    x = torch.from_numpy((x - 115.92961967) / 69.37404)

    def run():
        for start in range(0, len(x), 30):
            batch = x[start:start + 30].to(device)
            activations = vae.encoder.forward(batch)
            _, stats = vae.decoder.forward(activations, get_latents=True)
            [s["z"][:, :16].cpu() for s in stats[:31]]

    run_first = x[:1]
    vae.decoder.forward(vae.encoder.forward(run_first.to(device)), get_latents=True)  # warm-up
    return timed(device, run)[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["reconstruct", "extract"])
    ap.add_argument("--subject-dir", help="reconstruct: our run's subject folder (predicted/, reconstructions/)")
    ap.add_argument("--out", default="/tmp/whole-step-reference", help="reconstruct: where its PNGs go")
    ap.add_argument("--images", default=None, help="extract: folder of stimulus PNGs; reconstruct: how many")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--strength", type=float, default=0.75)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--captions", type=int, default=5)
    ap.add_argument("--vdvae-repo", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32")
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    device = torch.device(a.device)
    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[a.dtype]
    if a.mode == "reconstruct":
        a.images = int(a.images) if a.images else 0
        result = reconstruct(a, device, dtype)
    else:
        result = extract(a, device, dtype)
    result.update(device=a.device, dtype=a.dtype, torch=torch.__version__, threads=torch.get_num_threads())
    if device.type == "cuda":
        result["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    print(json.dumps(result))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Writes the Pillow-exact resampling fixtures and the CLIP-Vision adapter's reference features.

Two fixture sets, both from real photographs that ship with scikit-image (``skimage.data``),
centre-cropped to a square and resized with Pillow (BICUBIC) to 425x425, the size of the NSD
stimuli:

* ``resample`` -> ``crates/pil-resample/tests/fixtures/``: ``<photo>_425.png`` (the sources) and
  ``cases.json``: every resize the pipeline makes, in the order it makes them, run by Pillow (through
  torchvision's PIL path where the reference calls torchvision), each output's FNV-1a-64 hash of its
  RGB bytes, and the 64x64 outputs as ``<photo>_vdvae_64.png``. A case's input is a source or the
  output of an earlier case, so every size pair is exercised on photographic content:
    - ``clipvision_512``: 425 -> 512, ``torchvision.transforms.functional.resize(pil, 512)`` (BILINEAR;
      torchvision's ``antialias`` is ignored for PIL images, Pillow always widens the support when
      shrinking); ``clipvision_extract_features.py``.
    - ``vdvae_64``: 425 -> 64, ``resize(pil, (64, 64))`` (BILINEAR); ``vdvae_extract_features.py``.
    - ``upscale_512``: 64 -> 512, ``Image.resize((512, 512), resample=3)`` (BICUBIC); stage 1's output.
    - ``pixcorr_425``: 512 -> 425, ``Image.resize((425, 425))`` (Pillow's default for RGB: BICUBIC), from
      ``upscale_512`` and from ``clipvision_512``; PixCorr in ``eval_extract_features.py``.
    - ``network_224``: 512 -> 224 and 425 -> 224, ``resize(pil, (224, 224))`` (BILINEAR); the metric networks.
    - ``clip_224``: 512 -> 224 BICUBIC, the shortest-side resize of CLIP's processor.
* ``clip-vision`` -> ``tests/fixtures/clip_vision/``: a tiny random-weight
  ``CLIPVisionModelWithProjection`` (``image_encoder/``, safetensors, 224 px input as ViT-L/14) and
  ``expected.safetensors``: the reference's CLIP-Vision feature extraction replayed on the 425x425
  sources of the first set (``clipvision_extract_features.py`` + Versatile Diffusion's
  ``clip_encode_vision``): PIL image -> torchvision ``resize(pil, 512)`` -> ``to_tensor`` -> ``* 2 - 1`` ->
  ``(x + 1) / 2`` -> NHWC numpy -> transformers 4.19's float-to-PIL (``* 255``, truncating ``astype(uint8)``)
  -> CLIP's processor (shortest side 224 bicubic, centre crop 224, /255, CLIP mean/std) -> the vision
  tower -> post layer norm on every token -> visual projection -> divided by the projected CLS
  token's norm. Run ``resample`` first.

Run from the repository root with the tools Python (``PY=$(tools/setup.sh)``):
    $PY tools/pil-resample/make_fixtures.py --what resample
    $PY tools/pil-resample/make_fixtures.py --what clip-vision
"""

import argparse
import json
import os

import numpy as np
import PIL
import skimage
import skimage.data
import torch
import torchvision
import torchvision.transforms.functional as TF
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

PHOTOS = ["astronaut", "rocket"]
RESAMPLE_DIR = "crates/pil-resample/tests/fixtures"
CLIP_DIR = "tests/fixtures/clip_vision"


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def stimulus(name):
    """A 425x425 RGB stimulus from a scikit-image photograph: centre square, Pillow bicubic."""
    arr = getattr(skimage.data, name)()[..., :3]
    h, w = arr.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return Image.fromarray(np.ascontiguousarray(arr[top : top + s, left : left + s])).resize((425, 425), Image.BICUBIC)


def torchvision_resize(pil, size, expect_filter):
    """torchvision's PIL path, checked to be exactly Pillow's resize with `expect_filter`."""
    out = TF.resize(pil, size)
    side = (size, size) if isinstance(size, int) else (size[1], size[0])
    assert out.tobytes() == pil.resize(side, expect_filter).tobytes(), "torchvision's PIL resize is not Pillow's"
    return out


def make_resample(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    cases = []
    for photo in PHOTOS:
        src = stimulus(photo)
        src.save(os.path.join(out_dir, f"{photo}_425.png"), optimize=True)
        images = {"source": src}

        def case(name, input_name, filter_name, size, via, image):
            assert image.size == tuple(size) and image.mode == "RGB"
            images[name] = image
            cases.append({"photo": photo, "name": name, "input": input_name, "filter": filter_name,
                          "size": list(size), "via": via, "fnv1a64": fnv1a64(image.tobytes())})

        case("clipvision_512", "source", "bilinear", (512, 512), "torchvision resize(pil, 512)",
             torchvision_resize(src, 512, Image.BILINEAR))
        case("vdvae_64", "source", "bilinear", (64, 64), "torchvision resize(pil, (64, 64))",
             torchvision_resize(src, (64, 64), Image.BILINEAR))
        images["vdvae_64"].save(os.path.join(out_dir, f"{photo}_vdvae_64.png"))
        case("upscale_512", "vdvae_64", "bicubic", (512, 512), "Image.resize((512, 512), resample=3)",
             images["vdvae_64"].resize((512, 512), resample=3))
        case("pixcorr_425", "upscale_512", "bicubic", (425, 425), "Image.resize((425, 425))",
             images["upscale_512"].resize((425, 425)))
        case("pixcorr_425_from_clipvision", "clipvision_512", "bicubic", (425, 425), "Image.resize((425, 425))",
             images["clipvision_512"].resize((425, 425)))
        case("network_224", "upscale_512", "bilinear", (224, 224), "torchvision resize(pil, (224, 224))",
             torchvision_resize(images["upscale_512"], (224, 224), Image.BILINEAR))
        case("network_224_from_source", "source", "bilinear", (224, 224), "torchvision resize(pil, (224, 224))",
             torchvision_resize(src, (224, 224), Image.BILINEAR))
        case("clip_224", "clipvision_512", "bicubic", (224, 224), "Image.resize((224, 224), BICUBIC)",
             images["clipvision_512"].resize((224, 224), Image.BICUBIC))
    meta = {"pillow": PIL.__version__, "torchvision": torchvision.__version__, "scikit_image": skimage.__version__,
            "photos": PHOTOS, "hash": "FNV-1a 64 of the row-major RGB bytes", "cases": cases}
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"resample: {len(PHOTOS)} photos, {len(cases)} cases")


def reference_pixel_values(pil, processor):
    """clipvision_extract_features.py + VD clip_encode_vision + transformers 4.19's float path."""
    x = TF.to_tensor(TF.resize(pil, 512)) * 2 - 1  # the script's input to clip_encode_vision
    x = (x + 1) / 2  # clip_encode_vision undoes the [-1, 1] map ...
    hwc = x.permute(1, 2, 0).numpy()  # ... and hands NHWC float32 arrays to the processor,
    u8 = (hwc * 255).astype(np.uint8)  # which (4.19) multiplies floats by 255 and truncates to uint8
    return processor(images=Image.fromarray(u8), return_tensors="pt")["pixel_values"]


def make_clip_vision(out_dir, seed):
    folder = os.path.join(out_dir, "image_encoder")
    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(seed)
    config = CLIPVisionConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                              image_size=224, patch_size=32, hidden_act="quick_gelu", projection_dim=8)
    model = CLIPVisionModelWithProjection(config).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # every parameter off its neutral value (layer norms, biases too)
        for _, p in model.named_parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    model.save_pretrained(folder, safe_serialization=True)
    processor = CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    stimuli = [os.path.join(RESAMPLE_DIR, f"{p}_425.png") for p in PHOTOS]
    pixel_values = torch.cat([reference_pixel_values(Image.open(s).convert("RGB"), processor) for s in stimuli])
    with torch.no_grad():
        h = model.vision_model(pixel_values=pixel_values).last_hidden_state
        z = model.visual_projection(model.vision_model.post_layernorm(h))
        vd_vision = z / torch.norm(z[:, 0:1], dim=-1, keepdim=True)
    save_file({"vd_vision": vd_vision.contiguous()}, os.path.join(out_dir, "expected.safetensors"))
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump({"stimuli": stimuli, "resize_to": 512, "pillow": PIL.__version__,
                   "torchvision": torchvision.__version__, "shape": list(vd_vision.shape)}, f, indent=1)
    print(f"clip-vision: {len(stimuli)} stimuli, features {tuple(vd_vision.shape)}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--what", required=True, choices=["resample", "clip-vision"])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.what == "resample":
        make_resample(RESAMPLE_DIR)
    else:
        make_clip_vision(CLIP_DIR, args.seed)


if __name__ == "__main__":
    main()

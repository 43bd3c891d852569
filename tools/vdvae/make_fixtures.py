"""Writes the vdvae crate's own fixtures (the model fixtures come from /work/shared/fixtures/vdvae).

1. pillow-resample.safetensors: random RGB uint8 images of several sizes and what the reference
   preprocessing makes of them: `torchvision.transforms.functional.resize(PIL image, (64, 64))`
   (bilinear with Pillow's antialiasing, as brain-diffuser's dataset class calls it), plus the
   Pillow BICUBIC upscale of a 64x64 image to 512x512 (`Image.resize((512, 512), resample=3)`),
   which brain-diffuser applies to every VDVAE reconstruction.
2. tiny-weights-module.th: the tiny random model's state dict written by `torch.save` (zip format)
   with every key prefixed by `module.`, as a DistributedDataParallel-wrapped model saves it.

Usage (the sizes are the tiny configuration; defaults reproduce the committed files):
    python tools/vdvae/make_fixtures.py --out crates/vdvae/tests/fixtures \
        --sizes 425x425,37x53,64x64,16x200,30x20 --upscale 64:512 --seed 0
"""

import argparse
import json
import os

import numpy as np
import PIL
import torch
import torchvision
import torchvision.transforms.functional as TF
from PIL import Image
from safetensors.torch import load_file, save_file
from safetensors import safe_open


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--sizes", default="425x425,37x53,64x64,16x200,30x20",
                    help="comma-separated HEIGHTxWIDTH of the inputs resized to the target")
    ap.add_argument("--target", type=int, default=64)
    ap.add_argument("--upscale", default="64:512", help="SRC:DST of the bicubic upscale")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tiny-weights", default=None,
                    help="tiny-weights.safetensors to re-save as a module.-prefixed .th "
                         "(default: OUT/tiny-weights.safetensors)")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)

    tensors = {}
    sizes = []
    for i, s in enumerate(args.sizes.split(",")):
        h, w = (int(v) for v in s.split("x"))
        # Smooth structure plus noise, so that both the filter weights and the rounding matter.
        yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
        base = np.stack([np.sin(6 * xx + c) * np.cos(4 * yy - c) for c in range(3)], -1)
        img = np.clip(127.5 + 100 * base + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
        out = TF.resize(Image.fromarray(img), (args.target, args.target))
        tensors[f"resize.{i}.input"] = torch.from_numpy(img.copy())
        tensors[f"resize.{i}.output"] = torch.from_numpy(np.asarray(out).copy())
        sizes.append([h, w])

    src, dst = (int(v) for v in args.upscale.split(":"))
    small = rng.integers(0, 256, (src, src, 3), dtype=np.uint8)
    big = Image.fromarray(small).resize((dst, dst), resample=3)
    tensors["upscale.input"] = torch.from_numpy(small)
    tensors["upscale.output"] = torch.from_numpy(np.asarray(big).copy())

    meta = {
        "pillow": PIL.__version__,
        "torchvision": torchvision.__version__,
        "resize_sizes": json.dumps(sizes),
        "target": str(args.target),
        "command": "python tools/vdvae/make_fixtures.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
    }
    save_file(tensors, os.path.join(args.out, "pillow-resample.safetensors"), metadata=meta)

    tiny = args.tiny_weights or os.path.join(args.out, "tiny-weights.safetensors")
    state = load_file(tiny)
    prefixed = {"module." + k: v for k, v in state.items()}
    torch.save(prefixed, os.path.join(args.out, "tiny-weights-module.th"))
    with safe_open(tiny, "pt") as f:
        print("tiny hps:", f.metadata().get("hps"))
    print("wrote", len(tensors), "resample tensors and", len(prefixed), "prefixed weights")


if __name__ == "__main__":
    main()

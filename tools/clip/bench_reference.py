#!/usr/bin/env python
"""Reference side of the `clip` vision benchmark: transformers' CLIPVisionModelWithProjection.

Called by `cargo bench -p clip --bench vision_vit_l14`, which writes the random weights
(`image_encoder/` folder: config.json + model.safetensors) and the input batch, then compares
this script's outputs and timings with its own. Usage:
    bench_reference.py MODEL_DIR INPUT.safetensors OUTPUT.safetensors ITERS THREADS
Prints one JSON line: {"seconds": [...], "torch": version, "transformers": version, "threads": n}.
"""

import json
import sys
import time

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionModelWithProjection


def main():
    model_dir, input_path, output_path, iters, threads = sys.argv[1:6]
    torch.set_num_threads(int(threads))
    model = CLIPVisionModelWithProjection.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    x = load_file(input_path)["pixel_values"]
    seconds = []
    with torch.inference_mode():
        out = model(pixel_values=x)  # warm-up
        for _ in range(int(iters)):
            t0 = time.perf_counter()
            out = model(pixel_values=x)
            seconds.append(time.perf_counter() - t0)
    save_file(
        {"image_embeds": out.image_embeds.contiguous(), "last_hidden_state": out.last_hidden_state.contiguous()},
        output_path,
    )
    print(json.dumps({
        "seconds": seconds,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "attn_implementation": model.config._attn_implementation,
    }))


if __name__ == "__main__":
    main()

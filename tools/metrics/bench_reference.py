"""Reference timings for the `metrics` benchmarks (crates/metrics/benches/metrics.rs runs this).

    python tools/metrics/bench_reference.py low-level DIR        # DIR/gt/*.png, DIR/rec/*.png
    python tools/metrics/bench_reference.py networks SIZE BATCH REPEATS

low-level: Brain-Diffuser's per-pair PixCorr (Pillow bicubic + np.corrcoef) and scikit-image SSIM,
both variants, over every pair, on images already decoded in memory. networks: torchvision
forward passes on CPU with the synthetic weights of synthetic.py (as the Rust side). Prints one JSON object.
"""

import glob
import json
import os
import sys
import time

import numpy as np


def low_level(folder):
    from PIL import Image
    from skimage.color import rgb2gray
    from skimage.metrics import structural_similarity as ssim

    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(folder, "gt", "*.png")))
    gts = [Image.open(os.path.join(folder, "gt", n)).convert("RGB") for n in names]
    recs = [Image.open(os.path.join(folder, "rec", n)).convert("RGB") for n in names]
    for im in gts + recs:
        im.load()
    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    start = time.perf_counter()
    pc, s1, s2 = [], [], []
    for g, r in zip(gts, recs):
        rr = np.array(r.resize(g.size, resample=Image.BICUBIC)) / 255.0
        gg = np.array(g) / 255.0
        pc.append(np.corrcoef(gg.reshape(1, -1), rr.reshape(1, -1))[0, 1])
        rg, ggr = rgb2gray(rr), rgb2gray(gg)
        s1.append(ssim(rg, ggr, channel_axis=-1, **kw))
        s2.append(ssim(rg, ggr, **kw))
    seconds = time.perf_counter() - start
    print(json.dumps({"pairs": len(names), "seconds": seconds, "pixcorr": float(np.mean(pc)),
                      "ssim_columns": float(np.mean(s1)), "ssim_2d": float(np.mean(s2))}))


def networks(size, batch, repeats):
    import torch
    import torchvision

    torch.set_grad_enabled(False)
    models = {
        "alexnet": torchvision.models.alexnet(),
        "inception_v3": torchvision.models.inception_v3(init_weights=False, aux_logits=True, transform_input=True),
        "efficientnet_b1": torchvision.models.efficientnet_b1(),
        "swav_resnet50": torchvision.models.resnet50(),
    }
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import synthetic

    x = torch.rand(batch, 3, size, size)
    out = {}
    for name, m in models.items():
        synthetic.fill_model(m)  # the same weights as the Rust side, so the work is identical
        m.eval()
        m(x)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            m(x)
        out[name] = batch * repeats / (time.perf_counter() - start)
    print(json.dumps({"images_per_second": out, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    if sys.argv[1] == "low-level":
        low_level(sys.argv[2])
    else:
        networks(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))

"""Writes the parity fixtures of the Rust crate `metrics` (crates/metrics/tests/fixtures/).

Usage (from the repository root, with the tools venv):
    python tools/metrics/gen_fixtures.py --out crates/metrics/tests/fixtures \
        --net-size 80 --net-batch 2 --pairs 16 --pair-gt 96 --pair-rec 128

Everything is computed with the reference packages: Pillow (resize), NumPy (corrcoef),
scikit-image (rgb2gray, structural_similarity), SciPy (correlation distance) and torchvision
(the four networks, with synthetic deterministic weights from synthetic.py, which Rust reproduces).
Images come from integer recipes in synthetic.py (reproduced in Rust), so no image is stored.
"""

import argparse
import json
import os

import numpy as np
import scipy.spatial.distance as ssd
import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms.functional as TF
from PIL import Image
from safetensors.numpy import save_file
from skimage.color import rgb2gray
from skimage.metrics import structural_similarity

import synthetic as syn

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
CLIP = ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])


def ssim_cols(a, b):
    """Brain-Diffuser's SSIM (scikit-image 0.17 `multichannel=True` on grey = channel_axis=-1)."""
    return float(structural_similarity(a, b, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, data_range=1.0))


def ssim_2d(a, b):
    return float(structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, data_range=1.0))


def pixcorr(a, b):
    return float(np.corrcoef(a.reshape(1, -1), b.reshape(1, -1))[0, 1])


def torch_bilinear(img_u8, size):
    """MindEye's tensor Resize(size, antialias=False) on float images, back to HWC float64."""
    t = torch.from_numpy(img_u8).permute(2, 0, 1)[None].float() / 255.0
    r = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    return r.clamp(0, 1)[0].permute(1, 2, 0).double().numpy()


def image_from_spec(spec):
    if spec["kind"] == "structured":
        return syn.structured_image(spec["seed"], spec["width"], spec["height"])
    if spec["kind"] == "noise":
        return syn.noise_image(spec["seed"], spec["width"], spec["height"])
    if spec["kind"] == "reconstruction":
        return syn.reconstruction_of(spec["seed"], spec["gt_width"], spec["gt_height"], spec["width"],
                                     spec["height"], spec["noise"])
    raise ValueError(spec)


def low_level_cases():
    """(ground-truth spec, reconstruction spec) pairs of several sizes and kinds."""
    cases = []
    for seed, (gw, gh), (rw, rh), noise in [
        (1, (425, 425), (512, 512), 40),
        (2, (64, 48), (80, 60), 10),
        (3, (37, 53), (37, 53), 0),
        (4, (100, 100), (61, 61), 60),
    ]:
        gt = {"kind": "structured", "seed": seed, "width": gw, "height": gh}
        rec = {"kind": "reconstruction", "seed": seed, "gt_width": gw, "gt_height": gh, "width": rw,
               "height": rh, "noise": noise}
        cases.append((gt, rec))
    cases.append(({"kind": "noise", "seed": 11, "width": 45, "height": 30},
                  {"kind": "noise", "seed": 12, "width": 90, "height": 60}))
    cases.append(({"kind": "structured", "seed": 5, "width": 31, "height": 17},
                  {"kind": "noise", "seed": 13, "width": 62, "height": 34}))
    return cases


def gen_low_level(out):
    records = []
    for gt_spec, rec_spec in low_level_cases():
        gt = image_from_spec(gt_spec)
        rec = image_from_spec(rec_spec)
        gh, gw = gt.shape[:2]
        rec_pil = np.array(Image.fromarray(rec).resize((gw, gh), resample=Image.BICUBIC))
        # Pillow 13 (this venv) picks the order of its two passes per call when the two axes scale
        # differently; Pillow <= 12 (Brain-Diffuser pins 9.2) always goes horizontal first. The cases
        # below change one axis only, or both by the same factor, where the two agree.
        bil_w = np.array(Image.fromarray(rec).resize((29, rec.shape[0]), resample=Image.BILINEAR))
        bil_h = np.array(Image.fromarray(rec).resize((rec.shape[1], 23), resample=Image.BILINEAR))
        up = np.array(Image.fromarray(gt).resize((gw * 2, gh * 2), resample=Image.BICUBIC))
        g, r = gt / 255.0, rec_pil / 255.0
        gg, rg = rgb2gray(g), rgb2gray(r)
        rec_record = {
            "gt": gt_spec, "rec": rec_spec,
            "gt_fnv": syn.bytes_fnv1a64(gt.tobytes()), "rec_fnv": syn.bytes_fnv1a64(rec.tobytes()),
            "pil_bicubic_to_gt_fnv": syn.bytes_fnv1a64(rec_pil.tobytes()),
            "pil_bilinear_width29_fnv": syn.bytes_fnv1a64(bil_w.tobytes()),
            "pil_bilinear_height23_fnv": syn.bytes_fnv1a64(bil_h.tobytes()),
            "pil_bicubic_up_fnv": syn.bytes_fnv1a64(up.tobytes()),
            "up_size": [gw * 2, gh * 2],
            "pixcorr": pixcorr(g, r),
            "ssim_cols": ssim_cols(rg, gg) if gh >= 11 else None,
            "ssim_2d": ssim_2d(rg, gg) if min(gh, gw) >= 11 else None,
            "gray_sum": float(gg.sum()),
        }
        # MindEye pixel pipeline: both images bilinear (no antialias) to a common size.
        size = 57
        gm, rm = torch_bilinear(gt, size), torch_bilinear(rec, size)
        rec_record["mindeye_size"] = size
        rec_record["mindeye_pixcorr"] = pixcorr(gm, rm)
        rec_record["mindeye_ssim_2d"] = ssim_2d(rgb2gray(rm), rgb2gray(gm))
        records.append(rec_record)
    with open(os.path.join(out, "low_level.json"), "w") as f:
        json.dump(records, f, indent=1)


def gen_identification(out):
    rng = np.random.default_rng(7)
    cases = []
    tensors = {}
    for idx, (n, d) in enumerate([(12, 50), (9, 3), (20, 300)]):
        gt = rng.standard_normal((n, d)).astype(np.float32)
        rec = (gt * 0.3 + rng.standard_normal((n, d))).astype(np.float32)
        if idx == 1:
            rec[3] = gt[3] + 1.0  # perfectly correlated pair
        r = np.corrcoef(gt, rec)[:n, n:]
        brute = sum(1 for j in range(n) for i in range(n) if i != j and r[i, j] < r[j, j]) / (n * (n - 1))
        # scipy works in the input dtype: float64 gives the exact reference, float32 what the
        # reference scripts (float32 features) get.
        dist = [float(ssd.correlation(gt[i].astype(np.float64), rec[i].astype(np.float64))) for i in range(n)]
        dist32 = [float(ssd.correlation(gt[i], rec[i])) for i in range(n)]
        # A correlation matrix with many exact ties: values on a 0.25 grid.
        tied = np.round(r * 4) / 4
        tied_score = sum(1 for j in range(n) for i in range(n) if i != j and tied[i, j] < tied[j, j]) / (n * (n - 1))
        tensors[f"case{idx}.gt"] = gt
        tensors[f"case{idx}.rec"] = rec
        tensors[f"case{idx}.tied"] = tied
        cases.append({"name": f"case{idx}", "n": n, "d": d, "two_way": brute, "distances": dist, "distances_float32": dist32,
                      "mean_distance": float(np.mean(dist)), "tied_two_way": tied_score,
                      "r_corner": [float(r[0, 0]), float(r[0, 1]), float(r[1, 0])]})
    save_file(tensors, os.path.join(out, "identification.safetensors"))
    with open(os.path.join(out, "identification.json"), "w") as f:
        json.dump(cases, f, indent=1)


def build_networks():
    m = {
        "alexnet": torchvision.models.alexnet(),
        "inception_v3": torchvision.models.inception_v3(init_weights=False, aux_logits=True, transform_input=True),
        "efficientnet_b1": torchvision.models.efficientnet_b1(),
        "swav_resnet50": torchvision.models.resnet50(),
    }
    for net in m.values():
        syn.fill_model(net)
        net.eval()
    return m


def hooked_features(name, model, x):
    """Forward hooks on the modules the reference scripts hook."""
    feats = {}
    targets = {"alexnet": {"features.4": model.features[4] if name == "alexnet" else None,
                           "features.11": model.features[11] if name == "alexnet" else None}}
    modules = targets["alexnet"] if name == "alexnet" else {"avgpool": model.avgpool}
    handles = [mod.register_forward_hook(lambda _m, _i, o, k=k: feats.__setitem__(k, o.detach().clone()))
               for k, mod in modules.items()]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return feats


def gen_networks(out, models, size, batch):
    tensors = {}
    manifest = {}
    for name, model in models.items():
        x = torch.from_numpy(syn.symmetric_uniform(syn.fnv1a64("input." + name), batch * 3 * size * size)
                             .astype(np.float32).reshape(batch, 3, size, size) * 2.0)
        feats = hooked_features(name, model, x)
        for k, v in feats.items():
            tensors[f"{name}.{k}"] = v.numpy()
        sd = model.state_dict()
        manifest[name] = {k: list(v.shape) for k, v in sd.items()}
    # SwAV's checkpoint layout: DataParallel prefix plus projection head and prototypes.
    swav = {"module." + k: v for k, v in manifest["swav_resnet50"].items()}
    swav.update({"module.projection_head.0.weight": [2048, 2048], "module.projection_head.0.bias": [2048],
                 "module.projection_head.1.weight": [2048], "module.projection_head.3.weight": [128, 2048],
                 "module.prototypes.weight": [3000, 128]})
    manifest["swav_checkpoint"] = swav
    save_file(tensors, os.path.join(out, "networks.safetensors"))
    with open(os.path.join(out, "networks.json"), "w") as f:
        json.dump({"input_size": size, "batch": batch, "torchvision": torchvision.__version__,
                   "torch": torch.__version__, "manifest": manifest}, f)


def gen_checkpoints(out):
    """Tiny checkpoints in the real formats: zip torch.save, legacy pickle torch.save, safetensors."""
    g = torch.Generator().manual_seed(3)
    sd = {
        "module.conv.weight": torch.randn(4, 3, 3, 3, generator=g),
        "module.conv.bias": torch.randn(4, generator=g),
        "module.bn.weight": torch.randn(4, generator=g),
        "module.bn.bias": torch.randn(4, generator=g),
        "module.bn.running_mean": torch.randn(4, generator=g),
        "module.bn.running_var": torch.rand(4, generator=g) + 0.5,
        "module.bn.num_batches_tracked": torch.tensor(7),
        "module.projection_head.0.weight": torch.randn(5, 4, generator=g),
        "module.prototypes.weight": torch.randn(6, 5, generator=g),
    }
    torch.save(sd, os.path.join(out, "tiny_zip.pth"))
    torch.save(sd, os.path.join(out, "tiny_legacy.pth"), _use_new_zipfile_serialization=False)
    from safetensors.torch import save_file as save_torch
    save_torch({k[len("module."):]: v for k, v in sd.items()}, os.path.join(out, "tiny.safetensors"))
    # The documented converter, run on the legacy file.
    import subprocess
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run([sys.executable, os.path.join(here, "convert_checkpoint.py"), os.path.join(out, "tiny_legacy.pth"),
                    os.path.join(out, "tiny_legacy_converted.safetensors")], check=True)
    wrong = dict(sd)
    wrong["module.conv.weight"] = torch.randn(4, 3, 5, 5, generator=g)
    torch.save(wrong, os.path.join(out, "tiny_wrong_shape.pth"))
    # Reference forward of the tiny conv + bn (eval) on a fixed input, to check the loaded values.
    x = torch.linspace(-1, 1, 2 * 3 * 5 * 5).reshape(2, 3, 5, 5)
    y = F.conv2d(x, sd["module.conv.weight"], sd["module.conv.bias"], padding=1)
    y = F.batch_norm(y, sd["module.bn.running_mean"], sd["module.bn.running_var"], sd["module.bn.weight"],
                     sd["module.bn.bias"], training=False, eps=1e-5)
    save_file({"input": x.numpy(), "output": y.numpy()}, os.path.join(out, "tiny_forward.safetensors"))


def pairs(n, gw, rw):
    gts, recs = [], []
    for i in range(n):
        seed = 100 + i
        gts.append(syn.structured_image(seed, gw, gw))
        recs.append(syn.reconstruction_of(seed if i % 4 else seed + 1, gw, gw, rw, rw, 30 + 5 * i))
    return gts, recs


def pairwise_corr_all(ground_truth, predictions):
    """Brain-Diffuser's scripts/evaluate_reconstruction.py."""
    r = np.corrcoef(ground_truth, predictions)
    r = r[:len(ground_truth), len(ground_truth):]
    congruents = np.diag(r)
    success = r < congruents
    success_cnt = np.sum(success, 0)
    perf = np.mean(success_cnt) / (len(ground_truth) - 1)
    return perf


def clip_standin(x):
    """Stand-in for the CLIP extractor (the Rust test implements the same): 4x4 average pooling."""
    return F.adaptive_avg_pool2d(x, 4).flatten(1)


def bd_features(models, images, norm):
    out = {}
    batch = torch.stack([TF.normalize(TF.to_tensor(TF.resize(Image.fromarray(im), (224, 224))), *norm)
                         for im in images])
    return batch


def me_batch(images, size, norm):
    t = torch.stack([torch.from_numpy(im).permute(2, 0, 1).float() / 255.0 for im in images])
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    return TF.normalize(t, *norm)


def gen_evaluate(out, models, n, gw, rw):
    gts, recs = pairs(n, gw, rw)
    result = {"pairs": n, "gt_size": gw, "rec_size": rw}
    # Brain-Diffuser: PIL images, 224 bilinear, every network.
    pc, ss = [], []
    for gt, rec in zip(gts, recs):
        r = np.array(Image.fromarray(rec).resize((gw, gw), resample=Image.BICUBIC)) / 255.0
        g = gt / 255.0
        pc.append(pixcorr(g, r))
        ss.append(ssim_cols(rgb2gray(r), rgb2gray(g)))
    bd = {"PixCorr": float(np.mean(pc)), "SSIM": float(np.mean(ss)), "pixcorr_per_image": pc, "ssim_per_image": ss}
    feats = {}
    for which, images in (("gt", gts), ("rec", recs)):
        x = bd_features(models, images, IMAGENET)
        for name, model in models.items():
            for k, v in hooked_features(name, model, x).items():
                feats[(which, name, k)] = v.reshape(len(images), -1).numpy()
        feats[(which, "clip", "final")] = clip_standin(bd_features(models, images, CLIP)).numpy()

    def score(name, layer, kind):
        g, p = feats[("gt", name, layer)], feats[("rec", name, layer)]
        if kind == "id":
            return float(pairwise_corr_all(g, p))
        return float(np.mean([ssd.correlation(g[i], p[i]) for i in range(len(g))]))

    bd.update({"AlexNet(2)": score("alexnet", "features.4", "id"), "AlexNet(5)": score("alexnet", "features.11", "id"),
               "Inception": score("inception_v3", "avgpool", "id"), "CLIP": score("clip", "final", "id"),
               "EffNet-B": score("efficientnet_b1", "avgpool", "dist"), "SwAV": score("swav_resnet50", "avgpool", "dist")})
    result["brain_diffuser"] = bd

    # The preprocessed network inputs themselves (first 3 ground truths): hashes of the float32 bytes.
    def digest(t):
        a = np.ascontiguousarray(t.numpy().astype(np.float32))
        return {"fnv": syn.bytes_fnv1a64(a.tobytes()), "sum": float(a.astype(np.float64).sum()),
                "shape": list(a.shape)}

    result["preprocess"] = {
        "bd_imagenet_224": digest(bd_features(models, gts[:3], IMAGENET)),
        "bd_clip_224": digest(bd_features(models, gts[:3], CLIP)),
        "me_imagenet_255": digest(me_batch(gts[:3], 255, IMAGENET)),
    }

    # MindEye: tensors, bilinear without antialias; pixels at 425 (here: the protocol's 425), 2-D SSIM.
    pc, ss = [], []
    for gt, rec in zip(gts, recs):
        g, r = torch_bilinear(gt, 425), torch_bilinear(rec, 425)
        pc.append(pixcorr(g, r))
        ss.append(ssim_2d(rgb2gray(r), rgb2gray(g)))
    me = {"PixCorr": float(np.mean(pc)), "SSIM": float(np.mean(ss))}
    mf = {}
    for which, images in (("gt", gts), ("rec", recs)):
        f = hooked_features("alexnet", models["alexnet"], me_batch(images, 256, IMAGENET))
        mf[(which, "features.4")] = f["features.4"].reshape(n, -1).numpy()
        mf[(which, "features.11")] = f["features.11"].reshape(n, -1).numpy()
        e = hooked_features("efficientnet_b1", models["efficientnet_b1"], me_batch(images, 255, IMAGENET))
        mf[(which, "eff")] = e["avgpool"].reshape(n, -1).numpy()
        mf[(which, "clip")] = clip_standin(me_batch(images, 224, CLIP)).numpy()
    me["AlexNet(2)"] = float(pairwise_corr_all(mf[("gt", "features.4")], mf[("rec", "features.4")]))
    me["AlexNet(5)"] = float(pairwise_corr_all(mf[("gt", "features.11")], mf[("rec", "features.11")]))
    me["CLIP"] = float(pairwise_corr_all(mf[("gt", "clip")], mf[("rec", "clip")]))
    me["EffNet-B"] = float(np.mean([ssd.correlation(mf[("gt", "eff")][i], mf[("rec", "eff")][i]) for i in range(n)]))
    result["mindeye"] = me
    with open(os.path.join(out, "evaluate.json"), "w") as f:
        json.dump(result, f, indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--net-size", type=int, default=80)
    ap.add_argument("--net-batch", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--pair-gt", type=int, default=96)
    ap.add_argument("--pair-rec", type=int, default=128)
    ap.add_argument("--only", default="low_level,identification,networks,checkpoints,evaluate")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(2)
    only = set(args.only.split(","))
    if "low_level" in only:
        gen_low_level(args.out)
    if "identification" in only:
        gen_identification(args.out)
    if "checkpoints" in only:
        gen_checkpoints(args.out)
    if only & {"networks", "evaluate"}:
        models = build_networks()
        if "networks" in only:
            gen_networks(args.out, models, args.net_size, args.net_batch)
        if "evaluate" in only:
            gen_evaluate(args.out, models, args.pairs, args.pair_gt, args.pair_rec)


if __name__ == "__main__":
    main()

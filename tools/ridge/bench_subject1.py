"""Subject-1 ridge benchmark: the reference procedure (scikit-learn), himalaya and ours, side by
side on the same synthetic data, with a table of times, speed-ups, accuracy and GFLOP/s.

Shapes default to NSD subject 1 (X 8,859 x 15,724, 982 test rows, targets 91,168 VDVAE +
257 x 768 CLIP-Vision + 77 x 768 CLIP-Text). The reference procedure is the original code's:
one `Ridge(alpha=50000)` fit for VDVAE and one `Ridge` per CLIP token (alpha 60,000 vision,
100,000 text), float64. At full scale it takes over an hour, so it is measured on part of the
work (`--sklearn-vdvae-cols`, `--sklearn-tokens`) and extrapolated linearly; the table says so.
himalaya (`KernelRidge`, numpy backend) is measured the same way (`--himalaya-cols`).
Ours is `cargo run --release -p ridge --example subject1_bench`, which streams every target.

Full scale (needs ~14 GB of disk in --workdir and a quiet machine; about an hour or more):
    /root/.cache/brain-diffuser/torch-2.11.0/bin/python tools/ridge/bench_subject1.py \
        --workdir /tmp/ridge-bench-full --sklearn-vdvae-cols 4096 --sklearn-tokens 3 --himalaya-cols 8192
Reduced scale (minutes; proves the pipeline works):
    /root/.cache/brain-diffuser/torch-2.11.0/bin/python tools/ridge/bench_subject1.py \
        --workdir /tmp/ridge-bench-small --n 1200 --p 2400 --m 200 --vdvae 6000 \
        --clipv-tokens 12 --clipt-tokens 6 --dim 96
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

GROUPS = ("vdvae", "clipv", "clipt")
ALPHAS = {"vdvae": 50000.0, "clipv": 60000.0, "clipt": 100000.0}


def generate(args):
    """Seeded synthetic fMRI (low-rank + noise, z-scored as the reference does) and targets
    that depend on it linearly plus noise, written as float32 .npy files."""
    os.makedirs(args.workdir, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    n, p, m = args.n, args.p, args.m
    rank = 64
    loadings = rng.standard_normal((rank, p)).astype(np.float32)
    x_all = np.empty((n + m, p), dtype=np.float32)
    for start in range(0, n + m, 2048):
        stop = min(start + 2048, n + m)
        x_all[start:stop] = rng.standard_normal((stop - start, rank), dtype=np.float32) @ loadings
        x_all[start:stop] += 3.0 * rng.standard_normal((stop - start, p), dtype=np.float32)
    x_all /= 300.0
    mu = x_all[:n].mean(0, dtype=np.float64)
    sd = x_all[:n].std(0, ddof=1, dtype=np.float64)
    x_all = ((x_all - mu) / sd).astype(np.float32)
    np.save(os.path.join(args.workdir, "x_train.npy"), x_all[:n])
    np.save(os.path.join(args.workdir, "x_test.npy"), x_all[n:])
    proj = x_all[:n] @ (rng.standard_normal((p, 32), dtype=np.float32) / np.sqrt(p))
    shapes = {"vdvae": (n, args.vdvae), "clipv": (n, args.clipv_tokens, args.dim),
              "clipt": (n, args.clipt_tokens, args.dim)}
    for name, shape in shapes.items():
        path = os.path.join(args.workdir, f"y_{name}.npy")
        y = np.lib.format.open_memmap(path + ".tmp", mode="w+", dtype=np.float32, shape=shape)
        flat = y.reshape(n, -1)
        for start in range(0, flat.shape[1], 8192):
            stop = min(start + 8192, flat.shape[1])
            mix = rng.standard_normal((32, stop - start), dtype=np.float32)
            flat[:, start:stop] = proj @ mix + rng.standard_normal((n, stop - start), dtype=np.float32) + 0.5
        y.flush()
        del y, flat
        os.replace(path + ".tmp", path)
    print(f"generated synthetic data in {args.workdir}", flush=True)


def load(args):
    x_train = np.load(os.path.join(args.workdir, "x_train.npy"))
    x_test = np.load(os.path.join(args.workdir, "x_test.npy"))
    ys = {g: np.load(os.path.join(args.workdir, f"y_{g}.npy"), mmap_mode="r") for g in GROUPS}
    return x_train, x_test, ys


def fit_line(sizes, times, full):
    """Time = a + b * size through two measurements, evaluated at `full` (never below the
    larger measurement)."""
    if len(sizes) == 1 or sizes[0] == sizes[1]:
        return times[-1] * full / sizes[-1]
    b = (times[1] - times[0]) / (sizes[1] - sizes[0])
    a = times[1] - b * sizes[1]
    return max(a + b * full, times[1])


def run_sklearn(args, x_train, x_test, ys):
    """The reference procedure (vdvae_regression.py, clip*_regression.py) on part of the work."""
    from sklearn.linear_model import Ridge
    x64, xt64 = x_train.astype(np.float64), x_test.astype(np.float64)
    out = {}
    # VDVAE: one multi-output fit. When only part is measured, a 1-target fit gives the fixed
    # cost (Gram, Cholesky) and the part gives the per-target slope.
    d = ys["vdvae"].shape[1]
    cols = min(args.sklearn_vdvae_cols or d, d)
    sizes = [cols] if cols == d else [1, cols]
    times, pred = [], None
    for s in sizes:
        y = np.asarray(ys["vdvae"][:, :s], dtype=np.float64)
        t = time.perf_counter()
        reg = Ridge(alpha=ALPHAS["vdvae"], max_iter=10000, fit_intercept=True).fit(x64, y)
        pred = reg.predict(xt64)
        times.append(time.perf_counter() - t)
        del reg, y
    out["vdvae"] = {"seconds": fit_line(sizes, times, d), "measured_cols": cols, "total_cols": d,
                    "extrapolated": cols < d, "pred": pred}
    # CLIP: one fit per token.
    for g in ("clipv", "clipt"):
        tokens = ys[g].shape[1]
        k = min(args.sklearn_tokens or tokens, tokens)
        per_token, preds = [], []
        for tok in range(k):
            y = np.asarray(ys[g][:, tok, :], dtype=np.float64)
            t = time.perf_counter()
            reg = Ridge(alpha=ALPHAS[g], max_iter=50000, fit_intercept=True).fit(x64, y)
            preds.append(reg.predict(xt64))
            per_token.append(time.perf_counter() - t)
        out[g] = {"seconds": float(np.sum(per_token)) * tokens / k, "measured_cols": k * args_dim(ys, g),
                  "total_cols": tokens * args_dim(ys, g), "extrapolated": k < tokens,
                  "pred": np.concatenate(preds, axis=1)}
        print(f"sklearn {g}: {k} of {tokens} tokens, {np.median(per_token):.2f} s per token", flush=True)
    print(f"sklearn vdvae: {cols} of {d} targets in {times[-1]:.2f} s", flush=True)
    return out


def args_dim(ys, g):
    return ys[g].shape[2]


def run_himalaya(args, x_train, x_test, ys):
    from himalaya.backend import set_backend
    from himalaya.kernel_ridge import KernelRidge
    set_backend("numpy")
    out = {}
    for g in GROUPS:
        flat = ys[g].reshape(ys[g].shape[0], -1)
        d = flat.shape[1]
        cols = min(args.himalaya_cols or d, d)
        sizes = [cols] if cols == d else [1, cols]
        times = []
        for s in sizes:
            y = np.asarray(flat[:, :s], dtype=np.float32)
            t = time.perf_counter()
            model = KernelRidge(alpha=ALPHAS[g], kernel="linear", fit_intercept=True).fit(x_train, y)
            model.predict(x_test)
            times.append(time.perf_counter() - t)
            del model, y
        out[g] = {"seconds": fit_line(sizes, times, d), "extrapolated": cols < d, "measured_cols": cols}
        print(f"himalaya {g}: {cols} of {d} targets in {times[-1]:.2f} s", flush=True)
    return out


def run_numpy_prototype(args, x_train, x_test, ys):
    """A plain numpy shared-Gram ridge doing the same arithmetic as ours: centring, the Gram
    matrix and test cross-kernel in float64, per alpha a Cholesky factorisation and the m x n
    prediction operator (float64, rounded to float32), then float32 prediction GEMMs over row
    blocks of the memory-mapped targets (contiguous reads), intercept added from the means.
    Timed in full, reads included (they come from the same page cache as ours)."""
    import scipy.linalg as sla
    n, m = x_train.shape[0], x_test.shape[0]
    t = time.perf_counter()
    mu = x_train.mean(0, dtype=np.float64)
    xc = x_train.astype(np.float64) - mu
    gram = xc @ xc.T
    cross = (x_test.astype(np.float64) - mu) @ xc.T
    del xc
    out = {"shared_s": time.perf_counter() - t}
    for g in GROUPS:
        t = time.perf_counter()
        shifted = gram.copy()
        shifted[np.diag_indices(n)] += ALPHAS[g]
        factor = sla.cho_factor(shifted, lower=True, overwrite_a=True)
        s = sla.cho_solve(factor, cross.T).T.astype(np.float32)
        del shifted, factor
        y = ys[g].reshape(n, -1)
        d = y.shape[1]
        pred = np.zeros((m, d), dtype=np.float32)
        sums = np.zeros(d)
        rows = max(1, 8192 * n // d)
        read_s = 0.0
        for r0 in range(0, n, rows):
            tr = time.perf_counter()
            block = np.asarray(y[r0:r0 + rows], dtype=np.float32)
            read_s += time.perf_counter() - tr
            sums += block.sum(0, dtype=np.float64)
            pred += s[:, r0:r0 + rows] @ block
        # S (Y - 1 mu^T) + 1 mu^T = S Y + (1 - S 1) mu^T
        pred += ((1.0 - s.sum(1, dtype=np.float64))[:, None] * (sums / n)[None, :]).astype(np.float32)
        out[g] = {"seconds": time.perf_counter() - t, "read_s": read_s, "pred": pred}
        print(f"numpy prototype {g}: {d} targets in {out[g]['seconds']:.1f} s (reads {read_s:.1f} s)", flush=True)
    return out


def run_ours(args):
    cmd = args.ours_cmd.split() + ["--workdir", args.workdir]
    if args.weights:
        cmd += ["--weights", "--coef-check", str(args.coef_check)]
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t
    with open(os.path.join(args.workdir, "ours_timings.json")) as f:
        timings = json.load(f)
    timings["process_wall_s"] = wall
    return timings


def check_weights(args, x_train, ys, ours):
    """--weights: ours computed every weight (and wrote those of the first --coef-check targets
    of each group); sklearn fits those targets alone and the two sets of weights are compared."""
    from sklearn.linear_model import Ridge
    x64 = x_train.astype(np.float64)
    worst = 0.0
    for g in GROUPS:
        coef = np.load(os.path.join(args.workdir, f"ours_coef_{g}.npy")).astype(np.float64)
        icpt = np.load(os.path.join(args.workdir, f"ours_intercept_{g}.npy"))[0].astype(np.float64)
        k = coef.shape[0]
        y = np.asarray(ys[g].reshape(x_train.shape[0], -1)[:, :k], dtype=np.float64)
        reg = Ridge(alpha=ALPHAS[g], fit_intercept=True).fit(x64, y)
        rel = float(np.abs(coef - reg.coef_).max() / np.abs(reg.coef_).max())
        irel = float(np.abs(icpt - reg.intercept_).max() / np.abs(reg.intercept_).max())
        worst = max(worst, rel, irel)
        print(f"weights {g}: first {k} targets, max |ours - sklearn| / max |sklearn| coef {rel:.3e}, intercept {irel:.3e}")
    print(f"ours weights: {ours['weights_s']:.1f} s for {ours['weights_tflop']:.1f} TFLOP = {ours['weights_gflops']:.1f} GFLOP/s; "
          f"f32 GEMM rate {ours['gemm_f32_gflops']:.1f} GFLOP/s, floor {ours['floor_s']:.1f} s: "
          f"{ours['weights_s'] / ours['floor_s']:.2f}x (target 1.3x); peak RSS {ours['peak_rss_gib']:.2f} GiB")
    ok = worst < 1e-4
    print("accuracy target met" if ok else "ACCURACY TARGET MISSED")
    sys.exit(0 if ok else 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=8859)
    ap.add_argument("--p", type=int, default=15724)
    ap.add_argument("--m", type=int, default=982)
    ap.add_argument("--vdvae", type=int, default=91168)
    ap.add_argument("--clipv-tokens", type=int, default=257)
    ap.add_argument("--clipt-tokens", type=int, default=77)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--sklearn-vdvae-cols", type=int, default=0, help="0: all (no extrapolation)")
    ap.add_argument("--sklearn-tokens", type=int, default=0, help="0: all tokens")
    ap.add_argument("--himalaya-cols", type=int, default=0, help="0: all targets of each group")
    ap.add_argument("--skip-generate", action="store_true")
    ap.add_argument("--skip-himalaya", action="store_true")
    ap.add_argument("--only-ours", action="store_true", help="generate (unless skipped) and run ours only")
    ap.add_argument("--only-generate", action="store_true", help="write the synthetic data and stop")
    ap.add_argument("--skip-numpy", action="store_true", help="leave out the numpy shared-Gram prototype")
    ap.add_argument("--weights", action="store_true",
                    help="time ours computing every weight (weights-roi) and check the first --coef-check against sklearn")
    ap.add_argument("--coef-check", type=int, default=256)
    ap.add_argument("--ours-cmd", default="cargo run --release -q -p ridge --example subject1_bench --")
    args = ap.parse_args()
    if not args.skip_generate:
        generate(args)
    if args.only_generate:
        return
    ours = run_ours(args)
    if args.only_ours:
        print(json.dumps(ours, indent=1))
        return
    x_train, x_test, ys = load(args)
    if args.weights:
        return check_weights(args, x_train, ys, ours)
    proto = None if args.skip_numpy else run_numpy_prototype(args, x_train, x_test, ys)
    ref = run_sklearn(args, x_train, x_test, ys)
    him = None if args.skip_himalaya else run_himalaya(args, x_train, x_test, ys)

    # Accuracy: ours against sklearn on every column sklearn computed.
    worst_rel, worst_abs = 0.0, 0.0
    for g in GROUPS:
        mine = np.load(os.path.join(args.workdir, f"ours_pred_{g}.npy"))
        want = ref[g]["pred"]
        diff = np.abs(mine[:, :want.shape[1]].astype(np.float64) - want)
        worst_abs = max(worst_abs, float(diff.max()))
        worst_rel = max(worst_rel, float(diff.max() / np.abs(want).max()))

    def fmt(entry):
        return f"{entry['seconds']:9.1f}{'*' if entry.get('extrapolated') else ' '}"

    names = {"vdvae": f"VDVAE ({ys['vdvae'].shape[1]})", "clipv": f"CLIP-V ({ys['clipv'].shape[1]}x{ys['clipv'].shape[2]})",
             "clipt": f"CLIP-T ({ys['clipt'].shape[1]}x{ys['clipt'].shape[2]})"}
    ours_group = {g: {"seconds": ours["groups"][g]["seconds"]} for g in GROUPS}
    shared = ours["build_s"] + ours["eval_s"]
    rows = [("sklearn (reference procedure)", ref, 0.0)]
    if him:
        rows.append(("himalaya KernelRidge", him, 0.0))
    if proto:
        rows.append(("numpy shared-Gram prototype", proto, proto["shared_s"]))
    rows.append(("ours (ridge crate)", ours_group, shared))
    rows.append(("f32 GEMM floor (flops / rate)", {g: {"seconds": 0.0} for g in GROUPS}, ours["floor_s"]))
    ours_total = ours["compute_s"]
    print()
    print(f"n {args.n}, p {args.p}, m {args.m}; seconds; * = extrapolated from a measured part "
          "(linear in targets / per token); all rows from this one run")
    header = f"{'method':32s} {'shared Gram':>11s} " + " ".join(f"{names[g]:>18s}" for g in GROUPS) + f" {'total':>10s} {'ours faster by':>14s}"
    print(header)
    print("-" * len(header))
    for label, entry, extra in rows:
        total = extra + sum(entry[g]["seconds"] for g in GROUPS)
        extrap = any(entry[g].get("extrapolated") for g in GROUPS)
        print(f"{label:32s} {extra:11.1f} " + " ".join(f"{fmt(entry[g]):>18s}" for g in GROUPS)
              + f" {total:9.1f}{'*' if extrap else ' '} {total / ours_total:13.1f}x")
    print()
    print(f"ours vs sklearn predictions: max abs diff {worst_abs:.3e}, relative to max |pred| {worst_rel:.3e} "
          f"(target 1e-4)")
    print(f"ours: {ours['gflop']:.0f} GFLOP in {ours['compute_s']:.1f} s = {ours['gflops']:.1f} GFLOP/s; "
          f"measured faer GEMM rate f32 {ours['gemm_f32_gflops']:.1f} / f64 {ours['gemm_f64_gflops']:.1f} GFLOP/s; "
          f"peak RSS {ours['peak_rss_gib']:.2f} GiB; process wall {ours['process_wall_s']:.1f} s")
    print(f"ours: compute {ours['compute_s']:.1f} s against the f32 GEMM floor {ours['floor_s']:.1f} s "
          f"({ours['gflop']:.0f} GFLOP / {ours['gemm_f32_gflops']:.1f} GFLOP/s): {ours['compute_s'] / ours['floor_s']:.2f}x "
          "(target 1.5x)")
    if proto:
        p_worst = 0.0
        for g in GROUPS:
            want = ref[g]["pred"]
            diff = np.abs(proto[g]["pred"][:, :want.shape[1]].astype(np.float64) - want)
            p_worst = max(p_worst, float(diff.max() / np.abs(want).max()))
        print(f"numpy prototype vs sklearn predictions: relative to max |pred| {p_worst:.3e}")
    ok = worst_rel < 1e-4
    print("accuracy target met" if ok else "ACCURACY TARGET MISSED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

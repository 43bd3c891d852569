"""Regenerate the parity fixtures of the `ridge` crate from the reference Python packages.

Every number the Rust tests compare against is computed here by scikit-learn (`Ridge`,
`RidgeCV`), by himalaya (`KernelRidgeCV`), or by brute force (leave-one-out by refitting
`Ridge` n times; GCV from the explicit hat matrix). Inputs are drawn as float32 so that the
Rust side, which takes f32 inputs, sees exactly the same numbers as the float64 reference fit.

Usage (from the repository root):
    /root/.cache/brain-diffuser/torch-2.11.0/bin/python tools/ridge/make_fixtures.py \
        --out crates/ridge/tests/fixtures --seed 0 \
        --kernel-shape 20 50 --primal-shape 60 15 --targets 6 --test-rows 7 \
        --alphas 0.1 10 1000 --cv-shape 30 60 --cv-targets 12
"""

import argparse
import json
import os

import numpy as np
import safetensors.numpy
import sklearn
from sklearn.linear_model import Ridge, RidgeCV


def draw_problem(rng, n, p, d, m, noise_scales):
    """Correlated features, a low-rank signal and per-target noise levels.

    Everything is rounded to float32 and returned as float64 holding those exact values."""
    mix = rng.standard_normal((p, p)) / np.sqrt(p)
    x_all = rng.standard_normal((n + m, p)) @ (np.eye(p) + 0.5 * mix) + 0.3
    w = rng.standard_normal((p, d)) / np.sqrt(p)
    y = x_all[:n] @ w + noise_scales[None, :] * rng.standard_normal((n, d)) + 2.0
    f32 = lambda a: a.astype(np.float32).astype(np.float64)
    return f32(x_all[:n]), f32(x_all[n:]), f32(y)


def save(path, tensors, meta):
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    safetensors.numpy.save_file(tensors, path, metadata={k: json.dumps(v) for k, v in meta.items()})
    print(f"wrote {path}")


def ridge_case(out, name, rng, n, p, d, m, alphas, fit_intercept):
    x, x_test, y = draw_problem(rng, n, p, d, m, np.linspace(0.1, 2.0, d))
    tensors = {"x": x, "x_test": x_test, "y": y, "alphas": np.asarray(alphas, dtype=np.float64)}
    for i, alpha in enumerate(alphas):
        # solver="auto" resolves to the Cholesky (kernel form when n < p) solver, as in the
        # reference pipeline.
        reg = Ridge(alpha=alpha, fit_intercept=fit_intercept).fit(x, y)
        tensors[f"coef_{i}"] = reg.coef_
        tensors[f"intercept_{i}"] = np.broadcast_to(np.asarray(reg.intercept_, dtype=np.float64), (d,))
        tensors[f"pred_{i}"] = reg.predict(x_test)
    save(os.path.join(out, f"{name}.safetensors"), tensors,
         {"fit_intercept": fit_intercept, "sklearn": sklearn.__version__, "reference": "sklearn.linear_model.Ridge"})


def hat_matrix(x, alpha, fit_intercept):
    n = x.shape[0]
    xc = x - x.mean(0) if fit_intercept else x
    h = xc @ np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T)
    return h + (np.ones((n, n)) / n if fit_intercept else 0.0)


def loo_case(out, name, rng, n, p, d, alphas, fit_intercept):
    x, _, y = draw_problem(rng, n, p, d, 1, np.geomspace(0.05, 5.0, d))
    loo = np.zeros((len(alphas), d))
    gcv = np.zeros((len(alphas), d))
    for a, alpha in enumerate(alphas):
        for i in range(n):
            keep = np.arange(n) != i
            reg = Ridge(alpha=alpha, fit_intercept=fit_intercept).fit(x[keep], y[keep])
            loo[a] += (y[i] - reg.predict(x[i:i + 1])[0]) ** 2
        loo[a] /= n
        h = hat_matrix(x, alpha, fit_intercept)
        resid = y - h @ y
        gcv[a] = (resid ** 2).mean(0) / (1.0 - np.trace(h) / n) ** 2
    cv = RidgeCV(alphas=alphas, fit_intercept=fit_intercept, alpha_per_target=True,
                 store_cv_results=True).fit(x, y)
    # RidgeCV's efficient LOO must agree with the brute force; a mismatch means the fixture is wrong.
    best_brute = np.asarray(alphas)[loo.argmin(0)]
    assert np.allclose(best_brute, cv.alpha_), (best_brute, cv.alpha_)
    sorted_loo = np.sort(loo, axis=0)
    margin = ((sorted_loo[1] - sorted_loo[0]) / sorted_loo[0]).min()
    group = loo.mean(1)
    print(f"{name}: per-target LOO alphas {best_brute}, min relative margin {margin:.2e}")
    tensors = {"x": x, "y": y, "alphas": np.asarray(alphas, dtype=np.float64),
               "loo_mse": loo, "gcv_score": gcv,
               "best_alpha_per_target": best_brute,
               "best_alpha_group": np.asarray([alphas[int(group.argmin())]], dtype=np.float64)}
    save(os.path.join(out, f"{name}.safetensors"), tensors,
         {"fit_intercept": fit_intercept, "sklearn": sklearn.__version__,
          "reference": "brute-force leave-one-out with sklearn Ridge; GCV from the explicit hat matrix"})


def himalaya_case(out, name, rng, n, p, d, m, alphas, fit_intercept, folds):
    import himalaya
    from himalaya.backend import set_backend
    from himalaya.kernel_ridge import KernelRidgeCV
    set_backend("numpy")
    x, x_test, y = draw_problem(rng, n, p, d, m, np.geomspace(0.05, 8.0, d))
    model = KernelRidgeCV(alphas=np.asarray(alphas), kernel="linear", cv=folds,
                          fit_intercept=fit_intercept, warn=False).fit(x, y)
    print(f"{name}: himalaya best alphas {model.best_alphas_}")
    tensors = {"x": x, "x_test": x_test, "y": y, "alphas": np.asarray(alphas, dtype=np.float64),
               "best_alphas": np.asarray(model.best_alphas_, dtype=np.float64),
               "cv_scores": np.asarray(model.cv_scores_, dtype=np.float64),
               "pred": np.asarray(model.predict(x_test), dtype=np.float64)}
    save(os.path.join(out, f"{name}.safetensors"), tensors,
         {"fit_intercept": fit_intercept, "folds": folds, "himalaya": himalaya.__version__,
          "reference": "himalaya.kernel_ridge.KernelRidgeCV (KFold without shuffling, l2_neg_loss)"})


def stream_case(out, rng, n, p, m, alpha):
    """Target files written by numpy itself (C-order float32 3-D; Fortran-order float64) and the
    sklearn predictions for them, to test the streaming readers on canonical files."""
    x, x_test, _ = draw_problem(rng, n, p, 1, m, np.ones(1))
    y3 = (rng.standard_normal((n, 3, 4)) + np.arange(12).reshape(3, 4)).astype(np.float32)
    yf = np.asfortranarray(rng.standard_normal((n, 5)) * 3.0 - 1.0)
    np.save(os.path.join(out, "stream_targets_c_f4.npy"), y3)
    np.save(os.path.join(out, "stream_targets_fortran_f8.npy"), yf)
    pred3 = Ridge(alpha=alpha).fit(x, y3.reshape(n, -1).astype(np.float64)).predict(x_test)
    predf = Ridge(alpha=alpha).fit(x, yf).predict(x_test)
    save(os.path.join(out, "stream.safetensors"),
         {"x": x, "x_test": x_test, "y3_f32": y3.reshape(n, -1), "pred_c_f4": pred3, "pred_fortran_f8": predf,
          "alpha": np.asarray([alpha])},
         {"sklearn": sklearn.__version__, "reference": "sklearn.linear_model.Ridge on numpy-written .npy targets"})


def numpy_model_case(out, rng, n, p, d, m, alpha):
    """A fitted sklearn model saved from numpy in the crate's model layout (coef (d, p) f32,
    intercept (d,) f32, alpha (d,) f64), with its predictions: RidgeModel::load must read it."""
    x, x_test, y = draw_problem(rng, n, p, d, m, np.ones(d))
    reg = Ridge(alpha=alpha).fit(x, y)
    # ascontiguousarray: sklearn's coef_ is a transposed (Fortran-ordered) view, and
    # safetensors.numpy.save_file writes the raw buffer of a non-C-contiguous array.
    model = {"coef": np.ascontiguousarray(reg.coef_, dtype=np.float32),
             "intercept": reg.intercept_.astype(np.float32),
             "alpha": np.full(d, alpha)}
    safetensors.numpy.save_file(model, os.path.join(out, "numpy_model.safetensors"),
                                metadata={"format": "brain-diffuser-ridge/1"})
    save(os.path.join(out, "numpy_model_expected.safetensors"),
         {"x_test": x_test, "pred": x_test @ model["coef"].astype(np.float64).T + model["intercept"]},
         {"reference": "numpy x_test @ coef.T + intercept with the float32 model"})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kernel-shape", type=int, nargs=2, default=[20, 50])
    ap.add_argument("--primal-shape", type=int, nargs=2, default=[60, 15])
    ap.add_argument("--targets", type=int, default=6)
    ap.add_argument("--test-rows", type=int, default=7)
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.1, 10.0, 1000.0])
    ap.add_argument("--cv-shape", type=int, nargs=2, default=[30, 60])
    ap.add_argument("--cv-targets", type=int, default=12)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    grid = list(np.geomspace(1e-2, 1e4, 13))
    for fit_intercept in (True, False):
        suffix = "intercept" if fit_intercept else "no_intercept"
        n, p = args.kernel_shape
        ridge_case(args.out, f"sklearn_kernel_{suffix}", rng, n, p, args.targets, args.test_rows, args.alphas, fit_intercept)
        n, p = args.primal_shape
        ridge_case(args.out, f"sklearn_primal_{suffix}", rng, n, p, args.targets, args.test_rows, args.alphas, fit_intercept)
        n, p = args.kernel_shape
        loo_case(args.out, f"loo_kernel_{suffix}", rng, n, p, args.cv_targets, grid, fit_intercept)
        n, p = args.primal_shape
        loo_case(args.out, f"loo_primal_{suffix}", rng, n, p, args.cv_targets, grid, fit_intercept)
        n, p = args.cv_shape
        himalaya_case(args.out, f"himalaya_kfold_{suffix}", rng, n, p, args.cv_targets, args.test_rows, grid, fit_intercept, 5)
    n, p = args.kernel_shape
    stream_case(args.out, rng, n, p, args.test_rows, 10.0)
    numpy_model_case(args.out, rng, n, p, args.targets, args.test_rows, 10.0)


if __name__ == "__main__":
    main()

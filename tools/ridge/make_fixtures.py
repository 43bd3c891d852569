"""Regenerate the parity fixtures of the `ridge` crate from the reference Python packages.

Every number the Rust tests compare against is computed here by scikit-learn (`Ridge`,
`RidgeCV`), by himalaya (`KernelRidgeCV`), or by brute force (leave-one-out by refitting
`Ridge` n times; GCV from the explicit hat matrix). The `exact_*` fixtures (issue 15) hold GCV
and leave-one-out tables, weights and predictions in 60-digit arithmetic (mpmath) on alpha grids
reaching far below and above the spectrum. Inputs are drawn as float32 so that the Rust side,
which takes f32 inputs, sees exactly the same numbers as the reference.

Usage (from the repository root):
    /root/.cache/brain-diffuser/torch-2.11.0/bin/python tools/ridge/make_fixtures.py \
        --out crates/ridge/tests/fixtures --seed 0 \
        --kernel-shape 20 50 --primal-shape 60 15 --targets 6 --test-rows 7 \
        --alphas 0.1 10 1000 --cv-shape 30 60 --cv-targets 12
Only the exact tables (a few minutes):
    /root/.cache/brain-diffuser/torch-2.11.0/bin/python tools/ridge/make_fixtures.py \
        --out crates/ridge/tests/fixtures --seed 0 --only exact --digits 60
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


# --- Exact GCV / leave-one-out tables (issue 15, point 4) -------------------------------------

def exact_tables(x, y, alphas, fit_intercept, dps):
    """GCV scores and leave-one-out MSEs (alphas x targets) in `dps`-digit arithmetic (mpmath).

    The inputs are float32 values, so the problem is exactly representable; everything is then
    computed from the explicit residual operator M = I - H (H the hat matrix, intercept
    included), never from an eigendecomposition:
        n <= p: M = a (Kc + aI)^-1 - [intercept] 11^T/n,  Kc = Xc Xc^T,
        n >  p: M = I - Xc (Xc^T Xc + aI)^-1 Xc^T - [intercept] 11^T/n,
    GCV = (|M y|^2/n) / (tr(M)/n)^2 and LOO = mean_i ((M y)_i / M_ii)^2 (exact for ridge with an
    unpenalised intercept; checked against refitting below)."""
    from mpmath import mp
    mp.dps = dps
    n, p = x.shape
    X = mp.matrix(x.tolist())
    Y = mp.matrix(y.tolist())
    if fit_intercept:
        for j in range(p):
            m = mp.fsum(X[i, j] for i in range(n)) / n
            for i in range(n):
                X[i, j] -= m
    ones = mp.matrix(n, n)
    if fit_intercept:
        for i in range(n):
            for k in range(n):
                ones[i, k] = mp.mpf(1) / n
    eye_n = mp.eye(n)
    if n <= p:
        gram = X * X.T
    else:
        gram = X.T * X
    gcv = np.zeros((len(alphas), y.shape[1]))
    loo = np.zeros((len(alphas), y.shape[1]))
    for ai, alpha in enumerate(alphas):
        a = mp.mpf(float(alpha))
        shifted = gram + a * mp.eye(gram.rows)
        if n <= p:
            resid_op = a * mp.inverse(shifted) - ones
        else:
            resid_op = eye_n - X * mp.inverse(shifted) * X.T - ones
        r = resid_op * Y
        trace = mp.fsum(resid_op[i, i] for i in range(n))
        for j in range(y.shape[1]):
            ssr = mp.fsum(r[i, j] ** 2 for i in range(n))
            gcv[ai, j] = float((ssr / n) / (trace / n) ** 2)
            loo[ai, j] = float(mp.fsum((r[i, j] / resid_op[i, i]) ** 2 for i in range(n)) / n)
    return gcv, loo


def brute_force_loo(x, y, alpha, fit_intercept, dps):
    """Leave-one-out MSE of one target by refitting ridge (intercept by centring) n times in
    `dps`-digit arithmetic: the independent check of the closed form above."""
    from mpmath import mp
    mp.dps = dps
    n, p = x.shape
    a = mp.mpf(float(alpha))
    total = mp.mpf(0)
    for i in range(n):
        keep = [k for k in range(n) if k != i]
        X = mp.matrix([[x[k, j] for j in range(p)] for k in keep])
        yv = mp.matrix([y[k] for k in keep])
        xm = [mp.fsum(X[k, j] for k in range(n - 1)) / (n - 1) if fit_intercept else mp.mpf(0) for j in range(p)]
        ym = mp.fsum(yv) / (n - 1) if fit_intercept else mp.mpf(0)
        for k in range(n - 1):
            yv[k] -= ym
            for j in range(p):
                X[k, j] -= xm[j]
        if n - 1 <= p:
            dual = mp.lu_solve(X * X.T + a * mp.eye(n - 1), yv)
            w = X.T * dual
        else:
            w = mp.lu_solve(X.T * X + a * mp.eye(p), X.T * yv)
        pred = ym + mp.fsum((x[i, j] - xm[j]) * w[j] for j in range(p))
        total += (y[i] - pred) ** 2
    return float(total / n)


def exact_fit(x, y, x_test, alpha, fit_intercept, dps):
    """Ridge weights (d x p, sklearn's coef_ layout) and test predictions in `dps`-digit
    arithmetic: W = Xc^T (Kc + aI)^-1 Yc (n <= p) or (Xc^T Xc + aI)^-1 Xc^T Yc (n > p)."""
    from mpmath import mp
    mp.dps = dps
    n, p = x.shape
    X = mp.matrix(x.tolist())
    Y = mp.matrix(y.tolist())
    xm = [mp.fsum(X[i, j] for i in range(n)) / n if fit_intercept else mp.mpf(0) for j in range(p)]
    ym = [mp.fsum(Y[i, j] for i in range(n)) / n if fit_intercept else mp.mpf(0) for j in range(y.shape[1])]
    for i in range(n):
        for j in range(p):
            X[i, j] -= xm[j]
        for j in range(y.shape[1]):
            Y[i, j] -= ym[j]
    a = mp.mpf(float(alpha))
    if n <= p:
        w = X.T * (mp.inverse(X * X.T + a * mp.eye(n)) * Y)
    else:
        w = mp.inverse(X.T * X + a * mp.eye(p)) * (X.T * Y)
    xt = mp.matrix(x_test.tolist())
    for i in range(xt.rows):
        for j in range(p):
            xt[i, j] -= xm[j]
    pred = xt * w
    coef = np.array([[float(w[f, t]) for f in range(p)] for t in range(y.shape[1])])
    pred = np.array([[float(pred[i, t] + ym[t]) for t in range(y.shape[1])] for i in range(xt.rows)])
    return coef, pred


def margins(table):
    """Per target: (second best - best) / best over the candidates (the exact choice's margin)."""
    s = np.sort(table, axis=0)
    return (s[1] - s[0]) / s[0]


def exact_case(out, name, rng, n, p, d, fit_intercept, dps, alphas=None):
    """A problem, an alpha grid and its exact GCV / LOO tables. Without `alphas`, the grid runs
    from 1e-8 x the smallest nonzero eigenvalue of the centred Gram matrix to 1e6 x the largest,
    two per decade. Noise levels run from 0 (n < p; 1e-4 for n > p) to 3."""
    # A target in the span of X is only possible for n < p: for n > p its least-squares residual
    # would be the float32 rounding of y, which float64 resolves only to ~1e-8 relative (a
    # residual r is resolved to ~eps |y| / |r|); the quietest n > p target has noise 1e-4 of y.
    floor = [0.0] if n <= p else [1e-4]
    noise = np.concatenate([floor, np.geomspace(3e-4, 3.0, d - 1)])
    x, x_test, y = draw_problem(rng, n, p, d, 5, noise)
    xc = x - x.mean(0) if fit_intercept else x
    small = xc @ xc.T if n <= p else xc.T @ xc
    lam = np.linalg.eigvalsh(small)
    rank = min(n - int(fit_intercept), p)
    lam_min, lam_max = lam[-rank], lam[-1]
    if alphas is None:
        lo, hi = np.log10(1e-8 * lam_min), np.log10(1e6 * lam_max)
        alphas = np.logspace(lo, hi, int(np.ceil(2 * (hi - lo))) + 1)
    alphas = np.asarray(alphas, dtype=np.float64)
    gcv, loo = exact_tables(x, y, alphas, fit_intercept, dps)
    # The closed form equals refitting without each sample, at both ends of the grid.
    for ai in (0, len(alphas) - 1):
        for j in (0,):
            brute = brute_force_loo(x, y[:, j], alphas[ai], fit_intercept, dps)
            assert abs(brute - loo[ai, j]) <= 1e-25 * loo[ai, j], (name, ai, j, brute, loo[ai, j])
    # scikit-learn's RidgeCV (efficient LOO, eigen / svd modes) where its float64 rounding allows.
    mode = "eigen" if n <= p else "svd"
    cv = RidgeCV(alphas=alphas, fit_intercept=fit_intercept, alpha_per_target=True, store_cv_results=True,
                 gcv_mode=mode).fit(x, y)
    sk_loo = cv.cv_results_.mean(0).T  # (alphas, targets)
    sk_dev = (np.abs(sk_loo - loo) / loo).max(1)
    print(f"{name}: {n}x{p}, intercept {fit_intercept}, eigenvalues {lam_min:.3g}..{lam_max:.3g}, "
          f"{len(alphas)} alphas {alphas[0]:.3g}..{alphas[-1]:.3g}")
    print(f"  GCV choice {alphas[gcv.argmin(0)]}, min margin {margins(gcv).min():.2e}")
    print(f"  LOO choice {alphas[loo.argmin(0)]}, min margin {margins(loo).min():.2e}")
    print(f"  sklearn RidgeCV(gcv_mode={mode!r}) LOO rel. deviation per alpha: {np.array2string(sk_dev, precision=1)}")
    # Weights and predictions at the smallest alpha and the middle one (where a zero eigenvalue
    # must add nothing to the fit).
    fit_alphas = np.asarray([alphas[0], alphas[len(alphas) // 2]])
    fits = [exact_fit(x, y, x_test, a, fit_intercept, dps) for a in fit_alphas]
    tensors = {"x": x.astype(np.float32), "y": y.astype(np.float32), "alphas": alphas,
               "x_test": x_test.astype(np.float32), "fit_alphas": fit_alphas,
               "coef_0": fits[0][0], "pred_0": fits[0][1], "coef_1": fits[1][0], "pred_1": fits[1][1],
               "gcv_score": gcv, "loo_mse": loo,
               "best_alpha_gcv": alphas[gcv.argmin(0)], "best_alpha_loo": alphas[loo.argmin(0)],
               "gcv_margin": margins(gcv), "loo_margin": margins(loo),
               "eigen_range": np.asarray([lam_min, lam_max]),
               "sklearn_loo_rel_deviation": sk_dev}
    save(os.path.join(out, f"{name}.safetensors"), tensors,
         {"fit_intercept": fit_intercept, "digits": dps, "mpmath": __import__("mpmath").__version__,
          "sklearn": sklearn.__version__, "sklearn_gcv_mode": mode,
          "reference": "GCV and LOO from the explicit residual operator I - H in mpmath; LOO checked by refitting; "
                       "weights and predictions by solving the normal equations in mpmath"})


def exact_cases(out, seed, dps):
    rng = np.random.default_rng([seed, 15])
    # The case of issue 15: 37 x 211 with intercept, 11 alphas 3e-3..3e3, 13 targets.
    exact_case(out, "exact_issue15", rng, 37, 211, 13, True, dps, alphas=np.geomspace(3e-3, 3e3, 11))
    for fit_intercept in (True, False):
        suffix = "intercept" if fit_intercept else "no_intercept"
        exact_case(out, f"exact_wide_{suffix}", rng, 30, 120, 13, fit_intercept, dps)
        exact_case(out, f"exact_tall_{suffix}", rng, 61, 23, 13, fit_intercept, dps)


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
    ap.add_argument("--only", choices=["all", "parity", "exact"], default="all",
                    help="parity: the sklearn/himalaya/brute-force fixtures; exact: the high-precision GCV/LOO tables")
    ap.add_argument("--digits", type=int, default=60, help="decimal digits of the exact tables (mpmath)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.only in ("all", "exact"):
        exact_cases(args.out, args.seed, args.digits)
    if args.only == "exact":
        return
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

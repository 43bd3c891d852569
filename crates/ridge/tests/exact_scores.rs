//! GCV and leave-one-out score tables against exact values: `tools/ridge/make_fixtures.py`
//! computes them in 60-digit arithmetic (mpmath) from the explicit residual operator `I - H`,
//! checks the leave-one-out closed form by refitting, on alpha grids running from 1e-8 x the
//! smallest nonzero eigenvalue of the centred Gram matrix to 1e6 x the largest (n < p and n > p,
//! with and without intercept), plus the 37 x 211 case of issue 15.

mod common;

use common::{Fixture, relative_error};
use ridge::{
    AlphaGrid, AlphaPolicy, AlphaScope, Criterion, FitOptions, ProblemOptions, RidgeModel, RidgeProblem, SolverForm,
};

/// Relative tolerance of every score. The scores are computed in f64 from the same f32 inputs;
/// every quantity is a sum of nonnegative terms (see `Scorer` in src/fit.rs), so rounding enters
/// only through the Gram matrix and its eigendecomposition, about `eps * max(n, p) * cond` with
/// `cond = lambda_max / lambda_min <= 40` in these fixtures (~1e-12), and, in the primal form
/// with n > p, through the least-squares residual `Yc - U U^T Yc`, resolved to
/// `eps |y| / |residual|` (the quietest n > p target has noise 1e-4: ~1e-11). Observed: at most
/// 6e-15, and 7e-12 on `exact_tall_intercept` (printed by each test with `--nocapture`).
const SCORE_TOL: f64 = 1e-10;

/// Two candidates whose exact scores differ by less than this (relative) are a tie: either
/// choice is accepted. Twice the score tolerance, so that any larger exact margin is resolved.
const TIE_MARGIN: f64 = 2.0 * SCORE_TOL;

/// Predictions and weights, relative to the largest magnitude: the prediction operator and the
/// target GEMM run in f32 (as against sklearn in tests/sklearn_parity.rs).
const FIT_TOL: f64 = 1e-4;

fn fit(fx: &Fixture, criterion: Criterion, form: Option<SolverForm>, block_cols: usize) -> ridge::RidgeFit {
    let options = ProblemOptions { fit_intercept: fx.flag("fit_intercept"), form, ..ProblemOptions::default() };
    let problem = RidgeProblem::new(fx.matrix_f32("x").view(), options).unwrap();
    let y = fx.matrix_f32("y");
    let policy =
        AlphaPolicy::Grid(AlphaGrid { alphas: fx.vector("alphas").to_vec(), criterion, scope: AlphaScope::PerTarget });
    problem.fit_predict(&mut y.view(), &policy, &[], &FitOptions { block_cols, ..FitOptions::default() }).unwrap()
}

/// Returns the worst relative score error.
fn check(name: &str, criterion: Criterion, form: Option<SolverForm>, block_cols: usize) -> f64 {
    let fx = Fixture::load(name);
    let (table, best, margin) = match criterion {
        Criterion::Gcv => ("gcv_score", "best_alpha_gcv", "gcv_margin"),
        _ => ("loo_mse", "best_alpha_loo", "loo_margin"),
    };
    let (want, best, margin) = (fx.matrix(table), fx.vector(best), fx.vector(margin));
    let grid = fx.vector("alphas");
    let got = fit(&fx, criterion, form, block_cols);
    let scores = got.scores.as_ref().unwrap();
    assert_eq!(scores.dim(), want.dim(), "{name}: table shape");
    let mut worst = 0f64;
    for ((a, j), w) in want.indexed_iter() {
        let e = (scores[[a, j]] - w).abs() / w.abs();
        worst = worst.max(e);
        assert!(
            e <= SCORE_TOL,
            "{name} {criterion:?} {form:?}: alpha #{a} ({}), target {j}: got {}, exact {w} (rel. error {e:.2e})",
            grid[a],
            scores[[a, j]]
        );
    }
    for j in 0..best.len() {
        let chosen = grid.iter().position(|&g| g == got.alphas[j]).unwrap();
        if margin[j] > TIE_MARGIN {
            assert_eq!(got.alphas[j], best[j], "{name} {criterion:?} {form:?}: alpha of target {j}");
        } else {
            let exact_best = (0..grid.len()).map(|a| want[[a, j]]).fold(f64::INFINITY, f64::min);
            let gap = (want[[chosen, j]] - exact_best) / exact_best;
            assert!(gap <= TIE_MARGIN, "{name} {criterion:?} {form:?}: target {j} chose a non-tied alpha");
        }
    }
    worst
}

fn check_all(name: &str) {
    for criterion in [Criterion::Gcv, Criterion::LeaveOneOut] {
        // The natural form, then each form forced (the other one has zero eigenvalues).
        for form in [None, Some(SolverForm::Kernel), Some(SolverForm::Primal)] {
            let worst = [1, 5, 64].iter().map(|&b| check(name, criterion, form, b)).fold(0f64, f64::max);
            println!("{name} {criterion:?} {form:?}: worst relative score error {worst:.2e}");
        }
    }
}

#[test]
fn issue15_gcv_table_and_choices_are_exact() {
    // 37 x 211 with intercept, 11 alphas 3e-3..3e3: before the fix the GCV table was off by
    // 4e-5 and 3 of the 13 chosen alphas differed from the exact ones (margins down to 1e-6).
    check_all("exact_issue15");
}

#[test]
fn wide_problems_are_exact_far_below_and_above_the_spectrum() {
    check_all("exact_wide_intercept");
    check_all("exact_wide_no_intercept");
}

#[test]
fn tall_problems_are_exact_far_below_and_above_the_spectrum() {
    check_all("exact_tall_intercept");
    check_all("exact_tall_no_intercept");
}

#[test]
fn fixture_grids_reach_far_below_and_above_the_spectrum() {
    for name in ["exact_wide_intercept", "exact_wide_no_intercept", "exact_tall_intercept", "exact_tall_no_intercept"] {
        let fx = Fixture::load(name);
        let (grid, range) = (fx.vector("alphas"), fx.vector("eigen_range"));
        assert!(grid[0] <= 1.0000001e-8 * range[0], "{name}: smallest alpha {} vs lambda_min {}", grid[0], range[0]);
        assert!(grid[grid.len() - 1] >= 0.9999999e6 * range[1], "{name}: largest alpha vs lambda_max {}", range[1]);
    }
}

/// The spectral route (one eigendecomposition for all alphas) at the smallest alpha of the grid
/// and at a middle one, in the natural form and with each form forced: zero eigenvalues (the
/// forced form's rank deficiency) must add nothing to predictions or weights, as in exact
/// arithmetic, even where alpha is 1e-8 x the smallest nonzero eigenvalue.
fn check_fit(name: &str) {
    let fx = Fixture::load(name);
    let (x, y, x_test) = (fx.matrix_f32("x"), fx.matrix_f32("y"), fx.matrix_f32("x_test"));
    let fit_alphas = fx.vector("fit_alphas");
    for form in [None, Some(SolverForm::Kernel), Some(SolverForm::Primal)] {
        let problem = RidgeProblem::new(
            x.view(),
            ProblemOptions { fit_intercept: fx.flag("fit_intercept"), form, ..ProblemOptions::default() },
        )
        .unwrap();
        problem.precompute_spectrum().unwrap();
        let test = problem.evaluation_set(x_test.view()).unwrap();
        for (i, &alpha) in fit_alphas.iter().enumerate() {
            let policy = AlphaPolicy::Fixed(alpha);
            let fit = problem.fit_predict(&mut y.view(), &policy, &[&test], &FitOptions::default()).unwrap();
            let e = relative_error(&fit.predictions[0], &fx.matrix(&format!("pred_{i}")));
            assert!(e < FIT_TOL, "{name} {form:?} alpha {alpha}: prediction rel. error {e:.2e}");
            let model = RidgeModel::fit(&problem, &mut y.view(), &policy, &FitOptions::default()).unwrap();
            let e = relative_error(&model.coef().to_owned(), &fx.matrix(&format!("coef_{i}")));
            assert!(e < FIT_TOL, "{name} {form:?} alpha {alpha}: coef rel. error {e:.2e}");
        }
    }
}

#[test]
fn spectral_fits_equal_exact_ridge_far_below_the_spectrum() {
    for name in [
        "exact_issue15",
        "exact_wide_intercept",
        "exact_wide_no_intercept",
        "exact_tall_intercept",
        "exact_tall_no_intercept",
    ] {
        check_fit(name);
    }
}

//! Alpha grids against independent truths: brute-force leave-one-out (sklearn `Ridge` refitted
//! n times), GCV from the explicit hat matrix, and himalaya's `KernelRidgeCV` (5-fold).

mod common;

use common::{Fixture, relative_error};
use ndarray::Array2;
use ridge::{AlphaGrid, AlphaPolicy, AlphaScope, Criterion, FitOptions, ProblemOptions, RidgeProblem, SolverForm};

fn grid_fit(
    fx: &Fixture,
    criterion: Criterion,
    scope: AlphaScope,
    block_cols: usize,
) -> (RidgeProblem, ridge::RidgeFit) {
    grid_fit_form(fx, criterion, scope, block_cols, None)
}

fn grid_fit_form(
    fx: &Fixture,
    criterion: Criterion,
    scope: AlphaScope,
    block_cols: usize,
    form: Option<SolverForm>,
) -> (RidgeProblem, ridge::RidgeFit) {
    let problem = RidgeProblem::new(
        fx.matrix_f32("x").view(),
        ProblemOptions { fit_intercept: fx.flag("fit_intercept"), form, ..ProblemOptions::default() },
    )
    .unwrap();
    let y = fx.matrix_f32("y");
    let policy = AlphaPolicy::Grid(AlphaGrid { alphas: fx.vector("alphas").to_vec(), criterion, scope });
    let fit =
        problem.fit_predict(&mut y.view(), &policy, &[], &FitOptions { block_cols, ..FitOptions::default() }).unwrap();
    (problem, fit)
}

fn assert_scores_close(name: &str, got: &Array2<f64>, want: &Array2<f64>, tol: f64) {
    assert_eq!(got.dim(), want.dim(), "{name}: score table shape");
    for ((a, j), w) in want.indexed_iter() {
        let g = got[[a, j]];
        assert!((g - w).abs() <= tol * w.abs(), "{name}: score of alpha #{a}, target {j}: got {g}, want {w}");
    }
}

/// Chosen alphas are compared exactly with the reference's choice. Across CPUs only our own
/// rounding changes: the scores are f64 from the same f32 inputs, reproducible to about 1e-12
/// relative whatever the SIMD kernels or thread count (see tests/exact_scores.rs). An exact
/// comparison is sound while each best score leads the next by far more than that: this bound
/// (1000x) is asserted on every table a choice is made from (smallest lead found: 1.5e-6).
const CHOICE_MARGIN: f64 = 1e-9;

/// The smallest lead of the best score over the next one, relative to the best, over the columns
/// of a score table (alphas x targets, lower is better).
fn smallest_margin(scores: &Array2<f64>) -> f64 {
    scores
        .columns()
        .into_iter()
        .map(|col| {
            let mut v = col.to_vec();
            v.sort_by(f64::total_cmp);
            (v[1] - v[0]) / v[0].abs()
        })
        .fold(f64::INFINITY, f64::min)
}

fn check_loo(name: &str) {
    let fx = Fixture::load(name);
    // Exact alpha choices below: see CHOICE_MARGIN.
    let loo = fx.matrix("loo_mse");
    let group = loo.sum_axis(ndarray::Axis(1)).insert_axis(ndarray::Axis(1));
    for (what, table) in [("per target", &loo), ("group", &group)] {
        let margin = smallest_margin(table);
        assert!(margin > CHOICE_MARGIN, "{name}: {what} scores too close to choose exactly ({margin:e})");
    }
    for block_cols in [1, 5, 64] {
        let (_, fit) = grid_fit(&fx, Criterion::LeaveOneOut, AlphaScope::PerTarget, block_cols);
        assert_scores_close(name, fit.scores.as_ref().unwrap(), &fx.matrix("loo_mse"), 1e-6);
        assert_eq!(fit.alphas, fx.vector("best_alpha_per_target").to_vec(), "{name}: per-target alphas");
        let (_, fit) = grid_fit(&fx, Criterion::LeaveOneOut, AlphaScope::PerGroup, block_cols);
        let want = fx.vector("best_alpha_group")[0];
        assert!(fit.alphas.iter().all(|&a| a == want), "{name}: group alpha {:?} != {want}", fit.alphas);
    }
    let (_, fit) = grid_fit(&fx, Criterion::Gcv, AlphaScope::PerTarget, 5);
    assert_scores_close(name, fit.scores.as_ref().unwrap(), &fx.matrix("gcv_score"), 1e-6);
    // The other form on the same data has a rank-deficient Gram matrix (zero eigenvalues):
    // both criteria must still equal the truths.
    for form in [SolverForm::Kernel, SolverForm::Primal] {
        for (criterion, truth) in [(Criterion::LeaveOneOut, "loo_mse"), (Criterion::Gcv, "gcv_score")] {
            let (_, fit) = grid_fit_form(&fx, criterion, AlphaScope::PerTarget, 5, Some(form));
            assert_scores_close(
                &format!("{name} {form:?} {criterion:?}"),
                fit.scores.as_ref().unwrap(),
                &fx.matrix(truth),
                1e-5,
            );
        }
    }
}

#[test]
fn log_spaced_grid_equals_numpy_geomspace() {
    // The fixtures' grid is numpy.geomspace(1e-2, 1e4, 13).
    let want = Fixture::load("loo_kernel_intercept").vector("alphas");
    let got = AlphaGrid::log_spaced(-2.0, 4.0, 13);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want.iter()) {
        assert!((g - w).abs() <= 1e-12 * w, "{g} vs {w}");
    }
}

#[test]
fn leave_one_out_equals_brute_force_kernel_form() {
    check_loo("loo_kernel_intercept");
    check_loo("loo_kernel_no_intercept");
}

#[test]
fn leave_one_out_equals_brute_force_primal_form() {
    check_loo("loo_primal_intercept");
    check_loo("loo_primal_no_intercept");
}

#[test]
fn column_groups_share_the_alpha_minimising_their_mean_score() {
    let fx = Fixture::load("loo_kernel_intercept");
    let loo = fx.matrix("loo_mse");
    let grid = fx.vector("alphas");
    // Groups of 4 targets; block sizes that split groups force the two-pass route.
    for block_cols in [3, 4, 12] {
        let (_, fit) = grid_fit(&fx, Criterion::LeaveOneOut, AlphaScope::PerColumnGroup(4), block_cols);
        for g in 0..loo.ncols() / 4 {
            let means: Vec<f64> =
                (0..grid.len()).map(|a| (4 * g..4 * g + 4).map(|j| loo[[a, j]]).sum::<f64>()).collect();
            // Exact choice: see CHOICE_MARGIN.
            let margin = smallest_margin(&Array2::from_shape_vec((grid.len(), 1), means.clone()).unwrap());
            assert!(margin > CHOICE_MARGIN, "group {g}: scores too close to choose exactly ({margin:e})");
            let best = (0..grid.len()).min_by(|&a, &b| means[a].total_cmp(&means[b])).unwrap();
            for j in 4 * g..4 * g + 4 {
                assert_eq!(fit.alphas[j], grid[best], "group {g}, block {block_cols}");
            }
        }
    }
}

fn check_himalaya(name: &str) {
    let fx = Fixture::load(name);
    let folds: usize = fx.metadata["folds"].parse().unwrap();
    let (problem, _) = grid_fit(&fx, Criterion::Gcv, AlphaScope::PerTarget, 64);
    let x_test = fx.matrix_f32("x_test");
    let test = problem.evaluation_set(x_test.view()).unwrap();
    let policy = AlphaPolicy::Grid(AlphaGrid {
        alphas: fx.vector("alphas").to_vec(),
        criterion: Criterion::KFold { folds },
        scope: AlphaScope::PerTarget,
    });
    let y = fx.matrix_f32("y");
    let fit = problem
        .fit_predict(&mut y.view(), &policy, &[&test], &FitOptions { block_cols: 5, ..FitOptions::default() })
        .unwrap();
    // Exact alpha choice: see CHOICE_MARGIN (our fold-mean MSE table is the one chosen from).
    let margin = smallest_margin(fit.scores.as_ref().unwrap());
    println!("{name}: smallest lead of the best k-fold score {margin:e}");
    assert!(margin > CHOICE_MARGIN, "{name}: k-fold scores too close to choose exactly ({margin:e})");
    // himalaya returns its alphas as exp(-log(alpha)), a few ulps off the grid values.
    for (j, (got, want)) in fit.alphas.iter().zip(fx.vector("best_alphas").iter()).enumerate() {
        assert!((got - want).abs() <= 1e-9 * want, "{name}: alpha of target {j}: {got} vs {want}");
    }
    // himalaya reports the fold-mean negative MSE of the chosen alpha.
    let scores = fit.scores.as_ref().unwrap();
    let grid = fx.vector("alphas");
    for (j, want) in fx.vector("cv_scores").iter().enumerate() {
        let a = grid.iter().position(|&g| g == fit.alphas[j]).unwrap();
        let got = -scores[[a, j]];
        assert!((got - want).abs() <= 1e-6 * want.abs() + 1e-9, "{name}: cv score of target {j}: {got} vs {want}");
    }
    let e = relative_error(&fit.predictions[0], &fx.matrix("pred"));
    assert!(e < 1e-4, "{name}: predictions rel. error {e:e}");
}

#[test]
fn kfold_choice_equals_himalaya_kernel_ridge_cv() {
    check_himalaya("himalaya_kfold_intercept");
    check_himalaya("himalaya_kfold_no_intercept");
}

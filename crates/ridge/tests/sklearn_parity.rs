//! Fixed-alpha fits against scikit-learn `Ridge` (fixtures from tools/ridge/make_fixtures.py).

mod common;

use common::{Fixture, relative_error};
use ndarray::Array2;
use ridge::{AlphaPolicy, FitOptions, GramPrecision, ProblemOptions, RidgeModel, RidgeProblem, SolverForm, Streaming};

const TOL: f64 = 1e-4;

fn check_case(name: &str, natural: SolverForm) {
    let fx = Fixture::load(name);
    let fit_intercept = fx.flag("fit_intercept");
    let x = fx.matrix_f32("x");
    let x_test = fx.matrix_f32("x_test");
    let y = fx.matrix_f32("y");
    let alphas = fx.vector("alphas");
    for form in [None, Some(SolverForm::Kernel), Some(SolverForm::Primal)] {
        let problem =
            RidgeProblem::new(x.view(), ProblemOptions { fit_intercept, form, ..ProblemOptions::default() }).unwrap();
        assert_eq!(problem.form(), form.unwrap_or(natural), "{name}: form");
        let test = problem.evaluation_set(x_test.view()).unwrap();
        for (i, &alpha) in alphas.iter().enumerate() {
            let want_pred = fx.matrix(&format!("pred_{i}"));
            let want_coef = fx.matrix(&format!("coef_{i}"));
            let want_icpt = fx.vector(&format!("intercept_{i}"));
            // Both ways of streaming one alpha: row blocks (accumulated, shifted by the first
            // block's means) and column blocks (centred on the exact means).
            for streaming in [Streaming::Rows, Streaming::Columns] {
                let options = FitOptions { block_cols: 4, streaming, ..FitOptions::default() };
                let fit = problem.fit_predict(&mut y.view(), &AlphaPolicy::Fixed(alpha), &[&test], &options).unwrap();
                let e = relative_error(&fit.predictions[0], &want_pred);
                assert!(e < TOL, "{name} {form:?} alpha {alpha} {streaming:?}: prediction rel. error {e:e}");
            }
            let options = FitOptions { block_cols: 4, ..FitOptions::default() };

            let model = RidgeModel::fit(&problem, &mut y.view(), &AlphaPolicy::Fixed(alpha), &options).unwrap();
            let e = relative_error(&model.coef().to_owned(), &want_coef);
            assert!(e < TOL, "{name} {form:?} alpha {alpha}: coef rel. error {e:e}");
            let icpt = Array2::from_shape_vec((1, want_icpt.len()), model.intercept().to_vec()).unwrap();
            let want = want_icpt.clone().insert_axis(ndarray::Axis(0));
            let scale = want.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
            let diff = icpt.iter().zip(want.iter()).fold(0f64, |m, (g, w)| m.max((f64::from(*g) - w).abs()));
            // Intercepts are compared on the scale of the predictions (they are exactly zero
            // without intercept).
            let pscale = want_pred.iter().fold(0f64, |m, v| m.max(v.abs()));
            assert!(diff / scale.max(pscale) < TOL, "{name} {form:?} alpha {alpha}: intercept error {diff:e}");
            let e = relative_error(&model.predict(x_test.view()).unwrap(), &want_pred);
            assert!(e < TOL, "{name} {form:?} alpha {alpha}: model prediction rel. error {e:e}");
        }
        // The spectral route (one eigendecomposition for all alphas) gives the same numbers.
        problem.precompute_spectrum().unwrap();
        let test = problem.evaluation_set(x_test.view()).unwrap();
        let per_target: Vec<f64> = (0..y.ncols()).map(|j| alphas[j % alphas.len()]).collect();
        let fit = problem
            .fit_predict(&mut y.view(), &AlphaPolicy::PerTarget(per_target.clone()), &[&test], &FitOptions::default())
            .unwrap();
        for (j, &alpha) in per_target.iter().enumerate() {
            let i = alphas.iter().position(|&a| a == alpha).unwrap();
            let want = fx.matrix(&format!("pred_{i}")).column(j).to_owned().insert_axis(ndarray::Axis(1));
            let got = fit.predictions[0].column(j).to_owned().insert_axis(ndarray::Axis(1));
            let e = relative_error(&got, &want);
            assert!(e < TOL, "{name} {form:?} spectral target {j} alpha {alpha}: rel. error {e:e}");
        }
        let model = RidgeModel::fit(
            &problem,
            &mut y.view(),
            &AlphaPolicy::PerTarget(per_target.clone()),
            &FitOptions::default(),
        )
        .unwrap();
        for (j, &alpha) in per_target.iter().enumerate() {
            let i = alphas.iter().position(|&a| a == alpha).unwrap();
            let want = fx.matrix(&format!("coef_{i}")).row(j).to_owned().insert_axis(ndarray::Axis(0));
            let got = model.coef().row(j).to_owned().insert_axis(ndarray::Axis(0));
            let e = relative_error(&got, &want);
            assert!(e < TOL, "{name} {form:?} spectral coef of target {j}: rel. error {e:e}");
        }
    }
}

/// f32 Gram matrix: the alphas far above its rounding are factorised from it, the smallest
/// from the f64 Gram matrix; both reproduce scikit-learn's predictions and weights.
fn check_f32_gram(name: &str) {
    let fx = Fixture::load(name);
    let options = ProblemOptions { fit_intercept: fx.flag("fit_intercept"), form: None, gram: GramPrecision::F32 };
    let problem = RidgeProblem::new(fx.matrix_f32("x").view(), options).unwrap();
    let exact =
        RidgeProblem::new(fx.matrix_f32("x").view(), ProblemOptions { gram: GramPrecision::F64, ..options_of(&fx) })
            .unwrap();
    let test = problem.evaluation_set(fx.matrix_f32("x_test").view()).unwrap();
    let exact_test = exact.evaluation_set(fx.matrix_f32("x_test").view()).unwrap();
    let y = fx.matrix_f32("y");
    let alphas = fx.vector("alphas");
    let used: Vec<GramPrecision> = alphas.iter().map(|&a| problem.precision_for(a)).collect();
    assert_eq!(used.first(), Some(&GramPrecision::F64), "{name}: alpha {} is below the f32 rounding", alphas[0]);
    assert_eq!(used.last(), Some(&GramPrecision::F32), "{name}: alpha {} is far above it", alphas[alphas.len() - 1]);
    assert!(alphas.iter().all(|&a| exact.precision_for(a) == GramPrecision::F64));
    for (i, &alpha) in alphas.iter().enumerate() {
        let fit =
            problem.fit_predict(&mut y.view(), &AlphaPolicy::Fixed(alpha), &[&test], &FitOptions::default()).unwrap();
        let e = relative_error(&fit.predictions[0], &fx.matrix(&format!("pred_{i}")));
        assert!(e < TOL, "{name} f32 Gram alpha {alpha}: prediction rel. error {e:e}");
        let model =
            RidgeModel::fit(&problem, &mut y.view(), &AlphaPolicy::Fixed(alpha), &FitOptions::default()).unwrap();
        let e = relative_error(&model.coef().to_owned(), &fx.matrix(&format!("coef_{i}")));
        assert!(e < TOL, "{name} f32 Gram alpha {alpha}: coef rel. error {e:e}");
        if used[i] == GramPrecision::F64 {
            // The fallback factorises the same f64 Gram matrix as an f64 problem.
            let want = exact
                .fit_predict(&mut y.view(), &AlphaPolicy::Fixed(alpha), &[&exact_test], &FitOptions::default())
                .unwrap();
            let e = relative_error(&fit.predictions[0], &want.predictions[0].mapv(f64::from));
            assert!(e < 1e-6, "{name} alpha {alpha}: fallback differs from the f64 problem by {e:e}");
        }
    }
}

fn options_of(fx: &Fixture) -> ProblemOptions {
    ProblemOptions { fit_intercept: fx.flag("fit_intercept"), ..ProblemOptions::default() }
}

#[test]
fn f32_gram_matrix_matches_sklearn_and_falls_back_for_small_alphas() {
    for name in ["sklearn_kernel_intercept", "sklearn_kernel_no_intercept", "sklearn_primal_intercept"] {
        check_f32_gram(name);
    }
}

#[test]
fn kernel_form_with_intercept_matches_sklearn() {
    check_case("sklearn_kernel_intercept", SolverForm::Kernel);
}

#[test]
fn kernel_form_without_intercept_matches_sklearn() {
    check_case("sklearn_kernel_no_intercept", SolverForm::Kernel);
}

#[test]
fn primal_form_with_intercept_matches_sklearn() {
    check_case("sklearn_primal_intercept", SolverForm::Primal);
}

#[test]
fn primal_form_without_intercept_matches_sklearn() {
    check_case("sklearn_primal_no_intercept", SolverForm::Primal);
}

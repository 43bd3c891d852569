//! Fixed-alpha fits against scikit-learn `Ridge` (fixtures from tools/ridge/make_fixtures.py).

mod common;

use common::{Fixture, relative_error};
use ndarray::Array2;
use ridge::{AlphaPolicy, FitOptions, ProblemOptions, RidgeModel, RidgeProblem, SolverForm};

const TOL: f64 = 1e-4;

fn check_case(name: &str, natural: SolverForm) {
    let fx = Fixture::load(name);
    let fit_intercept = fx.flag("fit_intercept");
    let x = fx.matrix_f32("x");
    let x_test = fx.matrix_f32("x_test");
    let y = fx.matrix_f32("y");
    let alphas = fx.vector("alphas");
    for form in [None, Some(SolverForm::Kernel), Some(SolverForm::Primal)] {
        let problem = RidgeProblem::new(x.view(), ProblemOptions { fit_intercept, form }).unwrap();
        assert_eq!(problem.form(), form.unwrap_or(natural), "{name}: form");
        let test = problem.evaluation_set(x_test.view()).unwrap();
        for (i, &alpha) in alphas.iter().enumerate() {
            let want_pred = fx.matrix(&format!("pred_{i}"));
            let want_coef = fx.matrix(&format!("coef_{i}"));
            let want_icpt = fx.vector(&format!("intercept_{i}"));
            let options = FitOptions { block_cols: 4 };
            let fit = problem.fit_predict(&mut y.view(), &AlphaPolicy::Fixed(alpha), &[&test], &options).unwrap();
            let e = relative_error(&fit.predictions[0], &want_pred);
            assert!(e < TOL, "{name} {form:?} alpha {alpha}: prediction rel. error {e:e}");

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

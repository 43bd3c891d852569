//! The `ridge` crate as a [`Regressor`]: one multi-target ridge regression with a fixed alpha (the
//! reference's) or an alpha chosen from a grid.
//!
//! This adapter keeps the fitted weights, which suits a swappable stage and small problems. The
//! pipeline's own regression step uses `ridge::RidgeProblem` directly, so that the three target
//! groups share one Gram matrix and predictions never materialise the weights.

use ndarray::{Array2, ArrayView2};
use ridge::{AlphaPolicy, FitOptions, ProblemOptions, RidgeModel, RidgeProblem};

use crate::{Regressor, StageError};

/// A ridge regression from fMRI rows to feature rows.
pub struct RidgeRegressor {
    policy: AlphaPolicy,
    fit_intercept: bool,
    model: Option<RidgeModel>,
    name: String,
}

impl RidgeRegressor {
    /// A regression with the fixed `alpha` (50,000 / 60,000 / 100,000 in the paper), intercept by
    /// centring as scikit-learn's `Ridge(fit_intercept=True)`.
    pub fn fixed(alpha: f64, fit_intercept: bool) -> Self {
        Self::with_policy(
            AlphaPolicy::Fixed(alpha),
            fit_intercept,
            format!("ridge:alpha={alpha}:intercept={fit_intercept}"),
        )
    }

    /// A regression whose alphas follow `policy` (e.g. a grid scored by leave-one-out); `name`
    /// identifies the policy in caches and reports.
    pub fn with_policy(policy: AlphaPolicy, fit_intercept: bool, name: String) -> Self {
        Self { policy, fit_intercept, model: None, name }
    }

    /// The fitted model (weights, intercepts, alphas), once [`Regressor::fit`] has run.
    pub fn model(&self) -> Option<&RidgeModel> {
        self.model.as_ref()
    }
}

impl Regressor for RidgeRegressor {
    fn name(&self) -> &str {
        &self.name
    }

    fn fit(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>) -> Result<(), StageError> {
        let options = ProblemOptions { fit_intercept: self.fit_intercept, form: None };
        let problem = RidgeProblem::new(x, options).map_err(|e| StageError::new(&self.name, e))?;
        let mut targets = y;
        let model = RidgeModel::fit(&problem, &mut targets, &self.policy, &FitOptions::default())
            .map_err(|e| StageError::new(&self.name, e))?;
        self.model = Some(model);
        Ok(())
    }

    fn predict(&self, x: ArrayView2<f32>) -> Result<Array2<f32>, StageError> {
        let model = self.model.as_ref().ok_or_else(|| StageError::new(&self.name, "predict called before fit"))?;
        model.predict(x).map_err(|e| StageError::new(&self.name, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    /// One feature, no intercept: the ridge solution is w = sum(x y) / (sum(x^2) + alpha).
    #[test]
    fn matches_the_closed_form_on_one_feature() {
        let x = array![[1.0f32], [2.0], [3.0]];
        let y = array![[2.0f32, -1.0], [4.0, -2.0], [6.5, -3.0]];
        let mut ridge = RidgeRegressor::fixed(2.0, false);
        assert!(ridge.predict(x.view()).is_err(), "predict before fit must fail");
        ridge.fit(x.view(), y.view()).unwrap();
        let p = ridge.predict(array![[10.0f32]].view()).unwrap();
        let w0 = (2.0 + 8.0 + 19.5) / (14.0 + 2.0);
        let w1 = (-1.0 - 4.0 - 9.0) / (14.0 + 2.0);
        assert!((p[[0, 0]] - 10.0 * w0).abs() < 1e-4, "{p}");
        assert!((p[[0, 1]] - 10.0 * w1).abs() < 1e-4, "{p}");
    }

    #[test]
    fn bad_input_is_a_stage_error() {
        let mut ridge = RidgeRegressor::fixed(1.0, true);
        let err = ridge.fit(array![[1.0f32], [f32::NAN]].view(), array![[1.0f32], [2.0]].view()).unwrap_err();
        assert!(err.to_string().contains("ridge:alpha=1"), "{err}");
    }
}

//! The `ridge` crate as a [`Regressor`]: multi-target ridge regressions, one alpha per target
//! group (the reference's fixed alphas) or alphas chosen from a grid; a downstream group gets its
//! alpha with [`RidgeRegressor::with_alpha`].
//!
//! [`Regressor::prepare`] builds one `ridge::RidgeProblem` (the Gram matrix of the training fMRI)
//! and the evaluation sets (the Gram matrix by f32 GEMMs when every alpha is fixed, see
//! [`RidgeRegressor::gram_precision`]); every group is then fitted on it with its targets
//! streaming from disk in row blocks, and the evaluation sets are predicted during the stream, so the weights never
//! materialise (the same procedure, time and memory as calling `ridge` directly).

use std::collections::BTreeMap;

use ndarray::{Array2, ArrayView2};
use ridge::{AlphaPolicy, EvaluationSet, FitOptions, GramPrecision, ProblemOptions, RidgeProblem};
use tracing::info;

use crate::config::RegressionSection;
use crate::{PreparedRegressor, Regressor, StageError, TargetGroup, TargetSource};

/// Ridge regressions from fMRI rows to feature rows, one alpha policy per target group.
pub struct RidgeRegressor {
    policies: Policies,
    fit_intercept: bool,
    /// `None`: [`RidgeRegressor::gram_precision`]'s rule.
    gram: Option<GramPrecision>,
    name: String,
}

/// The alpha policy of each group; `every` for groups without one of their own.
#[derive(Debug, Clone)]
struct Policies {
    by_group: BTreeMap<TargetGroup, AlphaPolicy>,
    every: Option<AlphaPolicy>,
}

impl Policies {
    /// Whether every policy is a fixed alpha (one per target or per group), no grid.
    fn all_fixed(&self) -> bool {
        self.by_group.values().chain(&self.every).all(|p| !matches!(p, AlphaPolicy::Grid(_)))
    }

    /// The policy of `group`, or an error naming the group and how to give it one.
    fn of(&self, name: &str, group: &TargetGroup) -> Result<&AlphaPolicy, StageError> {
        self.by_group.get(group).or(self.every.as_ref()).ok_or_else(|| {
            let known: Vec<&str> = self.by_group.keys().map(TargetGroup::name).collect();
            StageError::new(
                name,
                format!("no alpha for target group '{group}' (alphas are set for {known:?}): give one with RidgeRegressor::with_alpha"),
            )
        })
    }
}

impl RidgeRegressor {
    /// Regressions with the fixed alphas of `config` (50,000 / 60,000 / 100,000 in the paper),
    /// intercept by centring as scikit-learn's `Ridge(fit_intercept=True)`: the workflow's default.
    pub fn from_config(config: &RegressionSection) -> Self {
        let by_group = TargetGroup::PAPER
            .into_iter()
            .filter_map(|group| config.alpha(&group).map(|alpha| (group, AlphaPolicy::Fixed(alpha))))
            .collect();
        Self {
            policies: Policies { by_group, every: None },
            fit_intercept: config.fit_intercept,
            gram: None,
            name: "ridge".into(),
        }
    }

    /// The same regressions with `policy` for `group` (a downstream group, or another policy for
    /// one of the paper's).
    pub fn with_alpha(mut self, group: TargetGroup, policy: AlphaPolicy) -> Self {
        self.policies.by_group.insert(group, policy);
        self
    }

    /// Regressions with the same fixed `alpha` for every group.
    pub fn fixed(alpha: f64, fit_intercept: bool) -> Self {
        Self::with_policy(AlphaPolicy::Fixed(alpha), fit_intercept)
    }

    /// Regressions whose alphas follow `policy` for every group (e.g. a grid scored by
    /// leave-one-out).
    pub fn with_policy(policy: AlphaPolicy, fit_intercept: bool) -> Self {
        Self {
            policies: Policies { by_group: BTreeMap::new(), every: Some(policy) },
            fit_intercept,
            gram: None,
            name: "ridge".into(),
        }
    }

    /// The same regressions with the Gram matrix in `precision` instead of the default rule.
    pub fn with_gram_precision(mut self, precision: GramPrecision) -> Self {
        self.gram = Some(precision);
        self
    }

    /// The arithmetic of the Gram matrix: as set, else f32 GEMMs when every group has a fixed
    /// alpha (the reference's 50,000 / 60,000 / 100,000, far above the f32 rounding of the Gram
    /// matrix; predictions within 1e-4 of scikit-learn's at subject-1 scale, docs/ridge.md) and
    /// f64 as soon as a group chooses its alpha from a grid.
    pub fn gram_precision(&self) -> GramPrecision {
        self.gram.unwrap_or(if self.policies.all_fixed() { GramPrecision::F32 } else { GramPrecision::F64 })
    }
}

impl Regressor for RidgeRegressor {
    fn name(&self) -> &str {
        &self.name
    }

    /// `alpha = 50000` for a fixed alpha (the policy otherwise), `fit_intercept = true` and
    /// `gram_precision = "f32"`.
    fn settings(&self, group: &TargetGroup) -> Result<String, StageError> {
        let alpha = match self.policies.of(&self.name, group)? {
            AlphaPolicy::Fixed(alpha) => format!("alpha = {alpha}"),
            other => format!("alpha_policy = {:?}", format!("{other:?}")),
        };
        let gram = match self.gram_precision() {
            GramPrecision::F32 => "f32",
            GramPrecision::F64 => "f64",
        };
        Ok(format!("{alpha}\nfit_intercept = {}\ngram_precision = \"{gram}\"\n", self.fit_intercept))
    }

    fn prepare(
        &self,
        train_fmri: ArrayView2<f32>,
        evaluation: &[ArrayView2<f32>],
    ) -> Result<Box<dyn PreparedRegressor>, StageError> {
        let error = |e| StageError::new(&self.name, e);
        let options = ProblemOptions { fit_intercept: self.fit_intercept, form: None, gram: self.gram_precision() };
        let problem = RidgeProblem::new(train_fmri, options).map_err(error)?;
        let evaluation =
            evaluation.iter().map(|x| problem.evaluation_set(*x)).collect::<Result<Vec<_>, _>>().map_err(error)?;
        Ok(Box::new(PreparedRidge { problem, evaluation, policies: self.policies.clone(), name: self.name.clone() }))
    }
}

/// One subject's ridge problem (Gram matrix) and evaluation sets, shared by every group.
struct PreparedRidge {
    problem: RidgeProblem,
    evaluation: Vec<EvaluationSet>,
    policies: Policies,
    name: String,
}

impl PreparedRegressor for PreparedRidge {
    fn fit_predict(
        &mut self,
        group: &TargetGroup,
        targets: &mut dyn TargetSource,
    ) -> Result<Vec<Array2<f32>>, StageError> {
        let started = std::time::Instant::now();
        let evals: Vec<&EvaluationSet> = self.evaluation.iter().collect();
        let policy = self.policies.of(&self.name, group)?;
        let fit = self
            .problem
            .fit_predict(targets, policy, &evals, &FitOptions::default())
            .map_err(|e| StageError::new(&self.name, e))?;
        info!(
            group = group.name(),
            targets = targets.n_cols(),
            seconds = started.elapsed().as_secs_f64(),
            read_s = fit.timings.read_s,
            predict_s = fit.timings.predict_s,
            "ridge fitted"
        );
        Ok(fit.predictions)
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
        let ridge = RidgeRegressor::fixed(2.0, false);
        let new = array![[10.0f32]];
        let mut prepared = ridge.prepare(x.view(), &[new.view(), x.view()]).unwrap();
        let p = prepared.fit_predict(&TargetGroup::VDVAE, &mut y.view()).unwrap();
        assert_eq!((p.len(), p[0].dim(), p[1].dim()), (2, (1, 2), (3, 2)));
        let w0 = (2.0 + 8.0 + 19.5) / (14.0 + 2.0);
        let w1 = (-1.0 - 4.0 - 9.0) / (14.0 + 2.0);
        assert!((p[0][[0, 0]] - 10.0 * w0).abs() < 1e-4, "{}", p[0]);
        assert!((p[0][[0, 1]] - 10.0 * w1).abs() < 1e-4, "{}", p[0]);
        assert!((p[1][[2, 0]] - 3.0 * w0).abs() < 1e-4, "{}", p[1]);
    }

    /// Each group gets its own alpha from the configuration, on one shared problem.
    #[test]
    fn groups_are_fitted_with_their_configured_alphas() {
        let config = RegressionSection {
            vdvae_alpha: 1.0,
            clip_vision_alpha: 5.0,
            clip_text_alpha: 14.0,
            fit_intercept: false,
            ..RegressionSection::default()
        };
        let ridge = RidgeRegressor::from_config(&config);
        // Fixed alphas: the Gram matrix by f32 GEMMs, recorded; a grid anywhere makes it f64.
        assert_eq!(
            ridge.settings(&TargetGroup::CLIP_VISION).unwrap(),
            "alpha = 5\nfit_intercept = false\ngram_precision = \"f32\"\n"
        );
        let grid = ridge::AlphaGrid {
            alphas: vec![1.0, 10.0],
            criterion: ridge::Criterion::Gcv,
            scope: ridge::AlphaScope::PerTarget,
        };
        let with_grid = RidgeRegressor::from_config(&config).with_alpha(TargetGroup::VDVAE, AlphaPolicy::Grid(grid));
        assert_eq!(with_grid.gram_precision(), GramPrecision::F64);
        assert!(with_grid.settings(&TargetGroup::CLIP_VISION).unwrap().ends_with("gram_precision = \"f64\"\n"));
        let forced = RidgeRegressor::from_config(&config).with_gram_precision(GramPrecision::F64);
        assert_eq!(forced.gram_precision(), GramPrecision::F64);
        let x = array![[1.0f32], [2.0], [3.0]];
        let y = array![[1.0f32], [2.0], [3.0]];
        let mut prepared = ridge.prepare(x.view(), &[array![[1.0f32]].view()]).unwrap();
        let extra = TargetGroup::new("colour-histogram").unwrap();
        let err = ridge.settings(&extra).unwrap_err().to_string();
        assert!(err.contains("no alpha for target group 'colour-histogram'") && err.contains("with_alpha"), "{err}");
        assert!(prepared.fit_predict(&extra, &mut y.view()).is_err(), "no alpha, no fit");
        let ridge = ridge.with_alpha(extra.clone(), AlphaPolicy::Fixed(2.0));
        let mut prepared = ridge.prepare(x.view(), &[array![[1.0f32]].view()]).unwrap();
        for (group, alpha) in
            [(TargetGroup::CLIP_TEXT, 14.0), (TargetGroup::VDVAE, 1.0), (TargetGroup::CLIP_VISION, 5.0), (extra, 2.0)]
        {
            let p = prepared.fit_predict(&group, &mut y.view()).unwrap();
            let expected = 14.0 / (14.0 + alpha);
            assert!((f64::from(p[0][[0, 0]]) - expected).abs() < 1e-6, "{}: {} vs {expected}", group.name(), p[0]);
        }
    }

    #[test]
    fn bad_input_is_a_stage_error() {
        let ridge = RidgeRegressor::fixed(1.0, true);
        let err = ridge.prepare(array![[1.0f32], [f32::NAN]].view(), &[]).err().expect("NaN refused");
        assert!(err.to_string().contains("ridge"), "{err}");
        let mut prepared = ridge.prepare(array![[1.0f32], [2.0]].view(), &[]).unwrap();
        let err = prepared.fit_predict(&TargetGroup::VDVAE, &mut array![[1.0f32]].view()).unwrap_err();
        assert!(err.to_string().contains("ridge"), "{err}");
    }
}

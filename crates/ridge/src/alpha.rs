//! How the regularisation strength is chosen: fixed (the reference pipeline's 50,000 / 60,000 /
//! 100,000), given per target, or picked from a grid by a cross-validation criterion.

use crate::error::{Result, RidgeError};
use crate::validate;

/// The regularisation of a fit.
#[derive(Clone, Debug, PartialEq)]
pub enum AlphaPolicy {
    /// One alpha for every target (the reference procedure).
    Fixed(f64),
    /// One alpha per target, e.g. chosen earlier and now reused.
    PerTarget(Vec<f64>),
    /// Chosen from candidates by a criterion.
    Grid(AlphaGrid),
}

/// Candidate alphas, the criterion that ranks them and the columns that share a choice.
#[derive(Clone, Debug, PartialEq)]
pub struct AlphaGrid {
    /// Candidates, each finite and > 0.
    pub alphas: Vec<f64>,
    /// How candidates are scored.
    pub criterion: Criterion,
    /// Which targets share one alpha.
    pub scope: AlphaScope,
}

impl AlphaGrid {
    /// `count` alphas evenly spaced in log10 from `10^from` to `10^to`, as `numpy.logspace`.
    pub fn log_spaced(from: f64, to: f64, count: usize) -> Vec<f64> {
        match count {
            0 => Vec::new(),
            1 => vec![10f64.powf(from)],
            _ => (0..count).map(|i| 10f64.powf(from + (to - from) * i as f64 / (count - 1) as f64)).collect(),
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.alphas.is_empty() {
            return Err(RidgeError::Empty { what: "alpha grid".into() });
        }
        for (i, &a) in self.alphas.iter().enumerate() {
            validate::alpha(&format!("alpha grid entry {i}"), a)?;
        }
        match self.scope {
            AlphaScope::PerColumnGroup(0) => {
                Err(RidgeError::Invalid("AlphaScope::PerColumnGroup needs a group size > 0".into()))
            }
            _ => Ok(()),
        }
    }
}

/// The score that ranks candidate alphas; every criterion is an error (lower is better).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Criterion {
    /// Generalised cross-validation, `(|r|^2/n) / (1 - tr(H)/n)^2`: after one projection of the
    /// targets on the Gram eigenvectors, each alpha costs O(n) per target.
    Gcv,
    /// Exact leave-one-out mean squared error, `mean_i (r_i / (1 - h_ii))^2` (the intercept is
    /// refitted without the left-out sample, as a brute-force refit does); each alpha costs one
    /// `n x n` GEMM per target block.
    LeaveOneOut,
    /// K-fold mean squared error over contiguous folds (scikit-learn `KFold` without shuffling),
    /// averaged over folds; ties broken towards larger alphas exactly as himalaya does.
    KFold {
        /// Number of folds, at least 2.
        folds: usize,
    },
}

/// Which targets share one chosen alpha.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlphaScope {
    /// Each target gets its own alpha.
    PerTarget,
    /// All targets of the fit share one alpha (their mean score is minimised).
    PerGroup,
    /// Consecutive groups of this many targets share one alpha (e.g. 768 for a CLIP token).
    PerColumnGroup(usize),
}

impl AlphaScope {
    pub(crate) fn group_size(self, n_targets: usize) -> usize {
        match self {
            AlphaScope::PerTarget => 1,
            AlphaScope::PerGroup => n_targets.max(1),
            AlphaScope::PerColumnGroup(g) => g,
        }
    }
}

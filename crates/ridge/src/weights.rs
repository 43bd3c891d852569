//! Primal weights in column blocks, for export and per-voxel analyses, without ever holding the
//! full `p x d` matrix.

use crate::error::{Result, RidgeError};
use crate::fit::{check_targets, columns_by_alpha, read_block};
use crate::linalg;
use crate::problem::{RidgeProblem, SolverForm};
use crate::source::TargetSource;
use crate::validate;
use faer::Mat;
use faer::linalg::solvers::{Llt, Solve};
use ndarray::{Array2, ArrayView2};
use std::collections::HashMap;
use std::collections::hash_map::Entry;

/// Weights of a block of consecutive targets, in scikit-learn's `coef_` layout.
#[derive(Debug)]
pub struct WeightBlock<'a> {
    /// Index of the first target of the block.
    pub first_target: usize,
    /// `b x p`: row `j` holds the weights of target `first_target + j`.
    pub coef: ArrayView2<'a, f32>,
    /// Intercept of each target of the block (zero without intercept).
    pub intercept: &'a [f32],
}

impl RidgeProblem {
    /// Computes the primal weights `W = Xc^T (K + alpha I)^-1 Yc` (kernel form) or
    /// `(Xc^T Xc + alpha I)^-1 Xc^T Yc` (primal form) and intercepts, `block_cols` targets at a
    /// time, handing each block to `sink`. `alphas` holds one alpha per target (e.g.
    /// [`RidgeFit::alphas`](crate::RidgeFit)).
    ///
    /// With few distinct alphas each is factorised once by Cholesky; with more, the Gram
    /// eigendecomposition serves them all.
    pub fn weights_by_block(
        &self,
        targets: &mut dyn TargetSource,
        alphas: &[f64],
        block_cols: usize,
        mut sink: impl FnMut(WeightBlock<'_>) -> Result<()>,
    ) -> Result<()> {
        check_targets(self, targets)?;
        let d = targets.n_cols();
        if alphas.len() != d {
            return Err(RidgeError::Shape {
                what: "per-target alphas for the weights".into(),
                expected: d,
                got: alphas.len(),
            });
        }
        for (j, &a) in alphas.iter().enumerate() {
            validate::alpha(&format!("alpha of target {j}"), a)?;
        }
        if block_cols == 0 {
            return Err(RidgeError::Invalid("block_cols must be > 0".into()));
        }
        let distinct = columns_by_alpha(alphas).len();
        let spectrum = if distinct > 2 || self.spectrum_if_ready().is_some() { Some(self.spectrum()?) } else { None };
        let mut factors: HashMap<u64, Llt<f64>> = HashMap::new();
        let (n, p) = (self.n_samples(), self.n_features());
        let mut start = 0;
        while start < d {
            let end = (start + block_cols).min(d);
            let block = read_block(self, targets, start..end)?;
            let yc = block.centred_f64(n);
            let b = block.cols;
            let mut coef = Array2::<f32>::zeros((b, p));
            let mut intercept = vec![0f32; b];
            for (alpha, cols) in columns_by_alpha(&alphas[start..end]).into_values() {
                let y = Mat::from_fn(n, cols.len(), |i, k| yc[(i, cols[k])]);
                let w = match &spectrum {
                    Some(spec) => {
                        let q = self.project_targets(spec, y.as_ref());
                        let filter = spec.fit_filter(alpha);
                        let qa = Mat::from_fn(q.nrows(), q.ncols(), |k, j| q[(k, j)] * filter[k]);
                        let t = linalg::mul(spec.vectors.as_ref(), qa.as_ref());
                        match self.form() {
                            SolverForm::Kernel => linalg::mul(self.xc().transpose(), t.as_ref()),
                            SolverForm::Primal => t,
                        }
                    }
                    None => {
                        let llt = match factors.entry(alpha.to_bits()) {
                            Entry::Occupied(e) => e.into_mut(),
                            Entry::Vacant(e) => e.insert(linalg::shifted_cholesky("Gram matrix", self.gram(), alpha)?),
                        };
                        match self.form() {
                            SolverForm::Kernel => {
                                let mut dual = y;
                                llt.solve_in_place(dual.as_mut());
                                linalg::mul(self.xc().transpose(), dual.as_ref())
                            }
                            SolverForm::Primal => {
                                let mut w = linalg::mul(self.xc().transpose(), y.as_ref());
                                llt.solve_in_place(w.as_mut());
                                w
                            }
                        }
                    }
                };
                for (k, &j) in cols.iter().enumerate() {
                    let mut offset = 0.0;
                    for f in 0..p {
                        let v = w[(f, k)];
                        coef[[j, f]] = v as f32;
                        offset += self.x_mean()[f] * v;
                    }
                    if self.fit_intercept() {
                        intercept[j] = (block.means[j] - offset) as f32;
                    }
                }
            }
            sink(WeightBlock { first_target: start, coef: coef.view(), intercept: &intercept })?;
            start = end;
        }
        Ok(())
    }
}

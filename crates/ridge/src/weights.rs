//! Primal weights in column blocks, for export and per-voxel analyses, without ever holding the
//! full `p x d` matrix.

use crate::error::{Result, RidgeError};
use crate::fit::{BufferPool, ReadAhead, check_targets, columns_by_alpha, read_ahead, read_block};
use crate::linalg;
use crate::problem::{GramPrecision, RidgeProblem, SolverForm};
use crate::source::TargetSource;
use crate::validate;
use faer::{Accum, Mat, MatMut, MatRef};
use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;
use std::collections::HashMap;
use std::ops::Range;
use std::time::Instant;

/// Where [`RidgeProblem::weights_by_block`] spent its time, in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WeightTimings {
    /// Weight operators (one Cholesky factorisation and operator per alpha) or the Gram
    /// eigendecomposition.
    pub operators_s: f64,
    /// Reading and checking target blocks (inline or one block ahead on a reader thread,
    /// [`ReadAhead::Auto`]).
    pub read_s: f64,
    /// Centring the blocks and the weight products and intercepts.
    pub product_s: f64,
    /// The caller's `sink`.
    pub sink_s: f64,
}

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
    /// With at most two distinct alphas (and no eigendecomposition computed) each alpha gets a
    /// weight operator `O_alpha` (`p x n`, f32: `W = O_alpha Yc`, from one Cholesky
    /// factorisation in f64), so that a target costs one `2 p n` f32 GEMM column; the blocks
    /// are read row-major (no transposition), inline or one block ahead on a reader thread
    /// ([`ReadAhead::Auto`](crate::ReadAhead)). With more alphas the Gram eigendecomposition
    /// serves them all, in f64. Returns where the time went.
    pub fn weights_by_block(
        &self,
        targets: &mut dyn TargetSource,
        alphas: &[f64],
        block_cols: usize,
        sink: impl FnMut(WeightBlock<'_>) -> Result<()>,
    ) -> Result<WeightTimings> {
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
        if distinct > 2 || self.spectrum_if_ready().is_some() {
            self.spectral_weights(targets, alphas, block_cols, sink)
        } else {
            self.operator_weights(targets, alphas, block_cols, sink)
        }
    }

    /// The weight operator of one alpha, `O` (`p x n`, f32) with `W = O Yc`: kernel form
    /// `Xc^T (K + alpha I)^-1`, primal form `(Xc^T Xc + alpha I)^-1 Xc^T`.
    ///
    /// An f32 problem whose Gram matrix serves `alpha` ([`RidgeProblem::precision_for`]) forms
    /// the inverse in f64 from the Cholesky factor (`Cholesky::inverse`, `2 n^3 / 3`
    /// flops past the factorisation), rounds it to f32 once and multiplies it with the f32
    /// design by one f32 GEMM: the arithmetic its Gram matrix and cross-kernels already use, at
    /// twice the f64 rate, and no f64 copy of the design. Otherwise the `p` columns of `Xc` are
    /// solved for in f64, in panels of 2,048 right-hand sides (so that no second `n x p` f64
    /// matrix is held).
    fn weight_operator(&self, alpha: f64) -> Result<Mat<f32>> {
        const PANEL: usize = 2048;
        let (n, p) = (self.n_samples(), self.n_features());
        let what = match self.form() {
            SolverForm::Kernel => "kernel Gram matrix",
            SolverForm::Primal => "covariance",
        };
        let t0 = Instant::now();
        let llt = linalg::shifted_cholesky(what, self.gram_for(alpha), alpha)?;
        tracing::debug!(alpha, seconds = t0.elapsed().as_secs_f64(), "ridge: weight operator Cholesky");
        let mut op = Mat::<f32>::zeros(p, n);
        if let (Some(xc), GramPrecision::F32) = (self.xc_f32(), self.precision_for(alpha)) {
            let inverse = linalg::to_f32(llt.inverse().as_ref());
            tracing::debug!(alpha, seconds = t0.elapsed().as_secs_f64(), "ridge: weight operator inverse");
            match self.form() {
                SolverForm::Kernel => linalg::gemm_tall(op.as_mut(), xc.transpose(), inverse.as_ref(), Accum::Replace),
                SolverForm::Primal => linalg::gemm_tall(op.as_mut(), inverse.as_ref(), xc.transpose(), Accum::Replace),
            }
            return Ok(op);
        }
        match self.form() {
            SolverForm::Kernel => {
                for start in (0..p).step_by(PANEL) {
                    let w = PANEL.min(p - start);
                    let mut z = self.xc().subcols(start, w).to_owned();
                    llt.solve_in_place(z.as_mut());
                    // z is (K + aI)^-1 Xc[:, panel] (n x w): rows start.. of O are its transpose.
                    for i in 0..n {
                        for f in 0..w {
                            op[(start + f, i)] = z[(i, f)] as f32;
                        }
                    }
                }
            }
            SolverForm::Primal => {
                for start in (0..n).step_by(PANEL) {
                    let w = PANEL.min(n - start);
                    let mut z = self.xc().subrows(start, w).transpose().to_owned();
                    llt.solve_in_place(z.as_mut());
                    for i in 0..w {
                        for f in 0..p {
                            op[(f, start + i)] = z[(f, i)] as f32;
                        }
                    }
                }
            }
        }
        Ok(op)
    }

    /// [`weights_by_block`](RidgeProblem::weights_by_block) through one weight operator per alpha.
    fn operator_weights(
        &self,
        targets: &mut dyn TargetSource,
        alphas: &[f64],
        block_cols: usize,
        mut sink: impl FnMut(WeightBlock<'_>) -> Result<()>,
    ) -> Result<WeightTimings> {
        let (n, p, d) = (self.n_samples(), self.n_features(), targets.n_cols());
        let mut timings = WeightTimings::default();
        let started = Instant::now();
        let mut operators: HashMap<u64, Mat<f32>> = HashMap::new();
        for (alpha, _) in columns_by_alpha(alphas).into_values() {
            operators.insert(alpha.to_bits(), self.weight_operator(alpha)?);
        }
        timings.operators_s = started.elapsed().as_secs_f64();
        tracing::debug!(seconds = timings.operators_s, count = operators.len(), "ridge: weight operators");
        let ranges: Vec<Range<usize>> = (0..d).step_by(block_cols).map(|s| s..(s + block_cols).min(d)).collect();
        let what = format!("targets {}", targets.describe());
        let pool = BufferPool::default();
        let read = |cols: Range<usize>| -> Result<(Range<usize>, Vec<f32>)> {
            let mut data = pool.take(n * cols.len());
            targets.read_rows(0..n, cols.clone(), &mut data)?;
            validate::finite_rows(&what, &data, cols.len(), 0, cols.start)?;
            Ok((cols, data))
        };
        let bytes_of = |(_, data): &(Range<usize>, Vec<f32>)| data.len() * 4;
        let (mut yc_columns, mut coef) = (Vec::<f32>::new(), Vec::<f32>::new());
        let (mut product_s, mut sink_s) = (0.0, 0.0);
        read_ahead(ranges, ReadAhead::Auto, bytes_of, read, &mut timings.read_s, |(cols, data)| {
            let t = Instant::now();
            let (first, b) = (cols.start, cols.len());
            let means: Vec<f64> = if self.fit_intercept() {
                linalg::column_sums(&data, b).into_iter().map(|s| s / n as f64).collect()
            } else {
                vec![0.0; b]
            };
            // Centred while transposed to column-major: faer's GEMM ran this product at about
            // twice the rate with column-major targets as with the row-major block as read, on
            // a 2-core AVX2 (Zen 3) machine (the transposition costs ~1% of the product).
            yc_columns.resize(n * b, 0.0);
            let yc_mut = MatMut::from_column_major_slice_mut(&mut yc_columns, n, b);
            linalg::transpose_tiles(&data, n, b, yc_mut, |v, j| (f64::from(v) - means[j]) as f32);
            pool.give(data);
            let yc = MatRef::from_column_major_slice(&yc_columns, n, b);
            coef.resize(b * p, 0.0);
            for (alpha, group) in columns_by_alpha(&alphas[first..first + b]).into_values() {
                let op = operators
                    .get(&alpha.to_bits())
                    .ok_or_else(|| RidgeError::Invalid(format!("no weight operator for alpha {alpha}")))?;
                // The row-major `b x p` coef seen column-major is `W` (`p x b`).
                if group.len() == b {
                    linalg::gemm_tall(
                        MatMut::from_column_major_slice_mut(&mut coef, p, b),
                        op.as_ref(),
                        yc,
                        Accum::Replace,
                    );
                    continue;
                }
                let y = Mat::<f32>::from_fn(n, group.len(), |i, k| yc[(i, group[k])]);
                let mut w = Mat::<f32>::zeros(p, group.len());
                linalg::gemm_tall(w.as_mut(), op.as_ref(), y.as_ref(), Accum::Replace);
                for (k, &j) in group.iter().enumerate() {
                    for f in 0..p {
                        coef[j * p + f] = w[(f, k)];
                    }
                }
            }
            let intercept: Vec<f32> = if self.fit_intercept() {
                coef.par_chunks(p)
                    .zip(means.par_iter())
                    .map(|(w, mean)| {
                        let offset: f64 = w.iter().zip(self.x_mean()).map(|(&w, m)| f64::from(w) * m).sum();
                        (mean - offset) as f32
                    })
                    .collect()
            } else {
                vec![0.0; b]
            };
            let weights = ArrayView2::from_shape((b, p), &coef[..])
                .map_err(|e| RidgeError::Invalid(format!("weight block of {b} x {p}: {e}")))?;
            let t_sink = Instant::now();
            product_s += t_sink.duration_since(t).as_secs_f64();
            let result = sink(WeightBlock { first_target: first, coef: weights, intercept: &intercept });
            sink_s += t_sink.elapsed().as_secs_f64();
            result
        })?;
        timings.product_s = product_s;
        timings.sink_s = sink_s;
        Ok(timings)
    }

    /// [`weights_by_block`](RidgeProblem::weights_by_block) through the Gram eigendecomposition
    /// (many distinct alphas), in f64.
    fn spectral_weights(
        &self,
        targets: &mut dyn TargetSource,
        alphas: &[f64],
        block_cols: usize,
        mut sink: impl FnMut(WeightBlock<'_>) -> Result<()>,
    ) -> Result<WeightTimings> {
        let mut timings = WeightTimings::default();
        let started = Instant::now();
        let spec = self.spectrum()?;
        timings.operators_s = started.elapsed().as_secs_f64();
        let (n, p, d) = (self.n_samples(), self.n_features(), targets.n_cols());
        let mut start = 0;
        while start < d {
            let end = (start + block_cols).min(d);
            let t = Instant::now();
            let block = read_block(self, targets, start..end)?;
            let yc = block.centred_f64(n);
            let t_product = Instant::now();
            timings.read_s += t_product.duration_since(t).as_secs_f64();
            let b = block.cols;
            let mut coef = Array2::<f32>::zeros((b, p));
            let mut intercept = vec![0f32; b];
            for (alpha, cols) in columns_by_alpha(&alphas[start..end]).into_values() {
                let y = Mat::from_fn(n, cols.len(), |i, k| yc[(i, cols[k])]);
                let q = self.project_targets(&spec, y.as_ref());
                let filter = spec.fit_filter(alpha);
                let qa = Mat::from_fn(q.nrows(), q.ncols(), |k, j| q[(k, j)] * filter[k]);
                let t = linalg::mul(spec.vectors.as_ref(), qa.as_ref());
                let w = match self.form() {
                    SolverForm::Kernel => linalg::mul(self.xc().transpose(), t.as_ref()),
                    SolverForm::Primal => t,
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
            let t_sink = Instant::now();
            timings.product_s += t_sink.duration_since(t_product).as_secs_f64();
            sink(WeightBlock { first_target: start, coef: coef.view(), intercept: &intercept })?;
            timings.sink_s += t_sink.elapsed().as_secs_f64();
            start = end;
        }
        Ok(timings)
    }
}

//! Fitting target groups on a [`RidgeProblem`]: block streaming, alpha selection and prediction.

use crate::alpha::{AlphaGrid, AlphaPolicy, AlphaScope, Criterion};
use crate::error::{Result, RidgeError};
use crate::linalg;
use crate::problem::{EvaluationSet, RidgeProblem, SolverForm, Spectrum};
use crate::source::TargetSource;
use crate::validate;
use faer::{Accum, Mat, MatMut, MatRef};
use ndarray::Array2;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

/// Tuning of the streaming loop.
#[derive(Clone, Debug)]
pub struct FitOptions {
    /// Size of a block: `n x block_cols` f32 values, the unit of reading and of GEMM; 8,192 at
    /// `n = 8,859` is 290 MB, and at most three blocks are alive at once (one being read, one
    /// queued, one computed). Row blocks hold as many values (`block_cols * n / d` rows).
    pub block_cols: usize,
    /// Which way fixed-alpha fits read the targets.
    pub streaming: Streaming,
    /// Whether blocks are read on a thread of their own, ahead of the GEMMs.
    pub read_ahead: ReadAhead,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions { block_cols: 8192, streaming: Streaming::Auto, read_ahead: ReadAhead::Auto }
    }
}

/// When target blocks are read ahead of the computation on a reader thread. A concurrent read
/// copies its block through the caches that the chunked GEMMs work in: on the 2-core build
/// machines, with targets in the page cache, the VDVAE prediction GEMMs ran at 134-141 GFLOP/s
/// with a reader thread and at 173-191 with the same reads inline (0.4-1.2 s of reading), so
/// reads that run at memory speed gain nothing from overlapping; reads from a slow disk do.
/// Every mode gives the same results.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadAhead {
    /// Inline while every read runs at 1 GB/s or more; from the first slower read on, on the
    /// reader thread.
    #[default]
    Auto,
    /// Always on the reader thread, one block ahead.
    Always,
    /// Always inline.
    Never,
}

/// How a fit with one alpha for all targets reads them. The predictions agree to f32 rounding
/// whichever is used (tests hold both to scikit-learn's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Streaming {
    /// Rows when the source says they are contiguous
    /// ([`TargetSource::rows_are_contiguous`]), else columns.
    #[default]
    Auto,
    /// Blocks of whole rows, accumulating `P += S[:, rows] Y[rows, :]`: one contiguous read per
    /// block of a row-major file and no transposition.
    Rows,
    /// Blocks of whole columns (all rows of some targets): strided reads of a row-major file.
    /// Alpha grids and several distinct alphas always stream columns, since choosing an alpha
    /// needs every row of a target.
    Columns,
}

/// The result of [`RidgeProblem::fit_predict`].
#[derive(Clone, Debug)]
pub struct RidgeFit {
    /// The alpha used for each target.
    pub alphas: Vec<f64>,
    /// Predictions for each evaluation set passed in (`m x d`, f32), intercept included.
    pub predictions: Vec<Array2<f32>>,
    /// Candidate alphas (empty for fixed alphas).
    pub grid: Vec<f64>,
    /// Criterion value of every candidate for every target (`grid.len() x d`; lower is better):
    /// mean squared error for leave-one-out and k-fold, the GCV score for GCV.
    pub scores: Option<Array2<f64>>,
    /// Where the time went.
    pub timings: FitTimings,
}

/// Wall-clock seconds spent in each phase of a fit.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FitTimings {
    /// Reading target blocks (inline, or on a reader thread overlapped with the other phases:
    /// [`ReadAhead`]); for column blocks also checking and averaging them.
    pub read_s: f64,
    /// Building prediction operators (one Cholesky solve per alpha and evaluation set) and,
    /// for grids, the eigendecomposition and fold problems.
    pub operators_s: f64,
    /// Scoring candidate alphas.
    pub scoring_s: f64,
    /// Target GEMMs writing the predictions.
    pub predict_s: f64,
}

fn timed<T>(acc: &mut f64, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let t = Instant::now();
    let r = f();
    *acc += t.elapsed().as_secs_f64();
    r
}

/// Column ranges of at most `block` columns covering `0..d`.
fn block_ranges(d: usize, block: usize) -> Vec<Range<usize>> {
    (0..d).step_by(block).map(|start| start..(start + block).min(d)).collect()
}

/// Reads the column blocks `ranges` for `consume` ([`read_ahead`]).
fn stream_blocks(
    problem: &RidgeProblem,
    targets: &mut dyn TargetSource,
    ranges: Vec<Range<usize>>,
    mode: ReadAhead,
    read_s: &mut f64,
    consume: impl FnMut(TargetBlock) -> Result<()>,
) -> Result<()> {
    read_ahead(
        ranges,
        mode,
        |block: &TargetBlock| block.data.len() * 4,
        |range| read_block(problem, targets, range),
        read_s,
        consume,
    )
}

/// Reads at or above this rate (bytes per second: the page cache, a fast SSD) are done inline
/// by [`ReadAhead::Auto`].
const INLINE_READ_BYTES_PER_S: f64 = 1e9;

/// Runs `read` on each job and hands the result to `consume`, inline or on a reader thread one
/// job ahead ([`ReadAhead`]; `Auto` reads inline until a read runs below
/// [`INLINE_READ_BYTES_PER_S`], `bytes_of` giving its size, then moves the rest to the thread).
/// Adds the reading time to `read_s`. Stops at the first error of either side.
pub(crate) fn read_ahead<J: Send, T: Send>(
    jobs: Vec<J>,
    mode: ReadAhead,
    bytes_of: impl Fn(&T) -> usize,
    mut read: impl FnMut(J) -> Result<T> + Send,
    read_s: &mut f64,
    mut consume: impl FnMut(T) -> Result<()>,
) -> Result<()> {
    let mut jobs = jobs.into_iter();
    if mode != ReadAhead::Always {
        for job in jobs.by_ref() {
            let t = Instant::now();
            let item = read(job)?;
            let secs = t.elapsed().as_secs_f64();
            *read_s += secs;
            let slow = mode == ReadAhead::Auto && (bytes_of(&item) as f64) < INLINE_READ_BYTES_PER_S * secs;
            consume(item)?;
            if slow {
                tracing::debug!(seconds = secs, "ridge: slow target read, reading ahead on a thread from now on");
                break;
            }
        }
    }
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(T, f64)>>(1);
        let reader = scope.spawn(move || {
            for job in jobs {
                let t = Instant::now();
                let item = read(job).map(|b| (b, t.elapsed().as_secs_f64()));
                let failed = item.is_err();
                if tx.send(item).is_err() || failed {
                    break;
                }
            }
        });
        let mut result = Ok(());
        for item in rx.iter() {
            match item.and_then(|(item, secs)| {
                *read_s += secs;
                consume(item)
            }) {
                Ok(()) => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        drop(rx);
        if reader.join().is_err() && result.is_ok() {
            result = Err(RidgeError::Invalid("the target reader thread panicked".into()));
        }
        result
    })
}

/// Builds the prediction operators of every evaluation set for the alphas in use.
fn prepare_operators(problem: &RidgeProblem, evals: &[&EvaluationSet], alphas: &[f64]) -> Result<()> {
    for alpha in columns_by_alpha(alphas).values().map(|(a, _)| *a) {
        for e in evals {
            e.smoother(problem, alpha)?;
        }
    }
    Ok(())
}

/// One block of targets (column-major f32) with the column means of the training rows.
///
/// The data stay raw until [`TargetBlock::centre_in_place`]: criteria read the block in f64
/// and centre there, since a leave-one-out residual near interpolation cancels almost all of
/// the target and would amplify f32 rounding of centred values.
pub(crate) struct TargetBlock {
    pub first: usize,
    pub cols: usize,
    pub data: Vec<f32>,
    pub means: Vec<f64>,
    centred: bool,
}

impl TargetBlock {
    /// The block as a matrix (centred only after `centre_in_place`).
    pub fn view(&self, n: usize) -> MatRef<'_, f32> {
        MatRef::from_column_major_slice(&self.data, n, self.cols)
    }

    /// The centred block in f64 (centred in f64).
    pub fn centred_f64(&self, n: usize) -> Mat<f64> {
        let offset = if self.centred { 0.0 } else { 1.0 };
        Mat::from_fn(n, self.cols, |i, j| f64::from(self.data[j * n + i]) - offset * self.means[j])
    }

    /// Centres the f32 data (for the f32 prediction GEMM).
    pub fn centre_in_place(&mut self, n: usize) {
        if self.centred {
            return;
        }
        self.data.par_chunks_mut(n).zip(self.means.par_iter()).for_each(|(col, &m)| {
            for v in col.iter_mut() {
                *v = (f64::from(*v) - m) as f32;
            }
        });
        self.centred = true;
    }
}

/// Reads and checks columns `range` of `targets` and computes their means (zero without
/// intercept).
pub(crate) fn read_block(
    problem: &RidgeProblem,
    targets: &mut dyn TargetSource,
    range: Range<usize>,
) -> Result<TargetBlock> {
    let n = problem.n_samples();
    let b = range.len();
    let mut data = vec![0f32; n * b];
    targets.read_columns(range.clone(), &mut data)?;
    validate::finite_block(&format!("targets {}", targets.describe()), &data, n, range.start)?;
    let mut means = vec![0.0; b];
    if problem.fit_intercept() {
        data.par_chunks(n).zip(means.par_iter_mut()).for_each(|(col, mean)| {
            *mean = col.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
        });
    }
    Ok(TargetBlock { first: range.start, cols: b, data, means, centred: false })
}

/// Rows of every target, row-major (`rows.len() x d` f32), as read.
struct RowBlock {
    rows: Range<usize>,
    data: Vec<f32>,
}

/// Block buffers handed back by the computation for the reader to fill again, so that a stream
/// of blocks allocates (and page-faults in, ~0.5 s per GiB on the build machines) at most the
/// three blocks alive at once rather than every block it reads.
#[derive(Default)]
pub(crate) struct BufferPool(std::sync::Mutex<Vec<Vec<f32>>>);

impl BufferPool {
    /// A buffer of `len` values: a returned one when there is one (its contents are stale and
    /// will be overwritten), else a new one.
    pub(crate) fn take(&self, len: usize) -> Vec<f32> {
        let mut buffer = self.0.lock().ok().and_then(|mut pool| pool.pop()).unwrap_or_default();
        buffer.resize(len, 0.0);
        buffer
    }

    /// Returns a buffer for reuse.
    pub(crate) fn give(&self, buffer: Vec<f32>) {
        if let Ok(mut pool) = self.0.lock() {
            pool.push(buffer);
        }
    }
}

/// Reads rows `rows` of all the targets into a buffer from `pool` (unchecked: the computation
/// checks finiteness in its first pass over the block, [`shift_and_sum`]).
fn read_row_block(targets: &mut dyn TargetSource, rows: Range<usize>, pool: &BufferPool) -> Result<RowBlock> {
    let d = targets.n_cols();
    let mut data = pool.take(rows.len() * d);
    targets.read_rows(rows.clone(), 0..d, &mut data)?;
    Ok(RowBlock { rows, data })
}

/// Subtracts `shift` (finite) from every row of a row-major matrix with `d` columns and returns
/// the column sums (f64) of the shifted values, in one pass, rows split across the pool. A sum
/// of finite f32 values cannot overflow in f64, so a non-finite sum marks a non-finite value
/// in its column: the caller's finiteness check.
fn shift_and_sum(data: &mut [f32], d: usize, shift: &[f32]) -> Vec<f64> {
    let rows = data.len() / d.max(1);
    let per_task = rows.div_ceil(rayon::current_num_threads()).max(1);
    data.par_chunks_mut(per_task * d)
        .map(|part| {
            let mut sums = vec![0f64; d];
            for row in part.chunks_exact_mut(d) {
                for ((v, c), s) in row.iter_mut().zip(shift).zip(sums.iter_mut()) {
                    *v -= c;
                    *s += f64::from(*v);
                }
            }
            sums
        })
        .reduce(|| vec![0f64; d], linalg::add_into)
}

pub(crate) fn check_targets(problem: &RidgeProblem, targets: &dyn TargetSource) -> Result<()> {
    if targets.n_rows() != problem.n_samples() {
        return Err(RidgeError::Shape {
            what: format!("rows (samples) of targets {}", targets.describe()),
            expected: problem.n_samples(),
            got: targets.n_rows(),
        });
    }
    if targets.n_cols() == 0 {
        return Err(RidgeError::Empty { what: format!("targets {} (no columns)", targets.describe()) });
    }
    Ok(())
}

/// Groups the columns of a block by the alpha they use (ordered by alpha).
pub(crate) fn columns_by_alpha(alphas: &[f64]) -> BTreeMap<u64, (f64, Vec<usize>)> {
    let mut groups: BTreeMap<u64, (f64, Vec<usize>)> = BTreeMap::new();
    for (j, &a) in alphas.iter().enumerate() {
        groups.entry(a.to_bits()).or_insert((a, Vec::new())).1.push(j);
    }
    groups
}

/// Copies the listed columns of a column-major matrix into a new column-major buffer.
fn gather(block: MatRef<'_, f32>, cols: &[usize]) -> Vec<f32> {
    let n = block.nrows();
    let mut out = vec![0f32; n * cols.len()];
    for (k, &j) in cols.iter().enumerate() {
        for i in 0..n {
            out[k * n + i] = block[(i, j)];
        }
    }
    out
}

/// Writes predictions of one block into each evaluation set's output.
fn predict_block(
    problem: &RidgeProblem,
    evals: &[&EvaluationSet],
    block: &mut TargetBlock,
    alphas: &[f64],
    outputs: &mut [Array2<f32>],
) -> Result<()> {
    let n = problem.n_samples();
    if evals.is_empty() {
        return Ok(());
    }
    block.centre_in_place(n);
    let block = &*block;
    let view = block.view(n);
    let groups = columns_by_alpha(alphas);
    let all_one = groups.len() == 1;
    for (eval, out) in evals.iter().zip(outputs.iter_mut()) {
        let m = eval.n_rows();
        let d = out.ncols();
        for (alpha, cols) in groups.values() {
            let s = eval.smoother(problem, *alpha)?;
            let s = s.as_ref().as_ref();
            if all_one && let Some(slice) = out.as_slice_mut() {
                // The row-major m x d output seen column-major is d x m: its rows
                // first..first+b are a strided b x m matrix, which the GEMM fills directly as
                // Yc^T S^T, with no scatter.
                let dst = MatMut::from_column_major_slice_with_stride_mut(&mut slice[block.first..], block.cols, m, d);
                linalg::gemm(dst, view.transpose(), s.transpose(), 1.0f32);
                for i in 0..m {
                    let row = &mut slice[i * d + block.first..i * d + block.first + block.cols];
                    for (v, mean) in row.iter_mut().zip(&block.means) {
                        *v += *mean as f32;
                    }
                }
                continue;
            }
            let gathered = gather(view, cols);
            let y = MatRef::from_column_major_slice(&gathered[..], n, cols.len());
            let mut p = Mat::<f32>::zeros(m, cols.len());
            linalg::gemm(p.as_mut(), s, y, 1.0f32);
            for (k, &j) in cols.iter().enumerate() {
                let mean = block.means[j] as f32;
                let mut col = out.column_mut(block.first + j);
                for i in 0..m {
                    col[i] = p[(i, k)] + mean;
                }
            }
        }
    }
    Ok(())
}

/// One split of k-fold: a problem on the training rows, and the validation rows prepared for it.
pub(crate) struct Fold {
    train: Vec<usize>,
    val: Vec<usize>,
    problem: RidgeProblem,
    eval: EvaluationSet,
}

/// Contiguous folds as scikit-learn's `KFold(k)` without shuffling: the first `n % k` folds
/// hold one extra sample.
pub(crate) fn make_folds(problem: &RidgeProblem, k: usize) -> Result<Vec<Fold>> {
    let n = problem.n_samples();
    if k < 2 || k > n {
        return Err(RidgeError::Invalid(format!("k-fold needs 2 <= folds <= samples ({n}), got {k}")));
    }
    let mut folds = Vec::with_capacity(k);
    let mut start = 0;
    for f in 0..k {
        let size = n / k + usize::from(f < n % k);
        let val: Vec<usize> = (start..start + size).collect();
        let train: Vec<usize> = (0..start).chain(start + size..n).collect();
        start += size;
        let sub = problem.row_subset(&train);
        let eval = problem.rows_as_evaluation_for(&val, &sub);
        folds.push(Fold { train, val, problem: sub, eval });
    }
    Ok(folds)
}

/// Precomputed pieces a criterion needs across blocks.
///
/// Both closed-form criteria are written with the residual filter `alpha / (lambda + alpha)`
/// (never `1 - lambda / (lambda + alpha)`), the residual degrees of freedom `n - tr(H)` as a
/// sum of positive terms, and `1 - h_ii` as a sum of positive terms, so that they stay exact
/// (relative to the score) when alpha is far below the spectrum, where `tr(H) -> n` and
/// `h_ii -> 1` near interpolation. In the kernel form the basis `V` spans the whole centred
/// sample space, so nothing is added for a part of the targets outside it; in the primal form
/// the part outside the span of `U = Xc V / sqrt(lambda)` is the explicit least-squares
/// residual `Yc - U U^T Yc`.
pub(crate) enum Scorer {
    /// `outside`: primal form only, the sample basis `U` (for `Yc - U U^T Yc`).
    Gcv {
        spec: Arc<Spectrum>,
        outside: Option<Mat<f64>>,
    },
    /// `outside`: primal form only, the diagonal of the projector outside `U` and the constant.
    LeaveOneOut {
        spec: Arc<Spectrum>,
        basis: Mat<f64>,
        basis_sq: Mat<f64>,
        outside: Option<Vec<f64>>,
    },
    KFold(Vec<Fold>),
}

/// Whether some sample directions lie outside the span of `U` and of the constant: only in the
/// primal form (the kernel basis spans the whole centred sample space) and only when
/// `n > intercept + rank`. When false the targets' part outside `U` is exactly zero (they are
/// centred), so it is not computed: `Yc - U U^T Yc` would only add rounding noise of size
/// `eps |Yc|`, which near interpolation is as large as the true residual.
fn has_outside(problem: &RidgeProblem, spec: &Spectrum) -> bool {
    problem.form() == SolverForm::Primal && problem.n_samples() > usize::from(problem.fit_intercept()) + spec.rank
}

/// Primal form: the diagonal of the projector on the sample directions outside the span of `U`
/// and of the constant, `1 - intercept/n - sum_k U_ik^2`.
fn outside_leverage(problem: &RidgeProblem, basis: MatRef<'_, f64>) -> Vec<f64> {
    let n = problem.n_samples();
    let intercept = usize::from(problem.fit_intercept());
    (0..n)
        .map(|i| {
            let inside: f64 = (0..basis.ncols()).map(|k| basis[(i, k)] * basis[(i, k)]).sum();
            (1.0 - intercept as f64 / n as f64 - inside).max(0.0)
        })
        .collect()
}

/// Primal form: `Yc - U G`, the part of the targets outside the span of `U`.
fn outside_part(basis: MatRef<'_, f64>, g: MatRef<'_, f64>, yc: MatRef<'_, f64>) -> Mat<f64> {
    let mut r = yc.to_owned();
    linalg::gemm_acc(r.as_mut(), basis, g, -1.0);
    r
}

impl Scorer {
    pub(crate) fn new(problem: &RidgeProblem, criterion: Criterion) -> Result<Self> {
        Ok(match criterion {
            Criterion::Gcv => {
                let spec = problem.spectrum()?;
                let outside = has_outside(problem, &spec).then(|| problem.sample_basis(&spec));
                Scorer::Gcv { spec, outside }
            }
            Criterion::LeaveOneOut => {
                let spec = problem.spectrum()?;
                let basis = problem.sample_basis(&spec);
                let basis_sq = Mat::from_fn(basis.nrows(), basis.ncols(), |i, j| basis[(i, j)] * basis[(i, j)]);
                let outside = has_outside(problem, &spec).then(|| outside_leverage(problem, basis.as_ref()));
                Scorer::LeaveOneOut { spec, basis, basis_sq, outside }
            }
            Criterion::KFold { folds } => Scorer::KFold(make_folds(problem, folds)?),
        })
    }

    /// Scores (`grid.len() x b`, lower is better) for a centred block in f64.
    pub(crate) fn score(&self, problem: &RidgeProblem, yc: MatRef<'_, f64>, grid: &[f64]) -> Result<Mat<f64>> {
        let n = problem.n_samples();
        let nf = n as f64;
        let b = yc.ncols();
        match self {
            Scorer::Gcv { spec, outside } => {
                let q = problem.project_targets(spec, yc);
                let g = problem.sample_projection(spec, q);
                let perp: Vec<f64> = match outside {
                    Some(basis) => {
                        let r = outside_part(basis.as_ref(), g.as_ref(), yc);
                        (0..b).map(|j| r.col(j).iter().map(|v| v * v).sum()).collect()
                    }
                    None => vec![0.0; b],
                };
                let filters: Vec<Vec<f64>> = grid.iter().map(|&a| spec.residual_filter(a)).collect();
                let dofs: Vec<f64> = grid.iter().map(|&a| spec.residual_dof(n, problem.fit_intercept(), a)).collect();
                let cols: Vec<Vec<f64>> = (0..b)
                    .into_par_iter()
                    .map(|j| {
                        filters
                            .iter()
                            .zip(&dofs)
                            .map(|(f, &dof)| {
                                let ssr = perp[j]
                                    + g.col(j).iter().zip(f).map(|(&gk, &fk)| (fk * gk) * (fk * gk)).sum::<f64>();
                                let denom = dof / nf;
                                (ssr / nf) / (denom * denom)
                            })
                            .collect()
                    })
                    .collect();
                Ok(Mat::from_fn(grid.len(), b, |a, j| cols[j][a]))
            }
            Scorer::LeaveOneOut { spec, basis, basis_sq, outside } => {
                let q = problem.project_targets(spec, yc);
                let g = problem.sample_projection(spec, q);
                let r = g.nrows();
                let perp = outside.as_ref().map(|_| outside_part(basis.as_ref(), g.as_ref(), yc));
                let mut scores = Mat::<f64>::zeros(grid.len(), b);
                for (ai, &a) in grid.iter().enumerate() {
                    // Residuals (I - H) Yc = U diag(f) G (+ the part outside U), leverages
                    // 1 - h_ii = sum_k f_k U_ik^2 (+ the outside projector's diagonal).
                    let f = spec.residual_filter(a);
                    let fg = Mat::from_fn(r, b, |k, j| g[(k, j)] * f[k]);
                    let mut resid = match &perp {
                        Some(p) => p.clone(),
                        None => Mat::zeros(n, b),
                    };
                    linalg::gemm_acc(resid.as_mut(), basis.as_ref(), fg.as_ref(), 1.0);
                    let f_col = Mat::from_fn(r, 1, |k, _| f[k]);
                    let h = linalg::mul(basis_sq.as_ref(), f_col.as_ref());
                    let lev: Vec<f64> =
                        (0..n).map(|i| h[(i, 0)] + outside.as_ref().map_or(0.0, |diag| diag[i])).collect();
                    let row: Vec<f64> = (0..b)
                        .into_par_iter()
                        .map(|j| {
                            (0..n)
                                .map(|i| {
                                    let e = resid[(i, j)] / lev[i];
                                    e * e
                                })
                                .sum::<f64>()
                                / nf
                        })
                        .collect();
                    for (j, v) in row.into_iter().enumerate() {
                        scores[(ai, j)] = v;
                    }
                }
                Ok(scores)
            }
            Scorer::KFold(folds) => {
                let mut scores = Mat::<f64>::zeros(grid.len(), b);
                for fold in folds {
                    let spec = fold.problem.spectrum()?;
                    let phi = fold.eval.features(&spec);
                    let ntr = fold.train.len();
                    let mut ytr = Mat::from_fn(ntr, b, |i, j| yc[(fold.train[i], j)]);
                    let mut means = vec![0.0; b];
                    if problem.fit_intercept() {
                        for (j, mean) in means.iter_mut().enumerate() {
                            let m = ytr.col(j).iter().sum::<f64>() / ntr as f64;
                            for v in ytr.col_mut(j).iter_mut() {
                                *v -= m;
                            }
                            *mean = m;
                        }
                    }
                    let q = fold.problem.project_targets(&spec, ytr.as_ref());
                    let nval = fold.val.len();
                    for (ai, &a) in grid.iter().enumerate() {
                        let filter = spec.fit_filter(a);
                        let qa = Mat::from_fn(q.nrows(), b, |k, j| q[(k, j)] * filter[k]);
                        let pred = linalg::mul(phi.as_ref().as_ref(), qa.as_ref());
                        for j in 0..b {
                            let mse = (0..nval)
                                .map(|i| {
                                    let e = yc[(fold.val[i], j)] - means[j] - pred[(i, j)];
                                    e * e
                                })
                                .sum::<f64>()
                                / nval as f64;
                            scores[(ai, j)] += mse / folds.len() as f64;
                        }
                    }
                }
                Ok(scores)
            }
        }
    }

    /// himalaya breaks k-fold ties towards larger alphas with a `1e-10 log(alpha)` slope.
    fn tie_break(&self, alpha: f64) -> f64 {
        match self {
            Scorer::KFold(_) => -1e-10 * alpha.ln(),
            _ => 0.0,
        }
    }
}

/// For each group of `group` consecutive columns of `scores` (`A x b`), the alpha minimising the
/// mean score; returns one alpha per column.
fn choose(scorer: &Scorer, grid: &[f64], scores: MatRef<'_, f64>, group: usize) -> Vec<f64> {
    let b = scores.ncols();
    let mut chosen = vec![0.0; b];
    let mut start = 0;
    while start < b {
        let end = (start + group).min(b);
        let mut best = (f64::INFINITY, grid[0]);
        for (ai, &a) in grid.iter().enumerate() {
            let mean = (start..end).map(|j| scores[(ai, j)]).sum::<f64>() / (end - start) as f64 + scorer.tie_break(a);
            if mean < best.0 {
                best = (mean, a);
            }
        }
        chosen[start..end].fill(best.1);
        start = end;
    }
    chosen
}

impl RidgeProblem {
    /// Fits every target of `targets` and predicts each evaluation set, streaming the targets
    /// in blocks: neither all targets nor any `p x d` weights are ever held.
    ///
    /// Fixed alphas cost one `m x n` operator per alpha and evaluation set, then `2 m n` flops
    /// per target, in f32 GEMMs; one alpha for all targets streams blocks of rows from
    /// row-major sources (see [`Streaming`]), anything else blocks of columns. A grid uses the Gram eigendecomposition (computed once per problem) and
    /// scores every candidate per target before predicting with the chosen one; when a group
    /// of targets that shares an alpha spans several blocks, the targets are read twice.
    pub fn fit_predict(
        &self,
        targets: &mut dyn TargetSource,
        policy: &AlphaPolicy,
        evals: &[&EvaluationSet],
        options: &FitOptions,
    ) -> Result<RidgeFit> {
        check_targets(self, targets)?;
        for e in evals {
            e.check_owner(self)?;
        }
        if options.block_cols == 0 {
            return Err(RidgeError::Invalid("FitOptions::block_cols must be > 0".into()));
        }
        let d = targets.n_cols();
        let mut outputs: Vec<Array2<f32>> = evals.iter().map(|e| Array2::zeros((e.n_rows(), d))).collect();
        let started = Instant::now();
        let alphas = match policy {
            AlphaPolicy::Grid(grid) => {
                grid.validate()?;
                return self.fit_predict_grid(targets, grid, evals, options, outputs);
            }
            AlphaPolicy::Fixed(a) => {
                validate::alpha("fixed alpha", *a)?;
                vec![*a; d]
            }
            AlphaPolicy::PerTarget(v) => {
                if v.len() != d {
                    return Err(RidgeError::Shape { what: "per-target alphas".into(), expected: d, got: v.len() });
                }
                for (j, &a) in v.iter().enumerate() {
                    validate::alpha(&format!("alpha of target {j}"), a)?;
                }
                v.clone()
            }
        };
        let mut timings = FitTimings::default();
        let by_rows = columns_by_alpha(&alphas).len() == 1
            && match options.streaming {
                Streaming::Rows => true,
                Streaming::Columns => false,
                Streaming::Auto => targets.rows_are_contiguous(),
            };
        if by_rows {
            self.predict_by_rows(targets, alphas[0], evals, options, &mut outputs, &mut timings)?;
            return Ok(RidgeFit { alphas, predictions: outputs, grid: Vec::new(), scores: None, timings });
        }
        timed(&mut timings.operators_s, || prepare_operators(self, evals, &alphas))?;
        let mut predict_s = 0.0;
        stream_blocks(
            self,
            targets,
            block_ranges(d, options.block_cols),
            options.read_ahead,
            &mut timings.read_s,
            |mut block| {
                let range = block.first..block.first + block.cols;
                timed(&mut predict_s, || predict_block(self, evals, &mut block, &alphas[range.clone()], &mut outputs))?;
                tracing::debug!(done = range.end, of = d, seconds = started.elapsed().as_secs_f64(), "ridge: block");
                Ok(())
            },
        )?;
        timings.predict_s = predict_s;
        Ok(RidgeFit { alphas, predictions: outputs, grid: Vec::new(), scores: None, timings })
    }

    /// One alpha for every target, streamed in blocks of whole rows ([`Streaming::Rows`]).
    ///
    /// With `c` the mean of each target over the first row block, the GEMMs accumulate
    /// `G = S (Y - 1 c^T)` in f32 block by block (`G += S[:, rows] (Y[rows, :] - 1 c^T)`), on
    /// values as small as centred targets; the predictions are then
    /// `G + (S 1)(c - mu)^T + 1 mu^T` in f64, `mu` the training means (zero without intercept).
    /// With an intercept `S 1` vanishes in exact arithmetic (the smoother of centred data), so
    /// this equals `S (Y - 1 mu^T) + 1 mu^T`, the column path's centred product.
    fn predict_by_rows(
        &self,
        targets: &mut dyn TargetSource,
        alpha: f64,
        evals: &[&EvaluationSet],
        options: &FitOptions,
        outputs: &mut [Array2<f32>],
        timings: &mut FitTimings,
    ) -> Result<()> {
        let (n, d) = (self.n_samples(), targets.n_cols());
        let started = Instant::now();
        let smoothers: Vec<Arc<Mat<f32>>> =
            timed(&mut timings.operators_s, || evals.iter().map(|e| e.smoother(self, alpha)).collect())?;
        let row_sums: Vec<Vec<f64>> = smoothers
            .iter()
            .map(|s| (0..s.nrows()).map(|i| (0..n).map(|k| f64::from(s[(i, k)])).sum()).collect())
            .collect();
        let rows_per_block = (options.block_cols.saturating_mul(n) / d).clamp(1, n);
        let mut shift: Option<Vec<f32>> = None;
        let mut sums = vec![0f64; d];
        let mut predict_s = 0.0;
        let ranges = block_ranges(n, rows_per_block);
        let pool = BufferPool::default();
        let what = format!("targets {}", targets.describe());
        read_ahead(
            ranges,
            options.read_ahead,
            |block: &RowBlock| block.data.len() * 4,
            |rows| read_row_block(targets, rows, &pool),
            &mut timings.read_s,
            |mut block| {
                let t = Instant::now();
                let r = block.rows.len();
                if shift.is_none() {
                    validate::finite_rows(&what, &block.data, d, block.rows.start, 0)?;
                }
                let c = shift.get_or_insert_with(|| {
                    linalg::column_sums(&block.data, d).into_iter().map(|s| (s / r as f64) as f32).collect()
                });
                let block_sums = shift_and_sum(&mut block.data, d, c);
                if block_sums.iter().any(|s| !s.is_finite()) {
                    // Undo the shift to report the value as read.
                    block
                        .data
                        .par_chunks_mut(d)
                        .for_each(|row| row.iter_mut().zip(c.iter()).for_each(|(v, c)| *v += c));
                    validate::finite_rows(&what, &block.data, d, block.rows.start, 0)?;
                }
                for (s, v) in sums.iter_mut().zip(block_sums) {
                    *s += v;
                }
                // The row-major `r x d` block seen column-major is `Y^T` (`d x r`); the row-major
                // `m x d` predictions likewise are `P^T`: `P^T += Y^T S[:, rows]^T`.
                let yt = MatRef::from_column_major_slice(&block.data, d, r);
                for (s, out) in smoothers.iter().zip(outputs.iter_mut()) {
                    let m = out.nrows();
                    let slice = out
                        .as_slice_mut()
                        .ok_or_else(|| RidgeError::Invalid("prediction buffer is not contiguous".into()))?;
                    let dst = MatMut::from_column_major_slice_mut(slice, d, m);
                    let lhs = s.as_ref().as_ref().subcols(block.rows.start, r).transpose();
                    let accum = if block.rows.start == 0 { Accum::Replace } else { Accum::Add };
                    linalg::gemm_tall(dst, yt, lhs, accum);
                }
                predict_s += t.elapsed().as_secs_f64();
                pool.give(block.data);
                tracing::debug!(
                    done = block.rows.end,
                    of = n,
                    seconds = started.elapsed().as_secs_f64(),
                    "ridge: rows"
                );
                Ok(())
            },
        )?;
        let t = Instant::now();
        let c: Vec<f64> = shift.unwrap_or_else(|| vec![0.0; d]).into_iter().map(f64::from).collect();
        let mu: Vec<f64> = if self.fit_intercept() {
            c.iter().zip(&sums).map(|(c, s)| c + s / n as f64).collect()
        } else {
            vec![0.0; d]
        };
        for (out, s1) in outputs.iter_mut().zip(&row_sums) {
            let slice =
                out.as_slice_mut().ok_or_else(|| RidgeError::Invalid("prediction buffer is not contiguous".into()))?;
            slice.par_chunks_mut(d).zip(s1.par_iter()).for_each(|(row, &s1)| {
                for ((v, c), mu) in row.iter_mut().zip(&c).zip(&mu) {
                    *v = (f64::from(*v) + s1 * (c - mu) + mu) as f32;
                }
            });
        }
        timings.predict_s = predict_s + t.elapsed().as_secs_f64();
        Ok(())
    }

    fn fit_predict_grid(
        &self,
        targets: &mut dyn TargetSource,
        grid: &AlphaGrid,
        evals: &[&EvaluationSet],
        options: &FitOptions,
        mut outputs: Vec<Array2<f32>>,
    ) -> Result<RidgeFit> {
        let d = targets.n_cols();
        let n = self.n_samples();
        let group = grid.scope.group_size(d);
        let single_pass = group <= options.block_cols;
        let block_cols = if single_pass { (options.block_cols / group) * group } else { options.block_cols };
        let mut timings = FitTimings::default();
        let scorer = timed(&mut timings.operators_s, || Scorer::new(self, grid.criterion))?;
        let mut scores = Array2::<f64>::zeros((grid.alphas.len(), d));
        let mut alphas = vec![0.0; d];
        let (mut scoring_s, mut operators_s, mut predict_s) = (0.0, 0.0, 0.0);
        stream_blocks(
            self,
            targets,
            block_ranges(d, block_cols),
            options.read_ahead,
            &mut timings.read_s,
            |mut block| {
                let (start, end) = (block.first, block.first + block.cols);
                let s = timed(&mut scoring_s, || scorer.score(self, block.centred_f64(n).as_ref(), &grid.alphas))?;
                for a in 0..grid.alphas.len() {
                    for j in 0..block.cols {
                        scores[[a, start + j]] = s[(a, j)];
                    }
                }
                if single_pass {
                    let chosen = choose(&scorer, &grid.alphas, s.as_ref(), group);
                    alphas[start..end].copy_from_slice(&chosen);
                    timed(&mut operators_s, || prepare_operators(self, evals, &chosen))?;
                    timed(&mut predict_s, || predict_block(self, evals, &mut block, &chosen, &mut outputs))?;
                }
                Ok(())
            },
        )?;
        if !single_pass {
            let table = Mat::from_fn(scores.nrows(), scores.ncols(), |i, j| scores[[i, j]]);
            let chosen = choose(&scorer, &grid.alphas, table.as_ref(), group);
            alphas.copy_from_slice(&chosen);
            if !evals.is_empty() {
                timed(&mut operators_s, || prepare_operators(self, evals, &alphas))?;
                stream_blocks(
                    self,
                    targets,
                    block_ranges(d, block_cols),
                    options.read_ahead,
                    &mut timings.read_s,
                    |mut block| {
                        let range = block.first..block.first + block.cols;
                        timed(&mut predict_s, || predict_block(self, evals, &mut block, &alphas[range], &mut outputs))
                    },
                )?;
            }
        }
        timings.scoring_s = scoring_s;
        timings.operators_s += operators_s;
        timings.predict_s = predict_s;
        if matches!(grid.scope, AlphaScope::PerGroup) {
            tracing::info!(alpha = alphas[0], "ridge: alpha chosen for the group");
        }
        Ok(RidgeFit { alphas, predictions: outputs, grid: grid.alphas.clone(), scores: Some(scores), timings })
    }
}

//! The problem object: the centred design matrix and its Gram matrix, built once and shared by
//! every target group, every alpha and every evaluation set.

use crate::error::{Result, RidgeError};
use crate::linalg;
use crate::validate;
use faer::{Mat, MatRef};
use ndarray::ArrayView2;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

static NEXT_PROBLEM_ID: AtomicU64 = AtomicU64::new(1);

/// Which side of the normal equations is factorised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SolverForm {
    /// `n x n` Gram matrix `Xc Xc^T` (dual form): cheap when samples < features, as for fMRI.
    Kernel,
    /// `p x p` covariance `Xc^T Xc`: cheap when samples >= features.
    Primal,
}

/// How the problem is set up from the design matrix.
#[derive(Clone, Debug)]
pub struct ProblemOptions {
    /// Fit an unpenalised intercept by centring X and every target on the training means,
    /// exactly as scikit-learn's `Ridge(fit_intercept=True)`. When false, nothing is centred.
    pub fit_intercept: bool,
    /// Force a form; `None` picks the kernel form when features > samples (scikit-learn's rule).
    pub form: Option<SolverForm>,
    /// Arithmetic of the Gram matrix and of the evaluation cross-kernels.
    pub gram: GramPrecision,
}

impl Default for ProblemOptions {
    fn default() -> Self {
        ProblemOptions { fit_intercept: true, form: None, gram: GramPrecision::F64 }
    }
}

/// The arithmetic of the Gram matrix and of the evaluation sets' cross-kernels, and the storage
/// of the centred design. Factorisations and solves are f64 either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GramPrecision {
    /// f64 GEMMs (the default): the Gram matrix to f64 rounding, as scikit-learn's.
    #[default]
    F64,
    /// f32 GEMMs on the centred design rounded to f32 (about twice faer's f64 rate here), the
    /// product kept in f64, for every alpha far above its rounding; the design is held in f32
    /// (half the memory), the evaluation cross-kernels are f32 GEMMs on it, and an f64 copy of
    /// the rounded design is made only if something needs it (weights, alpha grids, k-fold).
    /// A Gram entry is off by about the f32 rounding of a length-`p` dot product, estimated as `eps_f32 sqrt(p) max_i K_ii`, and
    /// an alpha at least 1e5 times that perturbs `(K + alpha I)^-1` by at most ~1e-5 relative
    /// (the reference alphas at NSD subject-1 scale: estimate 0.23 against 50,000; predictions
    /// then agree with scikit-learn's to ~1e-7, docs/ridge.md). Smaller alphas, and the
    /// eigendecomposition of alpha grids, use the f64 Gram matrix, computed on first need.
    F32,
}

/// How far below an alpha the estimated f32 rounding of the Gram matrix must stay for the f32
/// Gram matrix to serve it ([`GramPrecision::F32`]).
const F32_GRAM_MARGIN: f64 = 1e-5;

/// The eigendecomposition of the Gram matrix, shared by every alpha of a grid.
///
/// Kernel form with intercept: the decomposition is of `K` restricted to the centred subspace
/// `1^T v = 0` (`n - 1` directions), since the constant direction is an exact null vector of
/// `Xc Xc^T` that the intercept fits exactly (leverage one, residual zero); keeping it would
/// leave a rounding-noise eigenvalue whose factor `a / (l + a)` is wrong at small alphas.
///
/// Eigenvalues at or below the tolerance `largest * max(n, p) * eps` are exact zeros (`values`
/// holds 0.0 for them), as in
/// exact arithmetic for a rank-deficient Gram matrix: such a direction adds nothing to the fit
/// (`X^T v = 0`), nothing to the leverages, and its whole component to the residual.
pub(crate) struct Spectrum {
    /// Eigenvalues `lambda` (ascending; 0.0 at or below the tolerance).
    pub values: Vec<f64>,
    /// Eigenvectors `V` (kernel: `n x n`, or `n x (n-1)` with intercept; primal: `p x p`).
    pub vectors: Mat<f64>,
    /// Primal form only: `Xc V` (`n x p`), the sample-space image of the eigenvectors.
    pub xc_v: Option<Mat<f64>>,
    /// Number of nonzero eigenvalues: the rank of `Xc`.
    pub rank: usize,
}

impl Spectrum {
    /// `1 / sqrt(lambda)` for nonzero eigenvalues, else 0: maps primal projections
    /// `V^T Xc^T y` onto the orthonormal sample basis `U^T y`.
    pub(crate) fn inverse_sqrt(&self) -> Vec<f64> {
        self.values.iter().map(|&l| if l > 0.0 { 1.0 / l.sqrt() } else { 0.0 }).collect()
    }

    /// The fit's filter `1 / (lambda + alpha)`, 0 on zero eigenvalues (whose direction
    /// contributes nothing to the weights or predictions: `X^T v = 0` exactly).
    pub(crate) fn fit_filter(&self, alpha: f64) -> Vec<f64> {
        self.values.iter().map(|&l| if l > 0.0 { 1.0 / (l + alpha) } else { 0.0 }).collect()
    }

    /// The residual filter `alpha / (lambda + alpha) = 1 - lambda / (lambda + alpha)`, computed
    /// without the cancellation of the right-hand side (1 on zero eigenvalues).
    pub(crate) fn residual_filter(&self, alpha: f64) -> Vec<f64> {
        self.values.iter().map(|&l| alpha / (l + alpha)).collect()
    }

    /// `n - tr(H)` for `n` samples: `(n - intercept - rank) + sum_{lambda > 0} alpha/(lambda+alpha)`.
    /// The first term counts the sample directions that the fit leaves wholly to the residual
    /// (outside the span of `Xc` and of the constant); every term is positive, so this stays
    /// exact where `tr(H)` tends to `n` (alpha far below the spectrum, n < p).
    pub(crate) fn residual_dof(&self, n: usize, intercept: bool, alpha: f64) -> f64 {
        let outside = n.saturating_sub(usize::from(intercept) + self.rank) as f64;
        outside + self.values.iter().filter(|&&l| l > 0.0).map(|&l| alpha / (l + alpha)).sum::<f64>()
    }
}

/// The centred design matrix `Xc` (`n x p`), in the problem's precision.
enum CentredDesign {
    /// f64, column-major ([`GramPrecision::F64`]).
    F64(Mat<f64>),
    /// Rounded to f32 (after centring in f64), row-major as the input usually is
    /// ([`GramPrecision::F32`]); `exact` is its f64 copy, made on first need.
    F32 { rows: Vec<f32>, n: usize, p: usize, exact: OnceLock<Mat<f64>> },
}

impl CentredDesign {
    fn dims(&self) -> (usize, usize) {
        match self {
            CentredDesign::F64(m) => (m.nrows(), m.ncols()),
            CentredDesign::F32 { n, p, .. } => (*n, *p),
        }
    }

    /// `Xc` in f32 (`n x p`, a row-major view), for [`GramPrecision::F32`].
    fn f32_view(&self) -> Option<MatRef<'_, f32>> {
        match self {
            CentredDesign::F64(_) => None,
            CentredDesign::F32 { rows, n, p, .. } => Some(MatRef::from_column_major_slice(rows, *p, *n).transpose()),
        }
    }

    /// `Xc` in f64 (for the f32 design, its f64 copy, made now if needed).
    fn f64_view(&self) -> MatRef<'_, f64> {
        match self {
            CentredDesign::F64(m) => m.as_ref(),
            CentredDesign::F32 { rows, n, p, exact } => exact
                .get_or_init(|| {
                    tracing::info!("ridge: f64 copy of the f32 design needed (weights, alpha grid or k-fold)");
                    linalg::from_row_major_shifted(rows, *n, *p, &vec![0.0; *p])
                })
                .as_ref(),
        }
    }
}

/// The Gram matrix of the centred design in f64: kernel `Xc Xc^T`, primal `Xc^T Xc`.
fn exact_gram(form: SolverForm, xc: MatRef<'_, f64>) -> Mat<f64> {
    match form {
        SolverForm::Kernel => linalg::gram_rows(xc),
        SolverForm::Primal => linalg::gram_rows(xc.transpose()),
    }
}

/// A ridge problem built once from the training design matrix `X` (`n` samples x `p` features).
///
/// It holds the centred `X` and its Gram matrix (f64), and lazily the Gram eigendecomposition
/// used by alpha grids. One problem serves any number of target groups
/// ([`RidgeProblem::fit_predict`](crate::RidgeProblem::fit_predict)), alphas and
/// [`EvaluationSet`]s, so the reference pipeline's 335 separate fits share one Gram matrix.
pub struct RidgeProblem {
    id: u64,
    form: SolverForm,
    fit_intercept: bool,
    precision: GramPrecision,
    x_mean: Vec<f64>,
    xc: CentredDesign,
    /// The Gram matrix in the problem's precision.
    gram: Mat<f64>,
    /// [`GramPrecision::F32`]: the estimated rounding of `gram` (0 for f64), and the f64 Gram
    /// matrix once an alpha or the spectrum needs it.
    f32_rounding: f64,
    exact_gram: OnceLock<Mat<f64>>,
    spectrum: Mutex<Option<Arc<Spectrum>>>,
}

impl std::fmt::Debug for RidgeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RidgeProblem")
            .field("n_samples", &self.n_samples())
            .field("n_features", &self.n_features())
            .field("form", &self.form)
            .field("fit_intercept", &self.fit_intercept)
            .finish()
    }
}

impl RidgeProblem {
    /// Builds the problem from `x` (`n x p`, f32 or f64): checks it, centres it in f64 (when
    /// fitting an intercept), stores it in the options' precision and forms the Gram matrix.
    ///
    /// Errors: [`RidgeError::Empty`] for no rows or columns, [`RidgeError::NonFinite`] for a
    /// NaN or infinity.
    pub fn new<T: Copy + Into<f64> + Sync>(x: ArrayView2<'_, T>, options: ProblemOptions) -> Result<Self> {
        validate::finite_matrix("training design matrix X", x)?;
        let (n, p) = x.dim();
        let x = x.as_standard_layout();
        let data = x.as_slice().ok_or_else(|| RidgeError::Invalid("design matrix is not contiguous".into()))?;
        let x_mean = if options.fit_intercept {
            linalg::column_sums(data, p).into_iter().map(|s| s / n as f64).collect()
        } else {
            vec![0.0; p]
        };
        let xc = match options.gram {
            GramPrecision::F64 => CentredDesign::F64(linalg::from_row_major_shifted(data, n, p, &x_mean)),
            GramPrecision::F32 => {
                CentredDesign::F32 { rows: linalg::shifted_rows_f32(data, p, &x_mean), n, p, exact: OnceLock::new() }
            }
        };
        Ok(Self::assemble(xc, x_mean, options))
    }

    /// Builds from an already checked f64 matrix, centring it (used for the folds of k-fold).
    pub(crate) fn from_f64(mut xc: Mat<f64>, options: ProblemOptions) -> Self {
        let (n, p) = (xc.nrows(), xc.ncols());
        let mut x_mean = vec![0.0; p];
        if options.fit_intercept {
            for (j, mean) in x_mean.iter_mut().enumerate() {
                let m = xc.col(j).iter().sum::<f64>() / n as f64;
                for v in xc.col_mut(j).iter_mut() {
                    *v -= m;
                }
                *mean = m;
            }
        }
        let xc = match options.gram {
            GramPrecision::F64 => CentredDesign::F64(xc),
            GramPrecision::F32 => CentredDesign::F32 {
                rows: (0..n * p).map(|k| xc[(k / p, k % p)] as f32).collect(),
                n,
                p,
                exact: OnceLock::new(),
            },
        };
        Self::assemble(xc, x_mean, options)
    }

    /// Forms the Gram matrix of a centred design.
    fn assemble(xc: CentredDesign, x_mean: Vec<f64>, options: ProblemOptions) -> Self {
        let (n, p) = xc.dims();
        let form = options.form.unwrap_or(if p > n { SolverForm::Kernel } else { SolverForm::Primal });
        let started = std::time::Instant::now();
        let gram = match (form, xc.f32_view()) {
            (_, None) => exact_gram(form, xc.f64_view()),
            (SolverForm::Kernel, Some(x32)) => linalg::gram_rows_f32(x32),
            (SolverForm::Primal, Some(x32)) => linalg::gram_rows_f32(x32.transpose()),
        };
        let f32_rounding = match options.gram {
            GramPrecision::F64 => 0.0,
            GramPrecision::F32 => {
                let largest = (0..gram.nrows()).map(|i| gram[(i, i)]).fold(0.0, f64::max);
                let length = match form {
                    SolverForm::Kernel => p,
                    SolverForm::Primal => n,
                };
                f64::from(f32::EPSILON) * (length as f64).sqrt() * largest
            }
        };
        tracing::debug!(n, p, ?form, seconds = started.elapsed().as_secs_f64(), "ridge: Gram matrix formed");
        RidgeProblem {
            id: NEXT_PROBLEM_ID.fetch_add(1, Ordering::Relaxed),
            form,
            fit_intercept: options.fit_intercept,
            precision: options.gram,
            x_mean,
            xc,
            gram,
            f32_rounding,
            exact_gram: OnceLock::new(),
            spectrum: Mutex::new(None),
        }
    }

    /// Number of training samples `n`.
    pub fn n_samples(&self) -> usize {
        self.xc.dims().0
    }

    /// Number of features `p`.
    pub fn n_features(&self) -> usize {
        self.xc.dims().1
    }

    /// The form in use.
    pub fn form(&self) -> SolverForm {
        self.form
    }

    /// The arithmetic of the Gram matrix and cross-kernels.
    pub fn precision(&self) -> GramPrecision {
        self.precision
    }

    /// Whether an intercept is fitted (targets and X centred on the training means).
    pub fn fit_intercept(&self) -> bool {
        self.fit_intercept
    }

    /// Training means of the features (zeros without intercept).
    pub fn x_mean(&self) -> &[f64] {
        &self.x_mean
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The centred design in f64 (for an f32 problem, its f64 copy, made on first need).
    pub(crate) fn xc(&self) -> MatRef<'_, f64> {
        self.xc.f64_view()
    }

    /// The centred design as held in f32 ([`GramPrecision::F32`]; `None` for an f64 problem).
    pub(crate) fn xc_f32(&self) -> Option<MatRef<'_, f32>> {
        self.xc.f32_view()
    }

    /// The Gram matrix to f64 rounding (computed now if the problem's is f32).
    pub(crate) fn gram(&self) -> MatRef<'_, f64> {
        match self.precision {
            GramPrecision::F64 => self.gram.as_ref(),
            GramPrecision::F32 => self
                .exact_gram
                .get_or_init(|| {
                    tracing::info!("ridge: f64 Gram matrix needed (alpha grid or small alpha)");
                    exact_gram(self.form, self.xc())
                })
                .as_ref(),
        }
    }

    /// Which Gram matrix a fixed `alpha` is factorised with: the problem's own, unless it is f32
    /// and its estimated rounding is not negligible next to `alpha` ([`GramPrecision::F32`]).
    pub fn precision_for(&self, alpha: f64) -> GramPrecision {
        if self.precision == GramPrecision::F32 && self.f32_rounding <= F32_GRAM_MARGIN * alpha {
            GramPrecision::F32
        } else {
            GramPrecision::F64
        }
    }

    /// The Gram matrix to factorise with `alpha` ([`RidgeProblem::precision_for`]).
    pub(crate) fn gram_for(&self, alpha: f64) -> MatRef<'_, f64> {
        match self.precision_for(alpha) {
            GramPrecision::F32 => self.gram.as_ref(),
            GramPrecision::F64 => self.gram(),
        }
    }

    /// Computes the eigendecomposition now (it is otherwise computed on first need by an alpha
    /// grid). Useful to pay the cost up front and to time it.
    pub fn precompute_spectrum(&self) -> Result<()> {
        self.spectrum().map(|_| ())
    }

    pub(crate) fn spectrum_if_ready(&self) -> Option<Arc<Spectrum>> {
        self.spectrum.lock().ok().and_then(|s| s.clone())
    }

    pub(crate) fn spectrum(&self) -> Result<Arc<Spectrum>> {
        let mut slot =
            self.spectrum.lock().map_err(|_| RidgeError::Invalid("spectrum cache poisoned by a panic".into()))?;
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let started = std::time::Instant::now();
        let what = match self.form {
            SolverForm::Kernel => "kernel Gram matrix Xc Xc^T",
            SolverForm::Primal => "covariance Xc^T Xc",
        };
        let deflate = self.form == SolverForm::Kernel && self.fit_intercept;
        let (mut values, vectors) = if deflate {
            let n = self.n_samples();
            if n < 2 {
                (Vec::new(), Mat::zeros(n, 0))
            } else {
                let restricted = linalg::onto_constant_complement(self.gram());
                let (values, w) = linalg::symmetric_eigen(what, restricted.as_ref())?;
                drop(restricted);
                (values, linalg::from_constant_complement(w.as_ref()))
            }
        } else {
            linalg::symmetric_eigen(what, self.gram())?
        };
        let largest = values.last().copied().unwrap_or(0.0);
        let dim = self.n_samples().max(self.n_features()) as f64;
        let tolerance = largest * dim * f64::EPSILON;
        for l in values.iter_mut().filter(|l| **l <= tolerance) {
            *l = 0.0;
        }
        let rank = values.iter().filter(|&&l| l > 0.0).count();
        let xc_v = match self.form {
            SolverForm::Kernel => None,
            SolverForm::Primal => Some(linalg::mul(self.xc(), vectors.as_ref())),
        };
        tracing::debug!(
            size = values.len(),
            rank,
            tolerance,
            seconds = started.elapsed().as_secs_f64(),
            "ridge: Gram eigendecomposition"
        );
        let s = Arc::new(Spectrum { values, vectors, xc_v, rank });
        *slot = Some(s.clone());
        Ok(s)
    }

    /// `Q`, the targets in the eigenbasis: kernel `V^T Yc`; primal `V^T Xc^T Yc`.
    pub(crate) fn project_targets(&self, spec: &Spectrum, yc: MatRef<'_, f64>) -> Mat<f64> {
        match self.form {
            SolverForm::Kernel => linalg::mul(spec.vectors.transpose(), yc),
            SolverForm::Primal => {
                let xty = linalg::mul(self.xc().transpose(), yc);
                linalg::mul(spec.vectors.transpose(), xty.as_ref())
            }
        }
    }

    /// `G = U^T Yc` from `Q`, where `U` is the orthonormal sample-space eigenbasis.
    pub(crate) fn sample_projection(&self, spec: &Spectrum, q: Mat<f64>) -> Mat<f64> {
        match self.form {
            SolverForm::Kernel => q,
            SolverForm::Primal => {
                let s = spec.inverse_sqrt();
                Mat::from_fn(q.nrows(), q.ncols(), |i, j| q[(i, j)] * s[i])
            }
        }
    }

    /// `U` (`n x r`), the orthonormal sample-space eigenbasis (columns of zero eigenvalue are
    /// zero in the primal form; in the kernel form with intercept, `r = n - 1` directions
    /// orthogonal to the constant).
    pub(crate) fn sample_basis(&self, spec: &Spectrum) -> Mat<f64> {
        match (&spec.xc_v, self.form) {
            (Some(xv), SolverForm::Primal) => {
                let s = spec.inverse_sqrt();
                Mat::from_fn(xv.nrows(), xv.ncols(), |i, j| xv[(i, j)] * s[j])
            }
            _ => spec.vectors.clone(),
        }
    }

    /// A new problem on a subset of the training rows (its own centring), for k-fold.
    pub(crate) fn row_subset(&self, rows: &[usize]) -> Self {
        let xc = self.xc();
        let xs = Mat::from_fn(rows.len(), self.n_features(), |i, j| xc[(rows[i], j)]);
        Self::from_f64(
            xs,
            ProblemOptions { fit_intercept: self.fit_intercept, form: Some(self.form), gram: self.precision },
        )
    }

    /// Prepares new rows (`m x p`) for prediction: centred on the training means and, in the
    /// kernel form, reduced to their cross-kernel with the training rows (`m x n`), so that
    /// predictions never need the `p x d` weights.
    pub fn evaluation_set<T: Copy + Into<f64> + Sync>(&self, x: ArrayView2<'_, T>) -> Result<EvaluationSet> {
        if x.ncols() != self.n_features() {
            return Err(RidgeError::Shape {
                what: "columns (features) of the evaluation rows".into(),
                expected: self.n_features(),
                got: x.ncols(),
            });
        }
        validate::finite_matrix("evaluation design matrix", x)?;
        if let (SolverForm::Kernel, Some(xc32)) = (self.form, self.xc.f32_view()) {
            // f32 problem: the cross-kernel as an f32 GEMM on the rows centred in f64 and
            // rounded, as the Gram matrix was formed.
            let x = x.as_standard_layout();
            let data = x.as_slice().ok_or_else(|| RidgeError::Invalid("evaluation rows are not contiguous".into()))?;
            let (m, p) = (x.nrows(), x.ncols());
            let xe = linalg::shifted_rows_f32(data, p, &self.x_mean);
            let xe = MatRef::from_column_major_slice(&xe, p, m).transpose();
            let mut cross = Mat::<f32>::zeros(m, self.n_samples());
            linalg::gemm(cross.as_mut(), xe, xc32.transpose(), 1.0f32);
            let design = Mat::from_fn(m, self.n_samples(), |i, j| f64::from(cross[(i, j)]));
            return Ok(self.evaluation_with_design(design));
        }
        let xe = Mat::from_fn(x.nrows(), x.ncols(), |i, j| x[[i, j]].into() - self.x_mean[j]);
        Ok(self.evaluation_from_centred(xe))
    }

    /// Evaluation set from rows already expressed in this problem's centred coordinates.
    pub(crate) fn evaluation_from_centred(&self, xe: Mat<f64>) -> EvaluationSet {
        let design = match self.form {
            SolverForm::Kernel => linalg::mul(xe.as_ref(), self.xc().transpose()),
            SolverForm::Primal => xe,
        };
        self.evaluation_with_design(design)
    }

    fn evaluation_with_design(&self, design: Mat<f64>) -> EvaluationSet {
        EvaluationSet { problem_id: self.id, design, features: Mutex::new(None), smoothers: Mutex::new(Vec::new()) }
    }

    /// Evaluation set for some of this problem's own training rows, centred by `mean` of
    /// another (fold) problem: used by k-fold.
    pub(crate) fn rows_as_evaluation_for(&self, rows: &[usize], fold: &RidgeProblem) -> EvaluationSet {
        let xc = self.xc();
        let xe = Mat::from_fn(rows.len(), self.n_features(), |i, j| xc[(rows[i], j)] - fold.x_mean[j]);
        fold.evaluation_from_centred(xe)
    }
}

/// New rows prepared for prediction by one [`RidgeProblem`]: holds their cross-kernel with the
/// training rows (kernel form) or their centred features (primal form), and caches the
/// `m x n` prediction operator of each alpha used, so that predicting a target costs `2 m n`
/// flops whatever `p` is.
pub struct EvaluationSet {
    problem_id: u64,
    /// Kernel: `(Xe - mean) Xc^T` (`m x n`); primal: `Xe - mean` (`m x p`).
    design: Mat<f64>,
    features: Mutex<Option<Arc<Mat<f64>>>>,
    smoothers: Mutex<Vec<(u64, Arc<Mat<f32>>)>>,
}

impl std::fmt::Debug for EvaluationSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvaluationSet").field("n_rows", &self.n_rows()).finish()
    }
}

impl EvaluationSet {
    /// Number of rows to predict.
    pub fn n_rows(&self) -> usize {
        self.design.nrows()
    }

    pub(crate) fn check_owner(&self, problem: &RidgeProblem) -> Result<()> {
        if self.problem_id == problem.id() {
            Ok(())
        } else {
            Err(RidgeError::Invalid("evaluation set was prepared by another RidgeProblem".into()))
        }
    }

    /// `Phi = design V` (`m x r`): predictions are `Phi diag(1/(lambda+alpha)) Q`.
    pub(crate) fn features(&self, spec: &Spectrum) -> Arc<Mat<f64>> {
        let mut slot = self.features.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = slot.as_ref() {
            return f.clone();
        }
        let f = Arc::new(linalg::mul(self.design.as_ref(), spec.vectors.as_ref()));
        *slot = Some(f.clone());
        f
    }

    /// The prediction operator `S_alpha` (`m x n`, f32): predictions = `S_alpha Yc + mean(Y)`.
    /// Built from the spectrum when it exists, else by one Cholesky solve; kept for the life of
    /// the evaluation set (one `m x n` f32 matrix per distinct alpha).
    pub(crate) fn smoother(&self, problem: &RidgeProblem, alpha: f64) -> Result<Arc<Mat<f32>>> {
        let key = alpha.to_bits();
        {
            let cache = self.smoothers.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, s)) = cache.iter().find(|(k, _)| *k == key) {
                return Ok(s.clone());
            }
        }
        let m = self.n_rows();
        let s64 = if let Some(spec) = problem.spectrum_if_ready() {
            let phi = self.features(&spec);
            let filter = spec.fit_filter(alpha);
            let scaled = Mat::from_fn(m, filter.len(), |i, j| phi[(i, j)] * filter[j]);
            match &spec.xc_v {
                None => linalg::mul(scaled.as_ref(), spec.vectors.transpose()),
                Some(xv) => linalg::mul(scaled.as_ref(), xv.transpose()),
            }
        } else {
            let mut z = self.design.transpose().to_owned();
            match problem.form() {
                SolverForm::Kernel => {
                    linalg::solve_shifted("kernel Gram matrix", problem.gram_for(alpha), alpha, z.as_mut())?;
                    z.transpose().to_owned()
                }
                SolverForm::Primal => {
                    linalg::solve_shifted("covariance", problem.gram_for(alpha), alpha, z.as_mut())?;
                    linalg::mul(problem.xc(), z.as_ref()).transpose().to_owned()
                }
            }
        };
        let s = Arc::new(linalg::to_f32(s64.as_ref()));
        let mut cache = self.smoothers.lock().unwrap_or_else(|e| e.into_inner());
        cache.push((key, s.clone()));
        Ok(s)
    }
}

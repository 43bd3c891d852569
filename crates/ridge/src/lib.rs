//! # ridge
//!
//! Multi-target ridge regression at NSD scale. One [`RidgeProblem`], built once from the fMRI
//! design matrix, serves every target group and every regularisation strength: the Gram matrix
//! (kernel form `Xc Xc^T` when samples < features, else the primal `Xc^T Xc`) is formed once
//! in f64; fixed alphas cost one Cholesky solve per alpha, alpha grids one eigendecomposition
//! scored by GCV, exact leave-one-out or k-fold, per target, per group of targets or per fit.
//! Targets stream from memory, `.npy` or `.safetensors` in blocks of rows (fixed alphas, from
//! row-major storage) or of columns (alpha grids) ([`TargetSource`], [`Streaming`]),
//! and predictions of new rows ([`EvaluationSet`]) never materialise the `p x d` weights;
//! weights can still be produced in column blocks ([`RidgeProblem::weights_by_block`]) or
//! kept as a [`RidgeModel`] saved as safetensors that numpy reads. Intercepts are fitted by
//! centring, exactly as scikit-learn's `Ridge(fit_intercept=True)`.
//!
//! ```no_run
//! use ridge::{AlphaPolicy, FitOptions, NpyTargets, ProblemOptions, RidgeProblem};
//! # fn main() -> ridge::Result<()> {
//! # let x_train = ndarray::Array2::<f32>::zeros((8859, 15724));
//! # let x_test = ndarray::Array2::<f32>::zeros((982, 15724));
//! let problem = RidgeProblem::new(x_train.view(), ProblemOptions::default())?;
//! let test = problem.evaluation_set(x_test.view())?;
//! let mut vdvae = NpyTargets::open("vdvae_train_latents.npy")?;
//! let fit = problem.fit_predict(&mut vdvae, &AlphaPolicy::Fixed(50_000.0), &[&test],
//!                               &FitOptions::default())?;
//! let predictions = &fit.predictions[0]; // 982 x 91,168
//! # let _ = predictions; Ok(()) }
//! ```
//!
//! It knows nothing of NSD files or of neural networks.

mod alpha;
mod error;
mod fit;
mod linalg;
mod model;
mod problem;
mod source;
mod validate;
mod weights;

pub use alpha::{AlphaGrid, AlphaPolicy, AlphaScope, Criterion};
pub use error::{Result, RidgeError};
pub use fit::{FitOptions, FitTimings, ReadAhead, RidgeFit, Streaming};
pub use model::{MODEL_FORMAT, RidgeModel};
pub use problem::{EvaluationSet, GramPrecision, ProblemOptions, RidgeProblem, SolverForm};
pub use source::{NpyTargets, SafetensorsTargets, TargetSource, check_rows_request};
pub use weights::{WeightBlock, WeightTimings};

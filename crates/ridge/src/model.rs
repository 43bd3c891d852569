//! A fitted model in primal form (weights + intercepts), saved as safetensors that numpy reads
//! (`safetensors.numpy.load_file`): `coef` (`d x p`, f32, scikit-learn's `coef_` layout),
//! `intercept` (`d`, f32), `alpha` (`d`, f64).

use crate::alpha::AlphaPolicy;
use crate::error::{Result, RidgeError};
use crate::fit::FitOptions;
use crate::linalg;
use crate::problem::RidgeProblem;
use crate::source::TargetSource;
use crate::validate;
use faer::{Mat, MatRef};
use ndarray::{Array2, ArrayView2, s};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::collections::HashMap;
use std::path::Path;

/// Value of the `format` metadata key of saved models.
pub const MODEL_FORMAT: &str = "brain-diffuser-ridge/1";

/// Weights, intercepts and alphas of a fitted multi-target ridge regression.
#[derive(Clone, Debug, PartialEq)]
pub struct RidgeModel {
    coef: Array2<f32>,
    intercept: Vec<f32>,
    alphas: Vec<f64>,
}

impl RidgeModel {
    /// Fits all targets of `targets` on `problem` and keeps the full weights (`d x p` f32 in
    /// memory; for very many targets prefer [`RidgeProblem::fit_predict`] or
    /// [`RidgeProblem::weights_by_block`]). A grid policy first selects the alphas.
    pub fn fit(
        problem: &RidgeProblem,
        targets: &mut dyn TargetSource,
        policy: &AlphaPolicy,
        options: &FitOptions,
    ) -> Result<Self> {
        let alphas = match policy {
            AlphaPolicy::Fixed(a) => {
                validate::alpha("fixed alpha", *a)?;
                vec![*a; targets.n_cols()]
            }
            AlphaPolicy::PerTarget(v) => v.clone(),
            AlphaPolicy::Grid(_) => problem.fit_predict(targets, policy, &[], options)?.alphas,
        };
        let d = targets.n_cols();
        let mut coef = Array2::<f32>::zeros((d, problem.n_features()));
        let mut intercept = vec![0f32; d];
        problem.weights_by_block(targets, &alphas, options.block_cols, |block| {
            let b = block.coef.nrows();
            let rows = block.first_target..block.first_target + b;
            coef.slice_mut(s![rows.clone(), ..]).assign(&block.coef);
            intercept[rows].copy_from_slice(block.intercept);
            Ok(())
        })?;
        Self::from_parts(coef, intercept, alphas)
    }

    /// Assembles a model from its parts, checking that they agree.
    pub fn from_parts(coef: Array2<f32>, intercept: Vec<f32>, alphas: Vec<f64>) -> Result<Self> {
        let d = coef.nrows();
        for (what, got) in [("intercept", intercept.len()), ("alphas", alphas.len())] {
            if got != d {
                return Err(RidgeError::Shape {
                    what: format!("length of {what} (one per target row of coef)"),
                    expected: d,
                    got,
                });
            }
        }
        Ok(RidgeModel { coef, intercept, alphas })
    }

    /// Weights, `d x p` (row = target), as scikit-learn's `coef_`.
    pub fn coef(&self) -> ArrayView2<'_, f32> {
        self.coef.view()
    }

    /// Intercept of each target.
    pub fn intercept(&self) -> &[f32] {
        &self.intercept
    }

    /// Alpha of each target.
    pub fn alphas(&self) -> &[f64] {
        &self.alphas
    }

    /// Predicts `x @ coef^T + intercept` for new rows `x` (`m x p`).
    pub fn predict<T: Copy + Into<f64>>(&self, x: ArrayView2<'_, T>) -> Result<Array2<f32>> {
        let (d, p) = self.coef.dim();
        if x.ncols() != p {
            return Err(RidgeError::Shape {
                what: "columns (features) of the rows to predict".into(),
                expected: p,
                got: x.ncols(),
            });
        }
        validate::finite_matrix("rows to predict", x)?;
        let m = x.nrows();
        let xm = Mat::from_fn(m, p, |i, j| x[[i, j]].into() as f32);
        let coef = self
            .coef
            .as_slice()
            .map(|s| MatRef::from_column_major_slice(s, p, d).to_owned())
            .unwrap_or_else(|| Mat::from_fn(p, d, |f, t| self.coef[[t, f]]));
        let mut out = Mat::<f32>::zeros(m, d);
        linalg::gemm(out.as_mut(), xm.as_ref(), coef.as_ref(), 1.0f32);
        Ok(Array2::from_shape_fn((m, d), |(i, t)| out[(i, t)] + self.intercept[t]))
    }

    /// Writes the model atomically (temporary file, then rename) as safetensors.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let (d, p) = self.coef.dim();
        let coef_bytes: Vec<u8> = self.coef.iter().flat_map(|v| v.to_le_bytes()).collect();
        let icpt: Vec<u8> = self.intercept.iter().flat_map(|v| v.to_le_bytes()).collect();
        let alpha: Vec<u8> = self.alphas.iter().flat_map(|v| v.to_le_bytes()).collect();
        let err = |e: safetensors::SafeTensorError| RidgeError::file(path, e);
        let tensors = vec![
            ("coef", TensorView::new(Dtype::F32, vec![d, p], &coef_bytes).map_err(err)?),
            ("intercept", TensorView::new(Dtype::F32, vec![d], &icpt).map_err(err)?),
            ("alpha", TensorView::new(Dtype::F64, vec![d], &alpha).map_err(err)?),
        ];
        let meta = HashMap::from([("format".to_string(), MODEL_FORMAT.to_string())]);
        safetensors::serialize_to_file(tensors, Some(meta), path).map_err(err)
    }

    /// Reads a model written by [`RidgeModel::save`] (or by numpy with the same names).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| RidgeError::file(path, e))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| RidgeError::file(path, e))?;
        let get = |name: &str, dtype: Dtype| -> Result<(Vec<usize>, Vec<u8>)> {
            let t = st.tensor(name).map_err(|e| RidgeError::file(path, format!("tensor {name:?}: {e}")))?;
            if t.dtype() != dtype {
                return Err(RidgeError::file(
                    path,
                    format!("tensor {name:?} has dtype {:?}, expected {dtype:?}", t.dtype()),
                ));
            }
            Ok((t.shape().to_vec(), t.data().to_vec()))
        };
        let (cshape, cdata) = get("coef", Dtype::F32)?;
        let (ishape, idata) = get("intercept", Dtype::F32)?;
        let (ashape, adata) = get("alpha", Dtype::F64)?;
        if cshape.len() != 2 || ishape.len() != 1 || ashape.len() != 1 {
            return Err(RidgeError::file(
                path,
                format!("expected coef (d, p), intercept (d,), alpha (d,); got {cshape:?}, {ishape:?}, {ashape:?}"),
            ));
        }
        let f32s = |b: &[u8]| -> Vec<f32> {
            b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        };
        let alphas: Vec<f64> =
            adata.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect();
        let coef =
            Array2::from_shape_vec((cshape[0], cshape[1]), f32s(&cdata)).map_err(|e| RidgeError::file(path, e))?;
        Self::from_parts(coef, f32s(&idata), alphas).map_err(|e| RidgeError::file(path, e))
    }
}

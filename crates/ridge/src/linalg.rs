//! Thin wrappers over faer: conversions between ndarray and faer layouts, the symmetric Gram
//! product, a Cholesky solve and the symmetric eigendecomposition, all with typed errors.

use crate::error::{Result, RidgeError};
use faer::linalg::matmul::triangular::BlockStructure;
use faer::linalg::solvers::Solve;
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};

/// The parallelism used for every dense kernel: faer's GEMM and factorisations on the global
/// rayon pool.
pub(crate) fn par() -> Par {
    Par::rayon(0)
}

/// `A A^T` for an `r x c` matrix, computing one triangle (half the flops) and mirroring it.
pub(crate) fn gram_rows(a: MatRef<'_, f64>) -> Mat<f64> {
    let r = a.nrows();
    let mut g = Mat::<f64>::zeros(r, r);
    faer::linalg::matmul::triangular::matmul(
        g.as_mut(),
        BlockStructure::TriangularLower,
        Accum::Replace,
        a,
        BlockStructure::Rectangular,
        a.transpose(),
        BlockStructure::Rectangular,
        1.0,
        par(),
    );
    for j in 0..r {
        for i in (j + 1)..r {
            g[(j, i)] = g[(i, j)];
        }
    }
    g
}

/// `dst = lhs * rhs` (replacing `dst`), parallel.
pub(crate) fn gemm<T: faer::traits::ComplexField + Copy>(
    dst: MatMut<'_, T>,
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    one: T,
) {
    faer::linalg::matmul::matmul(dst, Accum::Replace, lhs, rhs, one, par());
}

/// `lhs * rhs` in f64 as a new matrix.
pub(crate) fn mul(lhs: MatRef<'_, f64>, rhs: MatRef<'_, f64>) -> Mat<f64> {
    let mut out = Mat::<f64>::zeros(lhs.nrows(), rhs.ncols());
    gemm(out.as_mut(), lhs, rhs, 1.0);
    out
}

/// Solves `(g + alpha I) z = rhs` in place by Cholesky; `g` is symmetric positive semi-definite.
pub(crate) fn solve_shifted(what: &str, g: MatRef<'_, f64>, alpha: f64, rhs: MatMut<'_, f64>) -> Result<()> {
    let llt = shifted_cholesky(what, g, alpha)?;
    llt.solve_in_place(rhs);
    Ok(())
}

/// The Cholesky factor of `g + alpha I`.
pub(crate) fn shifted_cholesky(what: &str, g: MatRef<'_, f64>, alpha: f64) -> Result<faer::linalg::solvers::Llt<f64>> {
    let n = g.nrows();
    let mut shifted = g.to_owned();
    for i in 0..n {
        shifted[(i, i)] += alpha;
    }
    shifted.llt(Side::Lower).map_err(|e| RidgeError::Decomposition {
        what: format!("{what} + alpha I (alpha = {alpha})"),
        message: format!("{e:?}"),
    })
}

/// Eigenvalues (ascending, negatives from rounding clamped to zero) and eigenvectors of a
/// symmetric matrix.
pub(crate) fn symmetric_eigen(what: &str, g: MatRef<'_, f64>) -> Result<(Vec<f64>, Mat<f64>)> {
    let evd = g
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| RidgeError::Decomposition { what: what.to_string(), message: format!("{e:?}") })?;
    let s = evd.S().column_vector();
    let values = (0..s.nrows()).map(|i| s[i].max(0.0)).collect();
    Ok((values, evd.U().to_owned()))
}

/// Rounds an f64 matrix to f32.
pub(crate) fn to_f32(m: MatRef<'_, f64>) -> Mat<f32> {
    Mat::from_fn(m.nrows(), m.ncols(), |i, j| m[(i, j)] as f32)
}

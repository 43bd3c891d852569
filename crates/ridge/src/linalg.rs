//! Thin wrappers over faer: conversions between ndarray and faer layouts, the symmetric Gram
//! product, a Cholesky solve and the symmetric eigendecomposition, all with typed errors.

use crate::error::{Result, RidgeError};
use faer::linalg::solvers::Solve;
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};

/// The parallelism used for every dense kernel: faer's GEMM and factorisations on the global
/// rayon pool.
pub(crate) fn par() -> Par {
    Par::rayon(0)
}

/// Rows per block of [`gram_rows`].
const GRAM_BLOCK_ROWS: usize = 1024;

/// `A A^T` for an `r x c` matrix: the lower block triangle by rectangular GEMMs of
/// [`GRAM_BLOCK_ROWS`] rows each (rows `i..i+b` against rows `0..i+b`), then mirrored: `(1 + b/r)`
/// times the flops of one triangle (1.12 at NSD's r = 8,859), as plain GEMMs.
pub(crate) fn gram_rows(a: MatRef<'_, f64>) -> Mat<f64> {
    symmetric_from_lower(&lower_block_gram(a, 1.0))
}

/// [`gram_rows`] with f32 GEMMs, the result in f64.
pub(crate) fn gram_rows_f32(a: MatRef<'_, f32>) -> Mat<f64> {
    symmetric_from_lower(&lower_block_gram(a, 1.0f32))
}

/// The block rows of `A A^T` on and below the diagonal (the rest is left zero).
fn lower_block_gram<T: faer::traits::ComplexField + Copy>(a: MatRef<'_, T>, one: T) -> Mat<T> {
    let r = a.nrows();
    let mut g = Mat::<T>::zeros(r, r);
    for start in (0..r).step_by(GRAM_BLOCK_ROWS) {
        let end = (start + GRAM_BLOCK_ROWS).min(r);
        faer::linalg::matmul::matmul(
            g.as_mut().submatrix_mut(start, 0, end - start, end),
            Accum::Replace,
            a.subrows(start, end - start),
            a.subrows(0, end).transpose(),
            one,
            par(),
        );
    }
    g
}

/// The symmetric f64 matrix whose lower triangle is that of `g`.
fn symmetric_from_lower<T: Copy + Into<f64>>(g: &Mat<T>) -> Mat<f64> {
    Mat::from_fn(g.nrows(), g.ncols(), |i, j| if i >= j { g[(i, j)] } else { g[(j, i)] }.into())
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

/// `dst += lhs * rhs`, parallel.
pub(crate) fn gemm_add<T: faer::traits::ComplexField + Copy>(
    dst: MatMut<'_, T>,
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    one: T,
) {
    faer::linalg::matmul::matmul(dst, Accum::Add, lhs, rhs, one, par());
}

/// `dst += scale * lhs * rhs` in f64, parallel.
pub(crate) fn gemm_acc(dst: MatMut<'_, f64>, lhs: MatRef<'_, f64>, rhs: MatRef<'_, f64>, scale: f64) {
    faer::linalg::matmul::matmul(dst, Accum::Add, lhs, rhs, scale, par());
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

/// Restricts a symmetric `n x n` matrix `k` to the orthogonal complement of the constant vector
/// `u = 1/sqrt(n)`, the null direction that centring (the intercept) creates in the kernel Gram
/// matrix: returns `B = Q^T k Q` (`(n-1) x (n-1)`), where the columns of `Q` are the last `n-1`
/// columns of the Householder reflector `P = I - beta w w^T` (`w = u + e_1`), which maps `u` to
/// `-e_1`. The eigenvectors `W` of `B` map back with [`from_constant_complement`]. O(n^2).
pub(crate) fn onto_constant_complement(k: MatRef<'_, f64>) -> Mat<f64> {
    let n = k.nrows();
    let (w, beta) = constant_reflector(n);
    // P k P = k - beta w z^T - beta z w^T + beta^2 (w^T z) w w^T with z = k w.
    let z = mul(k, Mat::from_fn(n, 1, |i, _| w[i]).as_ref());
    let z: Vec<f64> = (0..n).map(|i| z[(i, 0)]).collect();
    let c: f64 = w.iter().zip(&z).map(|(a, b)| a * b).sum();
    Mat::from_fn(n - 1, n - 1, |i, j| {
        let (i, j) = (i + 1, j + 1);
        k[(i, j)] - beta * (w[i] * z[j] + z[i] * w[j]) + beta * beta * c * w[i] * w[j]
    })
}

/// `Q W` for the `Q` of [`onto_constant_complement`]: `n x r` columns orthogonal to the constant
/// vector. O(n r).
pub(crate) fn from_constant_complement(vecs: MatRef<'_, f64>) -> Mat<f64> {
    let n = vecs.nrows() + 1;
    let (w, beta) = constant_reflector(n);
    // Q W = [0; W] - beta w (w[1..]^T W).
    let t: Vec<f64> = (0..vecs.ncols()).map(|j| (1..n).map(|i| w[i] * vecs[(i - 1, j)]).sum()).collect();
    Mat::from_fn(n, vecs.ncols(), |i, j| {
        let top = if i == 0 { 0.0 } else { vecs[(i - 1, j)] };
        top - beta * w[i] * t[j]
    })
}

/// `w = u + e_1` and `beta = 2 / |w|^2` for the constant unit vector `u` of length `n`.
fn constant_reflector(n: usize) -> (Vec<f64>, f64) {
    let s = 1.0 / (n as f64).sqrt();
    let mut w = vec![s; n];
    w[0] += 1.0;
    (w, 2.0 / (2.0 + 2.0 * s))
}

/// A row-major `rows x cols` matrix as an f64 faer matrix (column-major), through
/// [`transpose_tiles`] (indexing element by element in column order would stride through the
/// source: 2.9 s against ~0.5 s at NSD's 8,859 x 15,724).
pub(crate) fn from_row_major<T: Copy + Into<f64> + Sync>(data: &[T], rows: usize, cols: usize) -> Mat<f64> {
    let mut out = vec![0f64; rows * cols];
    transpose_tiles(data, rows, cols, &mut out, T::into);
    MatRef::from_column_major_slice(&out, rows, cols).to_owned()
}

/// Writes the row-major `rows x cols` matrix `src` into `out` column-major, converting each
/// value, in 64 x 64 tiles (so that reads and writes both stay in cache), columns split across
/// the rayon pool.
pub(crate) fn transpose_tiles<S: Copy + Sync, D: Send>(
    src: &[S],
    rows: usize,
    cols: usize,
    out: &mut [D],
    convert: impl Fn(S) -> D + Sync,
) {
    use rayon::prelude::*;
    const TILE: usize = 64;
    if rows == 0 || cols == 0 {
        return;
    }
    out.par_chunks_mut(rows * TILE).enumerate().for_each(|(t, columns)| {
        let first_col = t * TILE;
        let width = columns.len() / rows;
        for i0 in (0..rows).step_by(TILE) {
            for k in 0..width {
                let column = &mut columns[k * rows..(k + 1) * rows];
                for i in i0..(i0 + TILE).min(rows) {
                    column[i] = convert(src[i * cols + first_col + k]);
                }
            }
        }
    });
}

/// Rounds an f64 matrix to f32.
pub(crate) fn to_f32(m: MatRef<'_, f64>) -> Mat<f32> {
    Mat::from_fn(m.nrows(), m.ncols(), |i, j| m[(i, j)] as f32)
}

//! Thin wrappers over faer: conversions between ndarray and faer layouts, the symmetric Gram
//! product, a Cholesky solve and the symmetric eigendecomposition, all with typed errors.

use crate::error::{Result, RidgeError};
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

/// Rows per chunk of [`gemm_tall`].
const TALL_CHUNK_ROWS: usize = 2048;

/// `dst = lhs * rhs` (`accum` Replace) or `dst += lhs * rhs` (Add) for a tall `dst` (many more
/// rows than columns, such as the `d x m` transposed predictions), as one GEMM per chunk of
/// [`TALL_CHUNK_ROWS`] rows, each parallel. On the 2-core build machines faer ran the prediction
/// shape (`197,376 x 982`, inner dimension 367-1,227) at 157-168 GFLOP/s as one call and at
/// 167-199 in chunks of 2,048 rows, and the weight product (`15,724 x 4,096`, inner dimension
/// 8,859) at 174 against 199 (`cargo run --release -p ridge --example gemm_shapes`).
pub(crate) fn gemm_tall(dst: MatMut<'_, f32>, lhs: MatRef<'_, f32>, rhs: MatRef<'_, f32>, accum: Accum) {
    let mut dst = dst;
    for start in (0..dst.nrows()).step_by(TALL_CHUNK_ROWS) {
        let rows = TALL_CHUNK_ROWS.min(dst.nrows() - start);
        faer::linalg::matmul::matmul(
            dst.as_mut().subrows_mut(start, rows),
            accum,
            lhs.subrows(start, rows),
            rhs,
            1.0f32,
            par(),
        );
    }
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
    shifted_cholesky(what, g, alpha)?.solve_in_place(rhs);
    Ok(())
}

/// The lower Cholesky factor `L` of a symmetric positive definite matrix `A = L L^T` (only the
/// lower triangle of `l` is the factor; the strict upper part holds leftovers).
pub(crate) struct Cholesky {
    l: Mat<f64>,
}

impl Cholesky {
    /// Solves `A z = rhs` in place: two triangular solves.
    pub(crate) fn solve_in_place(&self, mut rhs: MatMut<'_, f64>) {
        use faer::linalg::triangular_solve::{solve_lower_triangular_in_place, solve_upper_triangular_in_place};
        solve_lower_triangular_in_place(self.l.as_ref(), rhs.as_mut(), par());
        solve_upper_triangular_in_place(self.l.as_ref().transpose(), rhs, par());
    }

    /// `A^-1` (both triangles): `L^-T L^-1`, from faer's triangular inverse and one
    /// triangular-output product (`2 n^3 / 3` flops), a third of the flops of solving with the
    /// `n` columns of the identity.
    pub(crate) fn inverse(&self) -> Mat<f64> {
        use faer::linalg::matmul::triangular::{BlockStructure, matmul};
        let n = self.l.nrows();
        let mut l_inv = Mat::<f64>::zeros(n, n);
        faer::linalg::triangular_inverse::invert_lower_triangular(l_inv.as_mut(), self.l.as_ref(), par());
        let mut inv = Mat::<f64>::zeros(n, n);
        matmul(
            inv.as_mut(),
            BlockStructure::TriangularLower,
            Accum::Replace,
            l_inv.transpose(),
            BlockStructure::TriangularUpper,
            l_inv.as_ref(),
            BlockStructure::TriangularLower,
            1.0,
            par(),
        );
        for j in 1..n {
            for i in 0..j {
                inv[(i, j)] = inv[(j, i)];
            }
        }
        inv
    }
}

/// Columns per panel of [`shifted_cholesky`].
const CHOLESKY_PANEL: usize = 512;

/// The Cholesky factor of `g + alpha I`, right-looking by panels of [`CHOLESKY_PANEL`]
/// columns: faer factorises each diagonal block, a triangular solve gives the panel below it,
/// and the trailing lower triangle is updated by one triangular-output GEMM
/// (`A22 -= A21 A21^T`), where nearly all of the `n^3 / 3` flops go. faer's own `llt` reaches
/// ~41 GFLOP/s at NSD's n = 8,859 on the 2-core build machines against ~100 for its f64 GEMM.
pub(crate) fn shifted_cholesky(what: &str, g: MatRef<'_, f64>, alpha: f64) -> Result<Cholesky> {
    use faer::linalg::matmul::triangular::{BlockStructure, matmul};
    use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
    let n = g.nrows();
    let mut a = g.to_owned();
    for i in 0..n {
        a[(i, i)] += alpha;
    }
    for k0 in (0..n).step_by(CHOLESKY_PANEL) {
        let kb = CHOLESKY_PANEL.min(n - k0);
        let diagonal =
            a.as_ref().submatrix(k0, k0, kb, kb).llt(Side::Lower).map_err(|e| RidgeError::Decomposition {
                what: format!("{what} + alpha I (alpha = {alpha}), columns {k0}..{}", k0 + kb),
                message: format!("{e:?}"),
            })?;
        a.as_mut().submatrix_mut(k0, k0, kb, kb).copy_from(diagonal.L());
        let rest = n - k0 - kb;
        if rest == 0 {
            break;
        }
        let (top, mut bottom) = a.as_mut().split_at_row_mut(k0 + kb);
        let l11 = top.as_ref().submatrix(k0, k0, kb, kb);
        // A21 <- A21 L11^-T, i.e. L11 A21^T = A21^T.
        solve_lower_triangular_in_place(l11, bottom.as_mut().submatrix_mut(0, k0, rest, kb).transpose_mut(), par());
        let (left, right) = bottom.split_at_col_mut(k0 + kb);
        let a21 = left.as_ref().submatrix(0, k0, rest, kb);
        matmul(
            right,
            BlockStructure::TriangularLower,
            Accum::Add,
            a21,
            BlockStructure::Rectangular,
            a21.transpose(),
            BlockStructure::Rectangular,
            -1.0,
            par(),
        );
    }
    Ok(Cholesky { l: a })
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

/// Column sums in f64 of a row-major matrix with `cols` columns, rows split across the pool.
pub(crate) fn column_sums<T: Copy + Into<f64> + Sync>(data: &[T], cols: usize) -> Vec<f64> {
    use rayon::prelude::*;
    let rows = data.len() / cols.max(1);
    let per_task = rows.div_ceil(rayon::current_num_threads()).max(1);
    data.par_chunks(per_task * cols.max(1))
        .map(|part| {
            let mut sums = vec![0f64; cols];
            for row in part.chunks_exact(cols) {
                for (s, &v) in sums.iter_mut().zip(row) {
                    *s += v.into();
                }
            }
            sums
        })
        .reduce(|| vec![0f64; cols], add_into)
}

/// Adds `b` into `a` element by element.
pub(crate) fn add_into(mut a: Vec<f64>, b: Vec<f64>) -> Vec<f64> {
    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
    a
}

/// A row-major `rows x cols` matrix minus `shift[j]` in every column `j`, as an f64 faer matrix
/// (column-major), written in place through [`transpose_tiles`] (indexing element by element in
/// column order would stride through the source: 2.9 s against ~0.5 s at NSD's 8,859 x 15,724).
pub(crate) fn from_row_major_shifted<T: Copy + Into<f64> + Sync>(
    data: &[T],
    rows: usize,
    cols: usize,
    shift: &[f64],
) -> Mat<f64> {
    let mut out = Mat::<f64>::zeros(rows, cols);
    transpose_tiles(data, rows, cols, out.as_mut(), |v, j| v.into() - shift[j]);
    out
}

/// A row-major `rows x cols` matrix minus `shift[j]` in every column `j`, subtracted in f64 and
/// rounded to f32, still row-major; rows split across the pool.
pub(crate) fn shifted_rows_f32<T: Copy + Into<f64> + Sync>(data: &[T], cols: usize, shift: &[f64]) -> Vec<f32> {
    use rayon::prelude::*;
    let mut out = vec![0f32; data.len()];
    out.par_chunks_mut(cols.max(1)).zip(data.par_chunks(cols.max(1))).for_each(|(o, row)| {
        for ((o, &v), &c) in o.iter_mut().zip(row).zip(shift) {
            *o = (v.into() - c) as f32;
        }
    });
    out
}

/// Writes the row-major `rows x cols` matrix `src` into `out` (whose columns are contiguous, as
/// in an owned or slice-backed matrix), converting each value with its column index, in
/// 64 x 64 tiles (so that reads and writes both stay in cache), columns split across the pool.
pub(crate) fn transpose_tiles<S: Copy + Sync, D: Send>(
    src: &[S],
    rows: usize,
    cols: usize,
    mut out: MatMut<'_, D>,
    convert: impl Fn(S, usize) -> D + Sync,
) {
    use rayon::prelude::*;
    const TILE: usize = 64;
    if rows == 0 || cols == 0 {
        return;
    }
    out.as_mut().par_col_chunks_mut(TILE).enumerate().for_each(|(t, mut columns)| {
        let first_col = t * TILE;
        let width = columns.ncols();
        for i0 in (0..rows).step_by(TILE) {
            for k in 0..width {
                let column = columns
                    .as_mut()
                    .col_mut(k)
                    .try_as_col_major_mut()
                    .expect("columns of an owned or slice-backed matrix are contiguous")
                    .as_slice_mut();
                let j = first_col + k;
                for i in i0..(i0 + TILE).min(rows) {
                    column[i] = convert(src[i * cols + j], j);
                }
            }
        }
    });
}

/// Rounds an f64 matrix to f32.
pub(crate) fn to_f32(m: MatRef<'_, f64>) -> Mat<f32> {
    Mat::from_fn(m.nrows(), m.ncols(), |i, j| m[(i, j)] as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded symmetric positive semi-definite `n x n` matrix `B B^T` of rank `k`.
    fn gram_of_random(n: usize, k: usize, seed: u64) -> Mat<f64> {
        let mut state = seed;
        let b = Mat::<f64>::from_fn(n, k, |_, _| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        });
        mul(b.as_ref(), b.transpose())
    }

    /// The blocked factorisation over several panels (and a ragged last one) agrees with faer's
    /// own `llt`, and its solve leaves a residual at rounding level.
    #[test]
    fn blocked_cholesky_matches_faer_llt_across_panels() {
        let n = 2 * CHOLESKY_PANEL + 77;
        let g = gram_of_random(n, 300, 7);
        let alpha = 0.5;
        let ours = shifted_cholesky("test Gram", g.as_ref(), alpha).unwrap();
        let mut shifted = g.clone();
        for i in 0..n {
            shifted[(i, i)] += alpha;
        }
        let reference = shifted.llt(Side::Lower).unwrap();
        let l = reference.L();
        let scale = (0..n).map(|i| l[(i, i)]).fold(0.0, f64::max);
        for j in 0..n {
            for i in j..n {
                let e = (ours.l[(i, j)] - l[(i, j)]).abs();
                assert!(e <= 1e-10 * scale, "L[{i}, {j}]: {} against faer's {}", ours.l[(i, j)], l[(i, j)]);
            }
        }
        let rhs = Mat::<f64>::from_fn(n, 3, |i, j| ((i * 7 + j * 13) % 17) as f64 - 8.0);
        let mut z = rhs.clone();
        ours.solve_in_place(z.as_mut());
        let back = mul(shifted.as_ref(), z.as_ref());
        let worst = (0..3).flat_map(|j| (0..n).map(move |i| (i, j))).map(|(i, j)| (back[(i, j)] - rhs[(i, j)]).abs());
        assert!(worst.fold(0.0, f64::max) < 1e-8, "residual of the solve is not at rounding level");
    }

    /// The inverse from the factor is the inverse: `A A^-1 = I` to rounding, and symmetric.
    #[test]
    fn cholesky_inverse_inverts_the_shifted_matrix() {
        let n = CHOLESKY_PANEL + 133;
        let g = gram_of_random(n, 200, 11);
        let alpha = 2.0;
        let inv = shifted_cholesky("test Gram", g.as_ref(), alpha).unwrap().inverse();
        let mut shifted = g.clone();
        for i in 0..n {
            shifted[(i, i)] += alpha;
        }
        let product = mul(shifted.as_ref(), inv.as_ref());
        let mut worst = 0.0f64;
        for j in 0..n {
            for i in 0..n {
                let identity = if i == j { 1.0 } else { 0.0 };
                worst = worst.max((product[(i, j)] - identity).abs());
                assert_eq!(inv[(i, j)], inv[(j, i)], "inverse not symmetric at ({i}, {j})");
            }
        }
        assert!(worst < 1e-9, "A A^-1 is off the identity by {worst}");
    }

    /// An indefinite matrix is reported, naming the columns of the failing panel.
    #[test]
    fn blocked_cholesky_reports_an_indefinite_matrix() {
        let n = CHOLESKY_PANEL + 10;
        let mut g = gram_of_random(n, 40, 3);
        g[(n - 1, n - 1)] = -1.0;
        match shifted_cholesky("test Gram", g.as_ref(), 1e-3) {
            Err(RidgeError::Decomposition { what, .. }) => {
                assert!(what.contains(&format!("columns {CHOLESKY_PANEL}..{n}")), "{what}")
            }
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("an indefinite matrix was factorised"),
        }
    }

    /// Chunked tall GEMMs give the product of one call (both accumulation modes).
    #[test]
    fn tall_gemm_in_chunks_equals_one_gemm() {
        let (rows, k, cols) = (2 * TALL_CHUNK_ROWS + 5, 19, 7);
        let lhs = Mat::<f32>::from_fn(rows, k, |i, j| ((i * 3 + j) % 11) as f32 - 5.0);
        let rhs = Mat::<f32>::from_fn(k, cols, |i, j| ((i + 5 * j) % 7) as f32 - 3.0);
        let start = Mat::<f32>::from_fn(rows, cols, |i, j| (i % 5 + j) as f32);
        for accum in [Accum::Replace, Accum::Add] {
            let mut ours = start.clone();
            gemm_tall(ours.as_mut(), lhs.as_ref(), rhs.as_ref(), accum);
            let mut want = start.clone();
            faer::linalg::matmul::matmul(want.as_mut(), accum, lhs.as_ref(), rhs.as_ref(), 1.0f32, Par::Seq);
            assert!(ours == want, "{accum:?}");
        }
    }
}

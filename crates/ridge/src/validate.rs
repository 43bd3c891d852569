//! Input checks shared by every entry point: finiteness, emptiness, alpha ranges.

use crate::error::{Result, RidgeError};
use ndarray::ArrayView2;

/// Rejects an empty matrix and any NaN or infinity, naming `what` and the first bad cell.
pub(crate) fn finite_matrix<T: Copy + Into<f64>>(what: &str, a: ArrayView2<'_, T>) -> Result<()> {
    if a.nrows() == 0 || a.ncols() == 0 {
        return Err(RidgeError::Empty { what: format!("{what} ({} x {})", a.nrows(), a.ncols()) });
    }
    for ((row, col), &v) in a.indexed_iter() {
        let v: f64 = v.into();
        if !v.is_finite() {
            return Err(RidgeError::NonFinite { what: what.to_string(), row, col, value: v });
        }
    }
    Ok(())
}

/// Rejects a non-finite value in a column-major `rows x cols` block whose first column is
/// `first_col` in the caller's numbering.
pub(crate) fn finite_block(what: &str, data: &[f32], rows: usize, first_col: usize) -> Result<()> {
    if let Some(pos) = data.iter().position(|v| !v.is_finite()) {
        return Err(RidgeError::NonFinite {
            what: what.to_string(),
            row: pos % rows,
            col: first_col + pos / rows,
            value: f64::from(data[pos]),
        });
    }
    Ok(())
}

/// Rejects a non-finite value in a row-major block with `cols` columns whose first row and
/// column are `first_row` and `first_col` in the caller's numbering.
pub(crate) fn finite_rows(what: &str, data: &[f32], cols: usize, first_row: usize, first_col: usize) -> Result<()> {
    if let Some(pos) = data.iter().position(|v| !v.is_finite()) {
        return Err(RidgeError::NonFinite {
            what: what.to_string(),
            row: first_row + pos / cols,
            col: first_col + pos % cols,
            value: f64::from(data[pos]),
        });
    }
    Ok(())
}

/// Rejects alphas that are not finite and strictly positive.
pub(crate) fn alpha(what: &str, alpha: f64) -> Result<()> {
    if alpha.is_finite() && alpha > 0.0 {
        Ok(())
    } else {
        Err(RidgeError::InvalidAlpha { what: what.to_string(), alpha })
    }
}

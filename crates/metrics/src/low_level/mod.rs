//! Pixel metrics: PixCorr and the two SSIM variants, computed in float64 like the reference.

mod ssim;

pub use ssim::{SsimParams, ssim_columns_1d, ssim_gaussian_2d};

use crate::MetricsError;

/// Pearson correlation of two equally long value vectors (`np.corrcoef(a, b)[0, 1]`), in float64.
///
/// PixCorr is this over all RGB values of a ground truth and its (resized) reconstruction.
/// Returns NaN when either vector is constant, as numpy does.
pub fn pearson(a: &[f64], b: &[f64]) -> Result<f64, MetricsError> {
    if a.len() != b.len() || a.len() < 2 {
        return Err(MetricsError::Invalid {
            what: "pearson input".into(),
            message: format!("needs two vectors of the same length >= 2, got {} and {}", a.len(), b.len()),
        });
    }
    let n = a.len() as f64;
    let mean_a = a.iter().sum::<f64>() / n;
    let mean_b = b.iter().sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x - mean_a, y - mean_b);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    Ok((sab / (saa.sqrt() * sbb.sqrt())).clamp(-1.0, 1.0))
}

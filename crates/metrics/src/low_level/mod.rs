//! Pixel metrics: PixCorr and the two SSIM variants, computed in float64 like the reference.

mod ssim;

pub use ssim::{SsimParams, ssim_columns_1d, ssim_gaussian_2d};

use crate::MetricsError;

/// Pearson correlation of two equally long 8-bit vectors, exactly: integer moment sums, one
/// rounding at the end. Pearson is invariant to the `/ 255` scaling, so this equals
/// [`pearson`] of the scaled values (to ~1e-15) at a fraction of the cost; NaN for a constant vector.
pub fn pearson_u8(a: &[u8], b: &[u8]) -> Result<f64, MetricsError> {
    if a.len() != b.len() || a.len() < 2 {
        return Err(MetricsError::Invalid {
            what: "pearson input".into(),
            message: format!("needs two vectors of the same length >= 2, got {} and {}", a.len(), b.len()),
        });
    }
    // Per-chunk u32 sums cannot overflow (4096 * 255^2 < 2^32); totals are u64.
    let (mut sx, mut sy, mut sxx, mut syy, mut sxy) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for (ca, cb) in a.chunks(4096).zip(b.chunks(4096)) {
        let (mut x1, mut y1, mut xx, mut yy, mut xy) = (0u32, 0u32, 0u32, 0u32, 0u32);
        for (&x, &y) in ca.iter().zip(cb) {
            let (x, y) = (u32::from(x), u32::from(y));
            x1 += x;
            y1 += y;
            xx += x * x;
            yy += y * y;
            xy += x * y;
        }
        sx += u64::from(x1);
        sy += u64::from(y1);
        sxx += u64::from(xx);
        syy += u64::from(yy);
        sxy += u64::from(xy);
    }
    let n = a.len() as i128;
    let cov = n * sxy as i128 - sx as i128 * sy as i128;
    let vx = n * sxx as i128 - sx as i128 * sx as i128;
    let vy = n * syy as i128 - sy as i128 * sy as i128;
    Ok((cov as f64 / ((vx as f64).sqrt() * (vy as f64).sqrt())).clamp(-1.0, 1.0))
}

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

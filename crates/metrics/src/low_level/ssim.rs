//! SSIM as scikit-image's `structural_similarity(..., gaussian_weights=True, sigma=1.5,
//! use_sample_covariance=False, data_range=1.0)` computes it, in two variants:
//!
//! * [`ssim_gaussian_2d`]: the standard 2-D SSIM of a grey image (scikit-image >= 0.20 and MindEye).
//! * [`ssim_columns_1d`]: what scikit-image 0.17 (Brain-Diffuser's environment) computes when the
//!   grey image is passed with `multichannel=True`: every column is a "channel", scored as a 1-D
//!   signal along the rows, and the column scores are averaged.
//!
//! Both drop the `(win_size - 1) / 2` border samples where the window leaves the image, exactly as
//! scikit-image's cropped mean does, so the border mode of the Gaussian filter never matters and only
//! in-bounds taps are computed.

use crate::MetricsError;
use crate::pixels::GrayF64;

/// SSIM constants; the defaults are the ones every NSD paper uses.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SsimParams {
    /// Gaussian window standard deviation (1.5).
    pub sigma: f64,
    /// Window radius in standard deviations (scikit-image's `truncate`, 3.5).
    pub truncate: f64,
    /// Luminance constant factor K1 (0.01).
    pub k1: f64,
    /// Contrast constant factor K2 (0.03).
    pub k2: f64,
    /// Dynamic range L of the values (1.0 for images in [0, 1]).
    pub data_range: f64,
}

impl Default for SsimParams {
    fn default() -> Self {
        SsimParams { sigma: 1.5, truncate: 3.5, k1: 0.01, k2: 0.03, data_range: 1.0 }
    }
}

impl SsimParams {
    /// scipy's Gaussian radius `int(truncate * sigma + 0.5)` and normalised taps.
    fn kernel(&self) -> Vec<f64> {
        let radius = (self.truncate * self.sigma + 0.5) as i64;
        let taps: Vec<f64> =
            (-radius..=radius).map(|x| (-0.5 / (self.sigma * self.sigma) * (x * x) as f64).exp()).collect();
        let sum: f64 = taps.iter().sum();
        taps.into_iter().map(|t| t / sum).collect()
    }

    fn constants(&self) -> (f64, f64) {
        ((self.k1 * self.data_range).powi(2), (self.k2 * self.data_range).powi(2))
    }

    fn validate(&self) -> Result<(), MetricsError> {
        let ok = self.sigma > 0.0 && self.truncate > 0.0 && self.data_range > 0.0 && self.k1 >= 0.0 && self.k2 >= 0.0;
        if ok && self.sigma.is_finite() && self.truncate.is_finite() && self.data_range.is_finite() {
            Ok(())
        } else {
            Err(MetricsError::Invalid { what: "SSIM parameters".into(), message: format!("{self:?}") })
        }
    }
}

fn check_pair(a: &GrayF64, b: &GrayF64, win: usize, need_width: bool) -> Result<(), MetricsError> {
    if a.width != b.width || a.height != b.height {
        return Err(MetricsError::Invalid {
            what: "SSIM input".into(),
            message: format!("images differ in size: {}x{} vs {}x{}", a.width, a.height, b.width, b.height),
        });
    }
    if a.data.len() != a.width * a.height || b.data.len() != b.width * b.height {
        return Err(MetricsError::Invalid { what: "SSIM input".into(), message: "buffer length != width*height".into() });
    }
    if a.height < win || (need_width && a.width < win) || a.width == 0 {
        return Err(MetricsError::Invalid {
            what: "SSIM input".into(),
            message: format!("{}x{} image is smaller than the {win}-sample window", a.width, a.height),
        });
    }
    Ok(())
}

/// The SSIM map value from the five filtered moments.
#[inline]
fn ssim_value(ux: f64, uy: f64, uxx: f64, uyy: f64, uxy: f64, c1: f64, c2: f64) -> f64 {
    let vx = uxx - ux * ux;
    let vy = uyy - uy * uy;
    let vxy = uxy - ux * uy;
    let a1 = 2.0 * ux * uy + c1;
    let a2 = 2.0 * vxy + c2;
    let b1 = ux * ux + uy * uy + c1;
    let b2 = vx + vy + c2;
    (a1 * a2) / (b1 * b2)
}

/// Vertically filters the five moment maps of rows `[y0, y0 + rows)` centred on valid rows, for
/// columns given by `x_range`, from horizontally filtered (or raw) moments laid out as `[5][h][w]`.
/// Returns the sum of the SSIM map over those outputs.
fn vertical_sum(moments: &[Vec<f64>; 5], width: usize, y: usize, kernel: &[f64], c: (f64, f64)) -> f64 {
    let radius = kernel.len() / 2;
    let mut acc = [0.0f64; 5];
    let mut total = 0.0;
    for x in 0..width {
        acc.iter_mut().for_each(|a| *a = 0.0);
        for (t, &k) in kernel.iter().enumerate() {
            let idx = (y + t - radius) * width + x;
            for m in 0..5 {
                acc[m] += k * moments[m][idx];
            }
        }
        total += ssim_value(acc[0], acc[1], acc[2], acc[3], acc[4], c.0, c.1);
    }
    total
}

fn raw_moments(a: &GrayF64, b: &GrayF64) -> [Vec<f64>; 5] {
    [
        a.data.clone(),
        b.data.clone(),
        a.data.iter().map(|v| v * v).collect(),
        b.data.iter().map(|v| v * v).collect(),
        a.data.iter().zip(&b.data).map(|(x, y)| x * y).collect(),
    ]
}

/// Standard 2-D Gaussian SSIM of two grey images of the same size (scikit-image >= 0.20 semantics).
pub fn ssim_gaussian_2d(a: &GrayF64, b: &GrayF64, params: &SsimParams) -> Result<f64, MetricsError> {
    params.validate()?;
    let kernel = params.kernel();
    let win = kernel.len();
    check_pair(a, b, win, true)?;
    let radius = win / 2;
    let (w, h) = (a.width, a.height);
    let out_w = w - 2 * radius;
    // Horizontal pass: only the interior columns are ever used.
    let raw = raw_moments(a, b);
    let horizontal: [Vec<f64>; 5] = std::array::from_fn(|m| {
        let src = &raw[m];
        let mut dst = vec![0.0; h * out_w];
        for y in 0..h {
            let row = &src[y * w..(y + 1) * w];
            for x in 0..out_w {
                dst[y * out_w + x] = kernel.iter().zip(&row[x..x + win]).map(|(k, v)| k * v).sum();
            }
        }
        dst
    });
    let c = params.constants();
    let total: f64 = (radius..h - radius).map(|y| vertical_sum(&horizontal, out_w, y, &kernel, c)).sum();
    Ok(total / ((h - 2 * radius) * out_w) as f64)
}

/// Brain-Diffuser's SSIM: the mean over image columns of a 1-D Gaussian SSIM along each column
/// (scikit-image's `structural_similarity(gray_a, gray_b, channel_axis=-1, ...)`, which is what
/// `multichannel=True` meant in scikit-image 0.17).
pub fn ssim_columns_1d(a: &GrayF64, b: &GrayF64, params: &SsimParams) -> Result<f64, MetricsError> {
    params.validate()?;
    let kernel = params.kernel();
    let win = kernel.len();
    check_pair(a, b, win, false)?;
    let radius = win / 2;
    let raw = raw_moments(a, b);
    let c = params.constants();
    let (w, h) = (a.width, a.height);
    let total: f64 = (radius..h - radius).map(|y| vertical_sum(&raw, w, y, &kernel, c)).sum();
    // Every column has the same number of valid samples, so the mean of column means is the mean.
    Ok(total / ((h - 2 * radius) * w) as f64)
}

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
        return Err(MetricsError::Invalid {
            what: "SSIM input".into(),
            message: "buffer length != width*height".into(),
        });
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

/// Five rows of filtered moments: E[x], E[y], E[x^2], E[y^2], E[xy].
struct Moments {
    m: [Vec<f64>; 5],
}

impl Moments {
    fn zeros(len: usize) -> Self {
        Moments { m: std::array::from_fn(|_| vec![0.0; len]) }
    }

    fn clear(&mut self) {
        self.m.iter_mut().for_each(|v| v.iter_mut().for_each(|x| *x = 0.0));
    }

    /// Adds `k` times the moments of the value rows `a`, `b` (same length as self).
    /// Written as one flat loop per row so that it vectorises.
    fn add_products(&mut self, k: f64, a: &[f64], b: &[f64]) {
        let [m0, m1, m2, m3, m4] = &mut self.m;
        let n = m0.len();
        // Equal-length reslices let the compiler drop bounds checks and vectorise.
        let (a, b) = (&a[..n], &b[..n]);
        let (m1, m2, m3, m4) = (&mut m1[..n], &mut m2[..n], &mut m3[..n], &mut m4[..n]);
        for i in 0..n {
            let (x, y) = (a[i], b[i]);
            m0[i] += k * x;
            m1[i] += k * y;
            m2[i] += k * (x * x);
            m3[i] += k * (y * y);
            m4[i] += k * (x * y);
        }
    }

    /// Adds `k` times the (already filtered) moment rows of `other` starting at `offset`.
    fn add_scaled(&mut self, k: f64, other: &Moments, offset: usize) {
        for (dst, src) in self.m.iter_mut().zip(&other.m) {
            let len = dst.len();
            for (d, &s) in dst.iter_mut().zip(&src[offset..offset + len]) {
                *d += k * s;
            }
        }
    }

    fn ssim_sum(&self, c: (f64, f64)) -> f64 {
        let [m0, m1, m2, m3, m4] = &self.m;
        (0..m0.len()).map(|i| ssim_value(m0[i], m1[i], m2[i], m3[i], m4[i], c.0, c.1)).sum()
    }
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
    // Horizontal pass row by row (interior columns only) into a ring of the last `win` rows; as
    // soon as a full window of rows is there, the vertical pass gives one row of the SSIM map.
    let mut ring: Vec<Moments> = (0..win).map(|_| Moments::zeros(out_w)).collect();
    let mut row = Moments::zeros(out_w);
    let c = params.constants();
    let mut total = 0.0;
    for y in 0..h {
        let slot = &mut ring[y % win];
        slot.clear();
        let (ra, rb) = (&a.data[y * w..(y + 1) * w], &b.data[y * w..(y + 1) * w]);
        for (t, &k) in kernel.iter().enumerate() {
            slot.add_products(k, &ra[t..t + out_w], &rb[t..t + out_w]);
        }
        if y + 1 >= win {
            row.clear();
            let first = y + 1 - win;
            for (t, &k) in kernel.iter().enumerate() {
                row.add_scaled(k, &ring[(first + t) % win], 0);
            }
            total += row.ssim_sum(c);
        }
    }
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
    let c = params.constants();
    let (w, h) = (a.width, a.height);
    let mut row = Moments::zeros(w);
    let mut total = 0.0;
    for y in radius..h - radius {
        row.clear();
        for (t, &k) in kernel.iter().enumerate() {
            let r = (y + t - radius) * w;
            row.add_products(k, &a.data[r..r + w], &b.data[r..r + w]);
        }
        total += row.ssim_sum(c);
    }
    // Every column has the same number of valid samples, so the mean of column means is the mean.
    Ok(total / ((h - 2 * radius) * w) as f64)
}

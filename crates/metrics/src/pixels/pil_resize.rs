//! Pillow-exact resampling of 8-bit RGB images.
//!
//! Brain-Diffuser resizes with Pillow (`Image.resize`): bicubic for PixCorr, bilinear before the
//! feature networks. Pillow's resampler is a separable convolution whose support widens with the
//! down-scaling factor (antialiasing) and whose coefficients are quantised to 22-bit fixed point.
//! The `image` crate and libtorch's `_upsample_*_aa` use other roundings, so their uint8 outputs differ
//! from Pillow's by one grey level here and there; this module follows Pillow's `Resample.c`
//! arithmetic step by step, so the output bytes are identical (tested against Pillow).
//!
//! Pass order: Pillow up to at least 12 (and Brain-Diffuser's pinned 9.2) always runs the
//! horizontal pass first, as here. Pillow 13 chooses the order per call when the two axes are
//! scaled by different factors, which can move some pixels by one grey level. Uniform scaling (all
//! NSD images are square) and single-axis resizes give the same bytes in every version.

use image::RgbImage;

use crate::MetricsError;

/// A Pillow resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PilFilter {
    /// `Image.BILINEAR` (triangle filter, support 1).
    Bilinear,
    /// `Image.BICUBIC` (Keys cubic with a = -0.5, support 2): Pillow's default for `resize`.
    Bicubic,
}

impl PilFilter {
    fn support(self) -> f64 {
        match self {
            PilFilter::Bilinear => 1.0,
            PilFilter::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            PilFilter::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            PilFilter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// Pillow's fixed-point precision for 8-bit images (`PRECISION_BITS = 32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;

/// For every output sample: first input index, number of taps, and the fixed-point weights.
struct Coefficients {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` followed by `normalize_coeffs_8bpc`, for the full box `[0, in_size)`.
fn precompute(in_size: usize, out_size: usize, filter: PilFilter) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's `(int)` truncates toward zero; negative starts are clamped to 0 right after.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(xmax) {
            let w = filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        let row = &mut weights[xx * ksize..(xx + 1) * ksize];
        for x in 0..xmax {
            let w = if ww != 0.0 { k[x] / ww } else { k[x] };
            let fixed = w * f64::from(1u32 << PRECISION_BITS);
            row[x] = if w < 0.0 { (-0.5 + fixed) as i32 } else { (0.5 + fixed) as i32 };
        }
        bounds.push((xmin, xmax));
    }
    Coefficients { bounds, ksize, weights }
}

/// Pillow's `clip8`: drop the fixed-point fraction and saturate to 0..=255.
#[inline]
fn clip8(acc: i64) -> u8 {
    if acc >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if acc <= 0 {
        0
    } else {
        (acc >> PRECISION_BITS) as u8
    }
}

/// Resizes an RGB image exactly as Pillow's `Image.resize((width, height), filter)` does.
///
/// Same-size requests return a copy (Pillow does the same). Errors on a zero target size.
pub fn pil_resize(image: &RgbImage, width: u32, height: u32, filter: PilFilter) -> Result<RgbImage, MetricsError> {
    if width == 0 || height == 0 || image.width() == 0 || image.height() == 0 {
        return Err(MetricsError::Invalid {
            what: "resize".into(),
            message: format!("cannot resize {}x{} to {width}x{height}", image.width(), image.height()),
        });
    }
    let (in_w, in_h) = (image.width() as usize, image.height() as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    if (in_w, in_h) == (out_w, out_h) {
        return Ok(image.clone());
    }
    let horizontal = precompute(in_w, out_w, filter);
    let vertical = precompute(in_h, out_h, filter);
    let src = image.as_raw();

    // Horizontal pass over the rows the vertical pass will read (Pillow's ybox_first..ybox_last).
    let (temp, temp_w, row_offset) = if in_w != out_w {
        let first = vertical.bounds[0].0;
        let (last_min, last_len) = vertical.bounds[out_h - 1];
        let last = last_min + last_len;
        let mut temp = vec![0u8; (last - first) * out_w * 3];
        for (ty, out_row) in temp.chunks_exact_mut(out_w * 3).enumerate() {
            let in_row = &src[(ty + first) * in_w * 3..(ty + first + 1) * in_w * 3];
            for xx in 0..out_w {
                let (xmin, xmax) = horizontal.bounds[xx];
                let k = &horizontal.weights[xx * horizontal.ksize..xx * horizontal.ksize + xmax];
                // 32-bit sums as in Pillow (they provably fit: the weights' absolute sum is < 1.3).
                let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
                for (p, &w) in in_row[xmin * 3..(xmin + xmax) * 3].chunks_exact(3).zip(k) {
                    acc[0] += i32::from(p[0]) * w;
                    acc[1] += i32::from(p[1]) * w;
                    acc[2] += i32::from(p[2]) * w;
                }
                for c in 0..3 {
                    out_row[xx * 3 + c] = clip8(i64::from(acc[c]));
                }
            }
        }
        (temp, out_w, first)
    } else {
        (src.to_vec(), in_w, 0)
    };

    if in_h == out_h {
        return RgbImage::from_raw(width, height, temp).ok_or_else(|| MetricsError::Invalid {
            what: "resize".into(),
            message: "internal buffer size mismatch".into(),
        });
    }
    // Vertical pass, one output row at a time: accumulate whole source rows so the loop vectorises.
    // Pillow accumulates in 32-bit ints; the sums provably fit (weights' absolute sum < 1.3).
    let row_len = out_w * 3;
    let mut out = vec![0u8; out_h * row_len];
    let mut acc = vec![0i32; row_len];
    for (yy, out_row) in out.chunks_exact_mut(row_len).enumerate() {
        let (ymin, ymax) = vertical.bounds[yy];
        let k = &vertical.weights[yy * vertical.ksize..yy * vertical.ksize + ymax];
        acc.iter_mut().for_each(|a| *a = 1 << (PRECISION_BITS - 1));
        for (y, &w) in k.iter().enumerate() {
            let start = (y + ymin - row_offset) * temp_w * 3;
            for (a, &v) in acc.iter_mut().zip(&temp[start..start + row_len]) {
                *a += i32::from(v) * w;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(i64::from(a));
        }
    }
    RgbImage::from_raw(width, height, out)
        .ok_or_else(|| MetricsError::Invalid { what: "resize".into(), message: "internal buffer size mismatch".into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coefficients_sum_to_one_in_fixed_point() {
        for (i, o) in [(512, 425), (425, 224), (10, 37), (7, 3)] {
            for filter in [PilFilter::Bilinear, PilFilter::Bicubic] {
                let c = precompute(i, o, filter);
                for (xx, &(_, n)) in c.bounds.iter().enumerate() {
                    let sum: i64 = c.weights[xx * c.ksize..xx * c.ksize + n].iter().map(|&w| i64::from(w)).sum();
                    assert!((sum - (1 << PRECISION_BITS)).abs() <= n as i64, "{i}->{o} {filter:?} {xx}: {sum}");
                }
            }
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = RgbImage::from_pixel(31, 17, image::Rgb([7, 200, 255]));
        let out = pil_resize(&img, 12, 40, PilFilter::Bicubic).unwrap();
        assert!(out.pixels().all(|p| p.0 == [7, 200, 255]));
    }
}

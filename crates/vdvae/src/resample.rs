//! Pillow's convolution resampling of 8-bit RGB images, reproduced bit for bit.
//!
//! The reference resizes NSD stimuli with `torchvision...resize(PIL image, (64, 64))`, which is
//! Pillow's antialiased BILINEAR, and upsamples reconstructions with Pillow's BICUBIC. Neither
//! `image::imageops` (f32, other pass order) nor other crates we checked reproduce Pillow's
//! fixed-point arithmetic, which leaves ±1-level differences; this is a small port of the
//! algorithm of Pillow's `Resample.c` (separable filter whose support widens with the downscale
//! factor, coefficients normalised to 22-bit fixed point, horizontal pass then vertical pass,
//! rounding and clipping to uint8 between the passes).

use image::RgbImage;

/// The resampling filters brain-diffuser uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Triangle filter, support 1 (Pillow `BILINEAR`, antialiased when downscaling).
    Bilinear,
    /// Keys cubic with a = -0.5, support 2 (Pillow `BICUBIC`).
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Bicubic => {
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

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: first input index and fixed-point coefficients.
struct Coefficients {
    starts: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

fn coefficients(in_size: usize, out_size: usize, filter: Filter) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter.support() * filter_scale;
    let mut starts = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let inv = 1.0 / filter_scale;
        // Pillow rounds the window ends with a truncating cast of value + 0.5.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let raw: Vec<f64> = (xmin..xmax).map(|x| filter.weight((x as f64 - center + 0.5) * inv)).collect();
        let total: f64 = raw.iter().sum();
        let fixed = raw
            .iter()
            .map(|&w| {
                let w = if total != 0.0 { w / total } else { w };
                let scaled = w * (1u32 << PRECISION_BITS) as f64;
                (if w < 0.0 { scaled - 0.5 } else { scaled + 0.5 }) as i32
            })
            .collect();
        starts.push(xmin);
        weights.push(fixed);
    }
    Coefficients { starts, weights }
}

fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes an RGB image to `width` x `height` exactly as Pillow's `Image.resize` does with the
/// same filter (no `box`, no `reducing_gap`). Same-size input is returned unchanged.
pub fn resize(image: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    let (in_w, in_h) = (image.width() as usize, image.height() as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    if (in_w, in_h) == (out_w, out_h) || out_w == 0 || out_h == 0 || in_w == 0 || in_h == 0 {
        return if (in_w, in_h) == (out_w, out_h) { image.clone() } else { RgbImage::new(width, height) };
    }
    let src = image.as_raw();
    let horizontal = coefficients(in_w, out_w, filter);
    let vertical = coefficients(in_h, out_h, filter);
    let round = 1i64 << (PRECISION_BITS - 1);

    // Horizontal pass over the rows the vertical pass will read.
    let (first_row, temp, temp_w) = if in_w != out_w {
        let first = vertical.starts[0];
        let last = vertical.starts[out_h - 1] + vertical.weights[out_h - 1].len();
        let mut temp = vec![0u8; (last - first) * out_w * 3];
        for (ty, y) in (first..last).enumerate() {
            let row = &src[y * in_w * 3..(y + 1) * in_w * 3];
            for xx in 0..out_w {
                let start = horizontal.starts[xx];
                let mut acc = [round; 3];
                for (k, &w) in horizontal.weights[xx].iter().enumerate() {
                    let p = &row[(start + k) * 3..(start + k) * 3 + 3];
                    for c in 0..3 {
                        acc[c] += p[c] as i64 * w as i64;
                    }
                }
                for c in 0..3 {
                    temp[(ty * out_w + xx) * 3 + c] = clip8(acc[c]);
                }
            }
        }
        (first, temp, out_w)
    } else {
        (0, src.to_vec(), in_w)
    };

    if in_h == out_h {
        return RgbImage::from_raw(width, height, temp).unwrap_or_else(|| RgbImage::new(width, height));
    }
    let mut out = vec![0u8; out_w * out_h * 3];
    for yy in 0..out_h {
        let start = vertical.starts[yy] - first_row;
        for xx in 0..temp_w {
            let mut acc = [round; 3];
            for (k, &w) in vertical.weights[yy].iter().enumerate() {
                let p = &temp[((start + k) * temp_w + xx) * 3..((start + k) * temp_w + xx) * 3 + 3];
                for c in 0..3 {
                    acc[c] += p[c] as i64 * w as i64;
                }
            }
            for c in 0..3 {
                out[(yy * out_w + xx) * 3 + c] = clip8(acc[c]);
            }
        }
    }
    RgbImage::from_raw(width, height, out).unwrap_or_else(|| RgbImage::new(width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coefficients_sum_to_one_in_fixed_point() {
        for (i, o) in [(425, 64), (64, 512), (37, 64), (7, 3)] {
            for f in [Filter::Bilinear, Filter::Bicubic] {
                let c = coefficients(i, o, f);
                for w in &c.weights {
                    let s: i64 = w.iter().map(|&v| v as i64).sum();
                    assert!((s - (1 << PRECISION_BITS)).abs() <= w.len() as i64, "{i}->{o} {f:?}: {s}");
                }
            }
        }
    }

    #[test]
    fn constant_images_stay_constant() {
        let img = RgbImage::from_pixel(53, 29, image::Rgb([10, 200, 255]));
        for f in [Filter::Bilinear, Filter::Bicubic] {
            let out = resize(&img, 64, 64, f);
            assert!(out.pixels().all(|p| p.0 == [10, 200, 255]), "{f:?}");
        }
    }
}

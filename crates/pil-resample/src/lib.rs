//! Pillow-exact resizing of 8-bit RGB images.
//!
//! Brain-Diffuser resizes every image with Pillow: NSD stimuli to 64x64 (VDVAE) and to 512x512
//! (CLIP-Vision) through torchvision's PIL `resize` (BILINEAR), the 64x64 stage-1 images to 512x512
//! (BICUBIC), CLIP's shortest-side-224 preprocessing (BICUBIC), and the metrics' 512 -> 425
//! (BICUBIC) and -> 224 (BILINEAR) resizes. Pillow's resampler (`libImaging/Resample.c`) is a
//! separable convolution whose support widens with the down-scaling factor (so shrinking is always
//! antialiased, whatever torchvision's `antialias` says), with coefficients normalised in f64 and
//! then quantised to 22-bit fixed point (`PRECISION_BITS = 32 - 8 - 2`), a horizontal pass over only
//! the rows the vertical pass reads, and rounding plus clipping to `u8` after each pass.
//!
//! Neither the `image` crate (its filters run in f32 with another window and rounding) nor libtorch
//! (`_upsample_*_aa` rounds differently) produces these bytes; both differ from Pillow by one grey
//! level here and there. No Rust crate we know of promises Pillow's bytes, hence this small crate,
//! whose only job is that (tested byte for byte against Pillow 13.0.0 on photographs at every size
//! pair the pipeline uses, `tests/pillow.rs`).
//!
//! Pass order: Pillow (at least up to 12, and Brain-Diffuser's pinned 9.2) runs the horizontal
//! pass first, as here. Uniform scaling (all NSD images are square) and single-axis resizes give
//! the same bytes in every Pillow version.

use image::RgbImage;

/// A Pillow resampling filter (the two the pipeline uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Filter {
    /// `Image.BILINEAR`: triangle filter, support 1 (torchvision's default on PIL images).
    Bilinear,
    /// `Image.BICUBIC`: Keys cubic with a = -0.5, support 2 (Pillow's default for RGB `resize`).
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

/// What a resize request can get wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResampleError {
    /// The source or the target has a side of zero pixels.
    #[error("cannot resize {from_width}x{from_height} to {to_width}x{to_height}: every side must be at least 1 pixel")]
    EmptySize {
        /// Source width.
        from_width: u32,
        /// Source height.
        from_height: u32,
        /// Requested width.
        to_width: u32,
        /// Requested height.
        to_height: u32,
    },
    /// A raw RGB buffer does not hold `width * height * 3` bytes.
    #[error("an RGB buffer of {width}x{height} pixels holds {expected} bytes, got {len}")]
    BufferLength {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// `width * height * 3`.
        expected: usize,
        /// The buffer's length.
        len: usize,
    },
}

/// Pillow's fixed-point precision for 8-bit images (`32 - 8 - 2`: 8 bits of result, 2 of headroom).
const PRECISION_BITS: u32 = 22;

/// For every output sample: first input index and tap count, and the fixed-point weights
/// (`ksize` slots per sample, the unused ones zero).
struct Coefficients {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    weights: Vec<i32>,
}

impl Coefficients {
    fn of(&self, out: usize) -> (usize, &[i32]) {
        let (start, taps) = self.bounds[out];
        (start, &self.weights[out * self.ksize..out * self.ksize + taps])
    }
}

/// Pillow's `precompute_coeffs` then `normalize_coeffs_8bpc`, for the whole input `[0, in_size)`.
fn precompute(in_size: usize, out_size: usize, filter: Filter) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let ss = 1.0 / filterscale;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C's `(int)` cast truncates toward zero; a negative start is clamped to 0 right after.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let taps = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(taps) {
            *kx = filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss);
            ww += *kx;
        }
        for (x, fixed) in weights[xx * ksize..xx * ksize + taps].iter_mut().enumerate() {
            let w = if ww != 0.0 { k[x] / ww } else { k[x] };
            let scaled = w * f64::from(1u32 << PRECISION_BITS);
            *fixed = if w < 0.0 { (-0.5 + scaled) as i32 } else { (0.5 + scaled) as i32 };
        }
        bounds.push((xmin, taps));
    }
    Coefficients { bounds, ksize, weights }
}

/// Pillow's `clip8`: drop the fixed-point fraction (floor) and saturate to `0..=255`.
#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Half of one output level in fixed point: every sum starts there, so the floor in [`clip8`] rounds.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// Resizes an RGB image exactly as Pillow's `Image.resize((width, height), filter)` does (no `box`,
/// no `reducing_gap`). A same-size request returns a copy, as Pillow does.
pub fn resize(image: &RgbImage, width: u32, height: u32, filter: Filter) -> Result<RgbImage, ResampleError> {
    let out = resize_rgb8(image.as_raw(), image.width(), image.height(), width, height, filter)?;
    RgbImage::from_raw(width, height, out).ok_or(ResampleError::BufferLength {
        width,
        height,
        expected: width as usize * height as usize * 3,
        len: 0,
    })
}

/// [`resize`] on a row-major interleaved RGB buffer of `width` x `height` pixels; returns the
/// `out_width` x `out_height` buffer.
pub fn resize_rgb8(
    pixels: &[u8],
    width: u32,
    height: u32,
    out_width: u32,
    out_height: u32,
    filter: Filter,
) -> Result<Vec<u8>, ResampleError> {
    if width == 0 || height == 0 || out_width == 0 || out_height == 0 {
        return Err(ResampleError::EmptySize {
            from_width: width,
            from_height: height,
            to_width: out_width,
            to_height: out_height,
        });
    }
    let (in_w, in_h) = (width as usize, height as usize);
    let (out_w, out_h) = (out_width as usize, out_height as usize);
    let expected = in_w * in_h * 3;
    if pixels.len() != expected {
        return Err(ResampleError::BufferLength { width, height, expected, len: pixels.len() });
    }
    if (in_w, in_h) == (out_w, out_h) {
        return Ok(pixels.to_vec());
    }
    let vertical = precompute(in_h, out_h, filter);

    // Horizontal pass over the rows the vertical pass reads (Pillow's ybox_first..ybox_last).
    let (temp, row_offset) = if in_w != out_w {
        let horizontal = precompute(in_w, out_w, filter);
        let first = vertical.bounds[0].0;
        let (last_start, last_taps) = vertical.bounds[out_h - 1];
        let rows = last_start + last_taps - first;
        let mut temp = vec![0u8; rows * out_w * 3];
        for (ty, out_row) in temp.chunks_exact_mut(out_w * 3).enumerate() {
            let in_row = &pixels[(ty + first) * in_w * 3..(ty + first + 1) * in_w * 3];
            for (xx, out_px) in out_row.chunks_exact_mut(3).enumerate() {
                let (start, k) = horizontal.of(xx);
                // 32-bit sums as in Pillow; they fit: the weights' absolute sum is below 1.3.
                let mut acc = [HALF; 3];
                for (p, &w) in in_row[start * 3..(start + k.len()) * 3].chunks_exact(3).zip(k) {
                    acc[0] += i32::from(p[0]) * w;
                    acc[1] += i32::from(p[1]) * w;
                    acc[2] += i32::from(p[2]) * w;
                }
                for (o, &a) in out_px.iter_mut().zip(&acc) {
                    *o = clip8(a);
                }
            }
        }
        (temp, first)
    } else {
        (pixels.to_vec(), 0)
    };
    if in_h == out_h {
        return Ok(temp);
    }

    // Vertical pass, one output row at a time, accumulating whole source rows (vectorises).
    let row_len = out_w * 3;
    let mut out = vec![0u8; out_h * row_len];
    let mut acc = vec![0i32; row_len];
    for (yy, out_row) in out.chunks_exact_mut(row_len).enumerate() {
        let (start, k) = vertical.of(yy);
        acc.fill(HALF);
        for (y, &w) in k.iter().enumerate() {
            let src = (start + y - row_offset) * row_len;
            for (a, &v) in acc.iter_mut().zip(&temp[src..src + row_len]) {
                *a += i32::from(v) * w;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coefficients_sum_to_one_in_fixed_point() {
        // Each weight is rounded once, so a sum is off 1.0 by at most half a unit per tap.
        for (i, o) in [(425, 64), (425, 512), (64, 512), (512, 425), (512, 224), (425, 224), (7, 3), (10, 37)] {
            for filter in [Filter::Bilinear, Filter::Bicubic] {
                let c = precompute(i, o, filter);
                for xx in 0..o {
                    let (_, k) = c.of(xx);
                    let sum: i64 = k.iter().map(|&w| i64::from(w)).sum();
                    assert!((sum - (1 << PRECISION_BITS)).abs() <= k.len() as i64, "{i}->{o} {filter:?} {xx}: {sum}");
                }
            }
        }
    }

    #[test]
    fn bilinear_upscale_by_two_has_the_closed_form_taps() {
        // 2 -> 4: centres at 0.25, 0.75, 1.25, 1.75 in input units; the triangle gives 3/4 and 1/4
        // between neighbours, and the edge samples are renormalised to the one tap inside.
        let c = precompute(2, 4, Filter::Bilinear);
        let one = 1i32 << PRECISION_BITS;
        assert_eq!(c.of(0), (0, &[one][..]));
        assert_eq!(c.of(1), (0, &[3 * one / 4, one / 4][..]));
        assert_eq!(c.of(2), (0, &[one / 4, 3 * one / 4][..]));
        assert_eq!(c.of(3), (1, &[one][..]));
        let img = RgbImage::from_raw(2, 1, vec![0, 100, 255, 200, 0, 1]).unwrap();
        let out = resize(&img, 4, 1, Filter::Bilinear).unwrap();
        // 0.75 * 0 + 0.25 * 200 = 50; 0.75 * 100 + 0.25 * 0 = 75; 0.75 * 255 + 0.25 * 1 = 191.5 -> 192
        assert_eq!(out.as_raw()[3..6], [50, 75, 192]);
        assert_eq!(out.as_raw()[0..3], [0, 100, 255]);
        assert_eq!(out.as_raw()[9..12], [200, 0, 1]);
    }

    #[test]
    fn constant_images_stay_constant() {
        let img = RgbImage::from_pixel(53, 29, image::Rgb([0, 200, 255]));
        for filter in [Filter::Bilinear, Filter::Bicubic] {
            for (w, h) in [(64, 64), (12, 40), (7, 29), (53, 3)] {
                let out = resize(&img, w, h, filter).unwrap();
                assert_eq!(out.dimensions(), (w, h));
                assert!(out.pixels().all(|p| p.0 == [0, 200, 255]), "{filter:?} {w}x{h}");
            }
        }
    }

    #[test]
    fn bad_requests_are_errors_naming_the_sizes() {
        let img = RgbImage::new(4, 3);
        let err = resize(&img, 0, 5, Filter::Bicubic).unwrap_err();
        assert_eq!(err, ResampleError::EmptySize { from_width: 4, from_height: 3, to_width: 0, to_height: 5 });
        assert!(err.to_string().contains("4x3 to 0x5"), "{err}");
        assert!(resize(&RgbImage::new(0, 3), 2, 2, Filter::Bilinear).is_err());
        let err = resize_rgb8(&[0; 35], 4, 3, 2, 2, Filter::Bilinear).unwrap_err();
        assert_eq!(err, ResampleError::BufferLength { width: 4, height: 3, expected: 36, len: 35 });
        assert_eq!(resize(&img, 4, 3, Filter::Bilinear).unwrap(), img);
    }
}

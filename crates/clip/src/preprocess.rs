//! CLIP's image preprocessing: shortest side to 224 with Pillow's bicubic filter, centre crop to
//! 224x224, scale by 1/255, normalise with CLIP's mean and std.
//!
//! The resize reimplements Pillow's `Image.resize(..., BICUBIC)` (`libImaging/Resample.c`)
//! instead of using the `image` crate: Pillow runs a separable filter (cubic a = -0.5, support
//! widened by the scale factor when shrinking, i.e. antialiased) in 22-bit fixed point, horizontal
//! pass first, and rounds and clamps to u8 after each pass. The `image` crate's `CatmullRom`
//! filter is the same kernel but evaluated in f32 with its own pass structure and rounding, so
//! bit-equality with Pillow is not guaranteed; reproducing Pillow's arithmetic gives identical
//! pixels, hence identical features (the crate's tests check this against Pillow's output).

use image::RgbImage;
use tch::{Device, Kind, Tensor};

use crate::ClipError;

/// CLIP's per-channel mean (OpenAI / `preprocessor_config.json`).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's per-channel standard deviation.
#[allow(clippy::excessive_precision)] // the published decimals, kept verbatim
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`: for each output index, the first input
/// index and the fixed-point weights of the inputs it reads.
fn coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // Pillow truncates toward zero after adding 0.5 (C int cast).
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let weights: Vec<f64> = (xmin..xmax.max(xmin)).map(|x| bicubic((x as f64 - center + 0.5) * ss)).collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|&w| {
                    let w = if total != 0.0 { w / total } else { w };
                    let v = w * f64::from(1u32 << PRECISION_BITS);
                    if v < 0.0 { (v - 0.5) as i32 } else { (v + 0.5) as i32 }
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes an RGB image to `width` x `height` exactly as Pillow's `Image.resize(size, BICUBIC)`.
pub fn resize_bicubic_pillow(img: &RgbImage, width: u32, height: u32) -> Result<RgbImage, ClipError> {
    let (w0, h0) = (img.width() as usize, img.height() as usize);
    let (w1, h1) = (width as usize, height as usize);
    if w0 == 0 || h0 == 0 || w1 == 0 || h1 == 0 {
        return Err(ClipError::invalid(
            "image size",
            format!("cannot resize {w0}x{h0} to {w1}x{h1}: sides must be positive"),
        ));
    }
    let src = img.as_raw();
    let half = 1i64 << (PRECISION_BITS - 1);
    // Horizontal pass (skipped when the width does not change, as in Pillow).
    let horizontal: Vec<u8> = if w1 != w0 {
        let coeffs = coefficients(w0, w1);
        let mut out = vec![0u8; w1 * h0 * 3];
        for y in 0..h0 {
            let row = &src[y * w0 * 3..(y + 1) * w0 * 3];
            for (x, (start, k)) in coeffs.iter().enumerate() {
                for c in 0..3 {
                    let mut acc = half;
                    for (i, &kv) in k.iter().enumerate() {
                        acc += i64::from(row[(start + i) * 3 + c]) * i64::from(kv);
                    }
                    out[(y * w1 + x) * 3 + c] = clip8(acc);
                }
            }
        }
        out
    } else {
        src.to_vec()
    };
    // Vertical pass.
    let out = if h1 != h0 {
        let coeffs = coefficients(h0, h1);
        let mut out = vec![0u8; w1 * h1 * 3];
        for (y, (start, k)) in coeffs.iter().enumerate() {
            for x in 0..w1 * 3 {
                let mut acc = half;
                for (i, &kv) in k.iter().enumerate() {
                    acc += i64::from(horizontal[(start + i) * w1 * 3 + x]) * i64::from(kv);
                }
                out[y * w1 * 3 + x] = clip8(acc);
            }
        }
        out
    } else {
        horizontal
    };
    RgbImage::from_raw(width, height, out).ok_or_else(|| ClipError::invalid("resized image", "buffer size mismatch"))
}

/// Converts row-major HWC RGB floats in [0, 1] to a u8 image the way Brain-Diffuser's CLIP input
/// path does: Versatile Diffusion's `clip_encode_vision` hands float arrays to transformers 4.19's
/// feature extractor, which multiplies by 255 and casts to uint8 (truncation, so 0.5 becomes 127,
/// the grey of the unconditional image embedding). Values outside [0, 1] saturate.
pub fn rgb_from_unit_floats_truncating(data: &[f32], width: u32, height: u32) -> Result<RgbImage, ClipError> {
    let expected = width as usize * height as usize * 3;
    if data.len() != expected {
        return Err(ClipError::invalid(
            "float image",
            format!("{} values, expected {width}x{height}x3 = {expected}", data.len()),
        ));
    }
    // `as u8` truncates toward zero and saturates (NaN becomes 0), like numpy's astype here.
    let bytes = data.iter().map(|&v| (v * 255.0) as u8).collect();
    RgbImage::from_raw(width, height, bytes).ok_or_else(|| ClipError::invalid("float image", "buffer size mismatch"))
}

/// CLIP's image preprocessing, with its parameters (defaults: openai/clip-vit-large-patch14's
/// `preprocessor_config.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClipImageProcessor {
    /// The shortest side after resizing (224).
    pub shortest_edge: u32,
    /// The side of the centre crop (224).
    pub crop_size: u32,
    /// Per-channel mean subtracted after scaling to [0, 1].
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by.
    pub std: [f32; 3],
}

impl Default for ClipImageProcessor {
    fn default() -> Self {
        Self { shortest_edge: 224, crop_size: 224, mean: CLIP_MEAN, std: CLIP_STD }
    }
}

impl ClipImageProcessor {
    /// A processor for a vision tower of side `image_size` (resize and crop to that side).
    pub fn for_image_size(image_size: u32) -> Self {
        Self { shortest_edge: image_size, crop_size: image_size, ..Self::default() }
    }

    /// The size after the shortest-side resize, as transformers computes it: the short side
    /// becomes `shortest_edge`, the long side `int(shortest_edge * long / short)`.
    pub fn resized_size(&self, width: u32, height: u32) -> (u32, u32) {
        let s = self.shortest_edge;
        let scaled = |long: u32, short: u32| (f64::from(s) * f64::from(long) / f64::from(short)) as u32;
        if width <= height { (s, scaled(height, width)) } else { (scaled(width, height), s) }
    }

    /// Shortest side to `shortest_edge` with Pillow's bicubic filter (no-op when already there).
    pub fn resize(&self, img: &RgbImage) -> Result<RgbImage, ClipError> {
        let (w, h) = self.resized_size(img.width(), img.height());
        if (w, h) == img.dimensions() {
            return Ok(img.clone());
        }
        resize_bicubic_pillow(img, w, h)
    }

    /// The centre `crop_size` square, offsets `(side - crop) / 2` rounded down as in transformers.
    pub fn center_crop(&self, img: &RgbImage) -> Result<RgbImage, ClipError> {
        let (w, h) = img.dimensions();
        let c = self.crop_size;
        if w < c || h < c {
            return Err(ClipError::invalid("image size", format!("{w}x{h} is smaller than the {c}x{c} crop")));
        }
        Ok(image::imageops::crop_imm(img, (w - c) / 2, (h - c) / 2, c, c).to_image())
    }

    /// Normalised planar pixels `[3, crop, crop]` (row-major, f32) of one image.
    pub fn pixel_values(&self, img: &RgbImage) -> Result<Vec<f32>, ClipError> {
        let crop = self.center_crop(&self.resize(img)?)?;
        let n = (self.crop_size * self.crop_size) as usize;
        let mut out = vec![0f32; 3 * n];
        for (i, px) in crop.pixels().enumerate() {
            for c in 0..3 {
                // as transformers: rescale in f64, cast to f32, then normalise in f32
                let scaled = (f64::from(px[c]) * (1.0 / 255.0)) as f32;
                out[c * n + i] = (scaled - self.mean[c]) / self.std[c];
            }
        }
        Ok(out)
    }

    /// A batch `[n, 3, crop, crop]` f32 tensor on `device`, ready for the vision tower.
    pub fn batch(&self, images: &[RgbImage], device: Device) -> Result<Tensor, ClipError> {
        let mut all = Vec::with_capacity(images.len() * 3 * (self.crop_size * self.crop_size) as usize);
        for img in images {
            all.extend(self.pixel_values(img)?);
        }
        let c = i64::from(self.crop_size);
        Ok(Tensor::from_slice(&all)
            .f_view([images.len() as i64, 3, c, c])?
            .f_to_kind(Kind::Float)?
            .f_to_device(device)?)
    }
}

//! CLIP's image preprocessing: shortest side to 224 with Pillow's bicubic filter, centre crop to
//! 224x224, scale by 1/255, normalise with CLIP's mean and std.
//!
//! The resize is Pillow's `Image.resize(..., BICUBIC)` reproduced bit for bit by the `pil-resample`
//! crate, not the `image` crate's `CatmullRom` (the same kernel, but in f32 with its own window and
//! rounding, so some pixels differ by one level): identical pixels give identical features (the
//! crate's tests check the resize against Pillow's output).

use image::RgbImage;
use tch::{Device, Kind, Tensor};

use crate::ClipError;

/// CLIP's per-channel mean (OpenAI / `preprocessor_config.json`).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's per-channel standard deviation.
#[allow(clippy::excessive_precision)] // the published decimals, kept verbatim
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

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
        pil_resample::resize(img, w, h, pil_resample::Filter::Bicubic)
            .map_err(|e| ClipError::invalid("image size", e.to_string()))
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

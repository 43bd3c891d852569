//! CLIP ViT-L/14 as the two stage-2 feature encoders: images -> 257x768, captions -> 77x768, both
//! in Versatile Diffusion's normalisation (the `clip` crate does the model work).

use clip::{ClipTextModel, ClipTokenizer, ClipVisionModel};
use image::RgbImage;
use ndarray::Array2;

use crate::{Encoder, StageError};

/// The reference's round trip of a pixel through torchvision and the CLIP processor of
/// transformers 4.19: `u8 / 255` -> `* 2 - 1` -> `(x + 1) / 2` -> `* 255` -> truncation to `u8`,
/// all in f32. Float rounding makes some values come back one lower; we reproduce that.
fn reference_round_trip(value: u8) -> u8 {
    let unit = f32::from(value) / 255.0;
    let signed = unit * 2.0 - 1.0;
    let back = (signed + 1.0) / 2.0;
    (back * 255.0) as u8
}

/// CLIP-Vision features as the reference extracts them: the stimulus is resized to
/// `resize_to` x `resize_to` (the reference's 512) with Pillow's BILINEAR, byte for byte (the
/// `pil-resample` crate; `clipvision_extract_features.py` calls torchvision's `resize` on a PIL
/// image, which is Pillow's), passed through the reference's float round trip, then
/// CLIP-preprocessed and encoded into VD-normalised tokens.
pub struct ClipVisionEncoder {
    model: ClipVisionModel,
    resize_to: u32,
    batch_size: usize,
    feature_shape: [usize; 2],
    name: String,
    round_trip: [u8; 256],
}

impl ClipVisionEncoder {
    /// Wraps a loaded vision tower. `name` should identify the weights (e.g. the checkpoint's
    /// folder name); the resize is appended to it (`pil-bilinear512`: features cached under the
    /// former `resize512`, made with the `image` crate's Triangle filter, are not reused).
    pub fn new(
        model: ClipVisionModel,
        weights_name: &str,
        resize_to: u32,
        batch_size: usize,
    ) -> Result<Self, StageError> {
        let name = format!("clip-vision-vd:{weights_name}:pil-bilinear{resize_to}");
        let config = model.config();
        let tokens = (config.image_size / config.patch_size).pow(2) as usize + 1;
        let width = config.projection().map_err(|e| StageError::new(&name, e))? as usize;
        let round_trip = std::array::from_fn(|v| reference_round_trip(v as u8));
        Ok(Self { model, resize_to, batch_size: batch_size.max(1), feature_shape: [tokens, width], name, round_trip })
    }

    fn prepare(&self, image: &RgbImage) -> Result<RgbImage, StageError> {
        let mut resized = pil_resample::resize(image, self.resize_to, self.resize_to, pil_resample::Filter::Bilinear)
            .map_err(|e| StageError::new(&self.name, e))?;
        for value in resized.iter_mut() {
            *value = self.round_trip[usize::from(*value)];
        }
        Ok(resized)
    }
}

impl Encoder for ClipVisionEncoder {
    type Input = RgbImage;

    fn name(&self) -> &str {
        &self.name
    }

    fn feature_shape(&self) -> &[usize] {
        &self.feature_shape
    }

    fn encode(&self, batch: &[RgbImage]) -> Result<Array2<f32>, StageError> {
        let prepared = batch.iter().map(|img| self.prepare(img)).collect::<Result<Vec<_>, _>>()?;
        let embeddings = clip::encode_images_vd(&self.model, &prepared, self.batch_size)
            .map_err(|e| StageError::new(&self.name, e))?;
        rows(embeddings, batch.len(), &self.name)
    }
}

/// CLIP-Text features as the reference extracts them: every non-empty caption of an image is
/// encoded into VD-normalised tokens and the image's captions are averaged. An item without any
/// non-empty caption encodes the empty string, which is also how the unconditional (negative)
/// text embedding of classifier-free guidance is made.
pub struct ClipTextEncoder {
    model: ClipTextModel,
    tokenizer: ClipTokenizer,
    feature_shape: [usize; 2],
    name: String,
}

impl ClipTextEncoder {
    /// Wraps a loaded text tower and its tokenizer.
    pub fn new(model: ClipTextModel, tokenizer: ClipTokenizer, weights_name: &str) -> Result<Self, StageError> {
        let name = format!("clip-text-vd:{weights_name}");
        let width = model.config().projection().map_err(|e| StageError::new(&name, e))? as usize;
        let feature_shape = [tokenizer.context_length(), width];
        Ok(Self { model, tokenizer, feature_shape, name })
    }
}

impl Encoder for ClipTextEncoder {
    /// The captions of one image (empty ones are skipped, as the reference does).
    type Input = Vec<String>;

    fn name(&self) -> &str {
        &self.name
    }

    fn feature_shape(&self) -> &[usize] {
        &self.feature_shape
    }

    fn encode(&self, batch: &[Vec<String>]) -> Result<Array2<f32>, StageError> {
        let captions: Vec<Vec<&str>> = batch
            .iter()
            .map(|caps| {
                let kept: Vec<&str> = caps.iter().map(String::as_str).filter(|c| !c.trim().is_empty()).collect();
                if kept.is_empty() { vec![""] } else { kept }
            })
            .collect();
        let embeddings = clip::encode_captions_vd(&self.model, &self.tokenizer, &captions)
            .map_err(|e| StageError::new(&self.name, e))?;
        rows(embeddings, batch.len(), &self.name)
    }
}

/// Reshapes `[n, tokens, width]` embeddings into `n` rows.
fn rows(embeddings: clip::Embeddings, n: usize, stage: &str) -> Result<Array2<f32>, StageError> {
    let per_item = embeddings.shape.iter().skip(1).product::<usize>();
    let (shape, values) = (embeddings.shape.clone(), embeddings.data.len());
    Array2::from_shape_vec((n, per_item), embeddings.data).map_err(|e| {
        StageError::new(
            stage,
            format!(
                "the embeddings of {n} inputs have shape {shape:?} ({values} values), expected [{n}, {per_item}] \
                 as rows: {e}"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_round_trip_matches_torch_and_numpy() {
        // torch: from_numpy(u8).float().div(255) * 2 - 1; numpy: ((x + 1) / 2 * 255).astype(uint8),
        // as in the reference, changes exactly the values 1..=63, each by one level (computed with
        // torch 2.11 and numpy on all 256 values).
        for v in 0..=255u8 {
            let expected = if (1..=63).contains(&v) { v - 1 } else { v };
            assert_eq!(reference_round_trip(v), expected, "value {v}");
        }
    }
}

//! Versatile Diffusion's dual-guided img2img as stage 2: initial guesses + predicted CLIP-Vision
//! and CLIP-Text embeddings -> reconstructions.

use image::RgbImage;
use ndarray::{Array2, ArrayView2};
use versatile_diffusion::{Conditioning, Img2ImgSettings, Noise, RgbImages, VersatileDiffusion};

use crate::{ConditionInputs, Generator, GuidedCondition, StageError, TargetGroup, check_seed_count};

/// The values of `m` in row-major order, whatever its memory layout.
/// The values of an array in row-major order.
fn contiguous<D: ndarray::Dimension>(m: ndarray::ArrayView<f32, D>) -> Vec<f32> {
    m.iter().copied().collect()
}

/// Dual-guided img2img with classifier-free guidance against the unconditional embeddings of
/// Versatile Diffusion (the CLIP-Vision embedding of a grey image and the CLIP-Text embedding of
/// the empty prompt, both supplied by the caller, who owns CLIP).
pub struct VersatileDiffusionRefiner {
    model: VersatileDiffusion,
    settings: Img2ImgSettings,
    negative_vision: Array2<f32>,
    negative_text: Array2<f32>,
    resolution: u32,
    name: String,
}

impl VersatileDiffusionRefiner {
    /// Wraps a loaded model. `negative_vision` is `[vision tokens, width]`, `negative_text`
    /// `[text tokens, width]`; init images are resized to `resolution` first (Pillow BICUBIC,
    /// as the reference's `regularize_image`).
    pub fn new(
        model: VersatileDiffusion,
        settings: Img2ImgSettings,
        negative_vision: ArrayView2<f32>,
        negative_text: ArrayView2<f32>,
        resolution: u32,
        weights_name: &str,
    ) -> Self {
        let name = format!(
            "versatile-diffusion:{weights_name}:steps{}:strength{}:cfg{}:text{}:eta{}:{:?}:{resolution}",
            settings.steps,
            settings.strength,
            settings.guidance_scale,
            settings.text_weight,
            settings.eta,
            settings.noise_timestep
        );
        Self {
            model,
            settings,
            negative_vision: negative_vision.to_owned(),
            negative_text: negative_text.to_owned(),
            resolution,
            name,
        }
    }

    fn error(&self, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StageError {
        StageError::new(&self.name, e)
    }

    fn tensor(&self, values: &[f32], shape: [usize; 3]) -> Result<tch::Tensor, StageError> {
        let shape = shape.map(|d| d as i64);
        versatile_diffusion::pipeline::tensor_from_f32(values, &shape)
            .map(|t| t.to_device(self.model.device()))
            .map_err(|e| self.error(e))
    }
}

impl Generator for VersatileDiffusionRefiner {
    type Condition = GuidedCondition;

    fn name(&self) -> &str {
        &self.name
    }

    /// The predicted CLIP-Vision and CLIP-Text embeddings (with the start images).
    fn consumes(&self) -> Vec<TargetGroup> {
        vec![TargetGroup::CLIP_VISION, TargetGroup::CLIP_TEXT]
    }

    fn condition(&self, inputs: &ConditionInputs<'_>) -> Result<GuidedCondition, StageError> {
        GuidedCondition::from_inputs(&self.name, inputs, &TargetGroup::CLIP_VISION, &TargetGroup::CLIP_TEXT)
    }

    /// The images go through the denoising loop together (one forward per step for the batch
    /// on CUDA, image by image on the CPU: [`versatile_diffusion::BatchForward::Auto`]), image `i`
    /// drawing every random number from `seeds[i]` alone, so it is the same image in any batch.
    fn generate(&self, condition: &GuidedCondition, seeds: &[u64]) -> Result<Vec<RgbImage>, StageError> {
        let n = condition.init_images.len();
        check_seed_count(&self.name, n, seeds)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let (vn, vt, vw) = condition.vision.dim();
        let (tn, tt, tw) = condition.text.dim();
        if vn != n || tn != n {
            return Err(self.error(format!("{n} init images but {vn} vision and {tn} text embeddings")));
        }
        if (vt, vw) != self.negative_vision.dim() || (tt, tw) != self.negative_text.dim() {
            return Err(self.error(format!(
                "embeddings [{vt}, {vw}] and [{tt}, {tw}] do not match the unconditional ones {:?} and {:?}",
                self.negative_vision.dim(),
                self.negative_text.dim()
            )));
        }
        let settings = Img2ImgSettings { vision_tokens: vt as i64, text_tokens: tt as i64, ..self.settings.clone() };
        let side = self.resolution;
        let mut pixels = Vec::with_capacity(n * (side as usize).pow(2) * 3);
        for init in &condition.init_images {
            // The reference's `regularize_image`: Pillow BICUBIC to the resolution (a no-op for
            // stage-1 images already upscaled to it).
            if init.dimensions() == (side, side) {
                pixels.extend_from_slice(init.as_raw());
            } else {
                let resized =
                    pil_resample::resize(init, side, side, pil_resample::Filter::Bicubic).map_err(|e| self.error(e))?;
                pixels.extend_from_slice(resized.as_raw());
            }
        }
        let init = RgbImages::new(n, side as usize, side as usize, pixels).map_err(|e| self.error(e))?;
        let cond = Conditioning {
            vision: self.tensor(&contiguous(condition.vision.view()), [n, vt, vw])?,
            text: self.tensor(&contiguous(condition.text.view()), [n, tt, tw])?,
            negative_vision: self.tensor(&contiguous(self.negative_vision.view()), [1, vt, vw])?,
            negative_text: self.tensor(&contiguous(self.negative_text.view()), [1, tt, tw])?,
        };
        let mut progress = |p: versatile_diffusion::StepProgress| {
            tracing::debug!(images = n, step = p.step, total = p.total, timestep = p.timestep, "denoising");
        };
        let images = self
            .model
            .img2img(&init, &cond, &settings, Noise::PerImage(seeds.to_vec()), &mut progress)
            .map_err(|e| self.error(e))?;
        let size = images.height * images.width * 3;
        images
            .data
            .chunks_exact(size)
            .map(|bytes| {
                RgbImage::from_raw(images.width as u32, images.height as u32, bytes.to_vec())
                    .ok_or_else(|| self.error("the generated bytes do not form an image"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;
    use ndarray::{Array2, Array3};
    use tch::{Device, Kind};
    use versatile_diffusion::VdWeights;

    /// The tiny diffusers checkpoint of the versatile-diffusion crate's parity fixtures.
    fn tiny_refiner(settings: Img2ImgSettings) -> VersatileDiffusionRefiner {
        let folder =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../versatile-diffusion/tests/fixtures/tiny");
        let weights = VdWeights::from_diffusers_folder(&folder).expect("tiny checkpoint");
        let model =
            VersatileDiffusion::from_weights(weights, Device::Cpu, Kind::Float, Kind::Float).expect("tiny model");
        let negative_vision = Array2::from_elem((5, 16), 0.1f32);
        let negative_text = Array2::from_elem((3, 16), -0.1f32);
        VersatileDiffusionRefiner::new(model, settings, negative_vision.view(), negative_text.view(), 64, "tiny")
    }

    fn condition() -> GuidedCondition {
        let init =
            (0..2u8).map(|k| RgbImage::from_fn(48, 48, |x, y| Rgb([x as u8 * 5, y as u8 * 5, k * 100]))).collect();
        GuidedCondition {
            init_images: init,
            vision: Array3::from_shape_fn((2, 5, 16), |(n, t, c)| ((n + t * c) % 7) as f32 / 7.0),
            text: Array3::from_shape_fn((2, 3, 16), |(n, t, c)| ((n * 3 + t + c) % 5) as f32 / 5.0),
        }
    }

    #[test]
    fn generation_is_seeded_per_image_and_has_the_resolution() {
        let refiner = tiny_refiner(Img2ImgSettings { steps: 10, ..Img2ImgSettings::default() });
        let c = condition();
        let a = refiner.generate(&c, &[3, 30]).unwrap();
        let b = refiner.generate(&c, &[3, 30]).unwrap();
        let other = refiner.generate(&c, &[3, 4]).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].dimensions(), (64, 64));
        assert_eq!(a, b, "same seeds, same images");
        assert_eq!(a[0], other[0], "an image depends on its own seed only");
        assert_ne!(a[1], other[1], "another seed, another image");
        // The same init and embeddings at another position, with its own seed, get other noise.
        let twin = GuidedCondition {
            init_images: vec![c.init_images[0].clone(), c.init_images[0].clone()],
            vision: ndarray::concatenate![
                ndarray::Axis(0),
                c.vision.slice(ndarray::s![0..1, .., ..]),
                c.vision.slice(ndarray::s![0..1, .., ..])
            ],
            text: ndarray::concatenate![
                ndarray::Axis(0),
                c.text.slice(ndarray::s![0..1, .., ..]),
                c.text.slice(ndarray::s![0..1, .., ..])
            ],
        };
        let twins = refiner.generate(&twin, &[3, 30]).unwrap();
        assert_eq!(twins[0], a[0], "image 0 depends only on its inputs and its seed");
        assert_ne!(twins[0], twins[1], "other seeds, independent noise");
        let err = refiner.generate(&c, &[3]).unwrap_err();
        assert!(err.to_string().contains("1 seeds for 2 items"), "{err}");
    }

    #[test]
    fn mismatched_embeddings_are_errors() {
        let refiner = tiny_refiner(Img2ImgSettings { steps: 4, ..Img2ImgSettings::default() });
        let mut c = condition();
        c.text = Array3::zeros((2, 4, 16));
        let err = refiner.generate(&c, &[0, 1]).unwrap_err();
        assert!(err.to_string().contains("do not match"), "{err}");
    }
}

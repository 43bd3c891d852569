//! VDVAE as stage 1: an [`Encoder`] (images -> the latents of the first decoder blocks, the
//! regression targets) and a [`Generator`] (predicted latents -> 64x64 images, upscaled for stage 2).
//! Both share one loaded model (an `Rc`: tch modules stay on the thread that made them).

use std::rc::Rc;

use image::RgbImage;
use ndarray::Array2;
use vdvae::{DecodeOptions, EncodeOptions, Latents, Vdvae};

use crate::{ConditionInputs, Encoder, Generator, LatentCondition, StageError, TargetGroup, check_seed_count};

/// Images -> flattened latents of the first `options.n_blocks` decoder blocks (91,168 values for 31).
pub struct VdvaeEncoder {
    model: Rc<Vdvae>,
    options: EncodeOptions,
    feature_shape: [usize; 1],
    name: String,
}

impl VdvaeEncoder {
    /// Wraps a loaded model; `weights_name` identifies the checkpoint in cache names.
    /// `options.seed` seeds the posterior samples (faithful targets); with `PosteriorDraw::Mean`
    /// the features are deterministic.
    pub fn new(model: Rc<Vdvae>, weights_name: &str, options: EncodeOptions) -> Result<Self, StageError> {
        let name =
            format!("vdvae:{weights_name}:blocks{}:{:?}:seed{}", options.n_blocks, options.posterior, options.seed);
        let layout = model.config().latent_layout(options.n_blocks).map_err(|e| StageError::new(&name, e))?;
        Ok(Self { model, options, feature_shape: [layout.dim()], name })
    }

    /// The options the features are made with.
    pub fn options(&self) -> &EncodeOptions {
        &self.options
    }
}

impl Encoder for VdvaeEncoder {
    type Input = RgbImage;

    fn name(&self) -> &str {
        &self.name
    }

    fn feature_shape(&self) -> &[usize] {
        &self.feature_shape
    }

    fn encode(&self, batch: &[RgbImage]) -> Result<Array2<f32>, StageError> {
        self.encode_at(0, batch)
    }

    /// Image `first + j` draws its posterior samples from stream `first + j` of the seed.
    fn encode_at(&self, first: usize, batch: &[RgbImage]) -> Result<Array2<f32>, StageError> {
        let latents =
            self.model.encode_from(batch, first, &self.options).map_err(|e| StageError::new(&self.name, e))?;
        let (n, dim, values) = (batch.len(), latents.dim, latents.values.len());
        Array2::from_shape_vec((n, dim), latents.values).map_err(|e| {
            StageError::new(&self.name, format!("the latents of {n} images ({values} values) as [{n}, {dim}]: {e}"))
        })
    }
}

/// Predicted latents -> images: the given blocks take the latents, the rest come from the prior,
/// then the output distribution is sampled (or its mode taken); images are upscaled (bicubic) to
/// `upscale_to` when set, as the reference does before stage 2.
pub struct VdvaeDecoder {
    model: Rc<Vdvae>,
    n_blocks: usize,
    options: DecodeOptions,
    upscale_to: Option<u32>,
    name: String,
}

impl VdvaeDecoder {
    /// Wraps a loaded model; `options.seed` is unused: each `generate` call gives one seed per row.
    pub fn new(
        model: Rc<Vdvae>,
        weights_name: &str,
        n_blocks: usize,
        options: DecodeOptions,
        upscale_to: Option<u32>,
    ) -> Self {
        let name = format!(
            "vdvae-decode:{weights_name}:blocks{n_blocks}:t{}:{:?}:up{}",
            options.temperature,
            options.output,
            upscale_to.unwrap_or(0)
        );
        Self { model, n_blocks, options, upscale_to, name }
    }

    /// The options the images are made with.
    pub fn options(&self) -> &DecodeOptions {
        &self.options
    }
}

impl Generator for VdvaeDecoder {
    type Condition = LatentCondition;

    fn name(&self) -> &str {
        &self.name
    }

    /// The predicted VDVAE latents.
    fn consumes(&self) -> Vec<TargetGroup> {
        vec![TargetGroup::VDVAE]
    }

    fn condition(&self, inputs: &ConditionInputs<'_>) -> Result<LatentCondition, StageError> {
        LatentCondition::from_inputs(&self.name, inputs, &TargetGroup::VDVAE)
    }

    /// Row `k` draws its prior and pixel samples from `seeds[k]` alone, in batches of
    /// `options.batch_size` rows on CUDA and one by one on the CPU.
    fn generate(&self, condition: &LatentCondition, seeds: &[u64]) -> Result<Vec<RgbImage>, StageError> {
        check_seed_count(&self.name, condition.latents.nrows(), seeds)?;
        let rows = condition.latents.as_standard_layout();
        let latents = Latents { n_blocks: self.n_blocks, dim: rows.ncols(), values: rows.iter().copied().collect() };
        // On the CPU row by row: oneDNN's convolutions are not batch-invariant, and one row at a
        // time every image is the same whatever batch of rows it came in.
        let options = match self.model.device() {
            tch::Device::Cpu => DecodeOptions { batch_size: 1, ..self.options },
            _ => self.options,
        };
        let images =
            self.model.decode_per_image_seeds(&latents, &options, seeds).map_err(|e| StageError::new(&self.name, e))?;
        match self.upscale_to {
            Some(size) => {
                images.iter().map(|img| vdvae::upscale(img, size).map_err(|e| StageError::new(&self.name, e))).collect()
            }
            None => Ok(images),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;
    use vdvae::{PosteriorDraw, WeightInit};

    /// The structure of the shared VDVAE parity fixture (every kind of block), random weights.
    fn tiny_model() -> Rc<Vdvae> {
        let config = crate::demo::tiny_models::tiny_vdvae_config();
        Rc::new(Vdvae::new(&config, tch::Device::Cpu, WeightInit::Reference { seed: 7 }).expect("tiny model builds"))
    }

    fn images() -> Vec<RgbImage> {
        (0..3u8).map(|k| RgbImage::from_fn(20, 24, |x, y| Rgb([x as u8 * 10, y as u8 * 9, k * 80]))).collect()
    }

    #[test]
    fn encoder_rows_are_the_models_latents_and_decoding_is_seeded() {
        let model = tiny_model();
        let options = EncodeOptions { n_blocks: 4, posterior: PosteriorDraw::Mean, seed: 0, batch_size: 2 };
        let encoder = VdvaeEncoder::new(model.clone(), "tiny", options).unwrap();
        let rows = encoder.encode(&images()).unwrap();
        let direct = model.encode(&images(), &options).unwrap();
        assert_eq!(rows.shape(), &[3, direct.dim]);
        assert_eq!(encoder.feature_shape(), &[direct.dim]);
        assert_eq!(rows.as_slice().unwrap(), direct.values.as_slice());

        let decoder = VdvaeDecoder::new(model, "tiny", 4, DecodeOptions::default(), Some(32));
        let condition = LatentCondition { latents: rows.clone() };
        let a = decoder.generate(&condition, &[5, 6, 7]).unwrap();
        let b = decoder.generate(&condition, &[5, 6, 7]).unwrap();
        let c = decoder.generate(&condition, &[5, 9, 7]).unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(a[0].dimensions(), (32, 32));
        assert_eq!(a, b, "the same seeds must give the same images");
        assert_ne!(a[1], c[1], "another seed must give other samples");
        assert_eq!((&a[0], &a[2]), (&c[0], &c[2]), "an image depends on its own seed only");
        // Each row decoded alone with its seed gives the image it got in the batch.
        for (k, image) in a.iter().enumerate() {
            let alone = LatentCondition { latents: rows.slice(ndarray::s![k..k + 1, ..]).to_owned() };
            assert_eq!(&decoder.generate(&alone, &[5 + k as u64]).unwrap()[0], image, "row {k}");
        }
    }

    #[test]
    fn wrong_latent_width_or_seed_count_is_a_stage_error() {
        let decoder = VdvaeDecoder::new(tiny_model(), "tiny", 4, DecodeOptions::default(), None);
        let err = decoder.generate(&LatentCondition { latents: Array2::zeros((1, 3)) }, &[0]).unwrap_err();
        assert!(err.to_string().contains("vdvae-decode"), "{err}");
        let err = decoder.generate(&LatentCondition { latents: Array2::zeros((2, 3)) }, &[0]).unwrap_err();
        assert!(err.to_string().contains("1 seeds for 2 items"), "{err}");
    }
}

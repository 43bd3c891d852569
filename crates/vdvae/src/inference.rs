//! Plain-data entry points: RGB images in, flat latents out, and back to images.
//!
//! These are what a pipeline wraps: images are `image::RgbImage` of any size, latents are rows of
//! f32 in the reference layout, every random draw comes from a seed (stream = index of the image
//! in the call), and work is split into batches of `batch_size` images without changing results.

use image::RgbImage;
use tch::{Kind, Tensor};
use tracing::debug;

use crate::error::VdvaeError;
use crate::latents::Latents;
use crate::model::{OutputDraw, PosteriorDraw, Vdvae};
use crate::noise::SeededNoise;
use pil_resample::{Filter, resize};

/// Options of [`Vdvae::encode`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncodeOptions {
    /// Number of decoder blocks whose latents are kept (31 in brain-diffuser).
    pub n_blocks: usize,
    /// Posterior sample (faithful) or posterior mean.
    pub posterior: PosteriorDraw,
    /// Seed of the posterior noise.
    pub seed: u64,
    /// Images per forward pass.
    pub batch_size: usize,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions { n_blocks: 31, posterior: PosteriorDraw::Sample, seed: 0, batch_size: 30 }
    }
}

/// Options of [`Vdvae::decode`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeOptions {
    /// Temperature of the blocks drawn from the prior (brain-diffuser: 1; 0 = prior mean).
    pub temperature: f64,
    /// Sampled output (faithful) or the deterministic mode.
    pub output: OutputDraw,
    /// Seed of the prior and output noise.
    pub seed: u64,
    /// Images per forward pass.
    pub batch_size: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions { temperature: 1.0, output: OutputDraw::Sample, seed: 0, batch_size: 30 }
    }
}

fn check_batch_size(batch_size: usize) -> Result<(), VdvaeError> {
    if batch_size == 0 {
        return Err(VdvaeError::Invalid { what: "batch_size".into(), message: "must be at least 1".into() });
    }
    Ok(())
}

/// Upscales a reconstruction as brain-diffuser does before stage 2 (Pillow BICUBIC, e.g. to 512;
/// the `pil-resample` crate). Errors on a zero size.
pub fn upscale(image: &RgbImage, size: u32) -> Result<RgbImage, VdvaeError> {
    resize(image, size, size, Filter::Bicubic).map_err(resize_error)
}

fn resize_error(error: pil_resample::ResampleError) -> VdvaeError {
    VdvaeError::Invalid { what: "image size".into(), message: error.to_string() }
}

impl Vdvae {
    /// Resizes RGB images of any size to the model's resolution (Pillow's antialiased bilinear,
    /// as the reference, through the `pil-resample` crate) and normalises them: an f32 NHWC tensor
    /// `[B, S, S, 3]` on the CPU. Errors on an image with a zero side.
    pub fn preprocess(&self, images: &[RgbImage]) -> Result<Tensor, VdvaeError> {
        let s = self.config().image_size as u32;
        let norm = self.config().normalisation;
        let mut bytes = Vec::with_capacity(images.len() * (s * s * 3) as usize);
        for img in images {
            bytes.extend_from_slice(resize(img, s, s, Filter::Bilinear).map_err(resize_error)?.as_raw());
        }
        let x = Tensor::from_slice(&bytes).reshape([images.len() as i64, s as i64, s as i64, 3]).to_kind(Kind::Float);
        // The reference adds and multiplies f32 tensors holding shift and scale.
        Ok((x + (norm.shift as f32) as f64) * (norm.scale as f32) as f64)
    }

    /// Encodes images into the latents of the first `options.n_blocks` decoder blocks: one row
    /// of `layout.dim()` values per image (91,168 for ImageNet-64 and 31 blocks).
    pub fn encode(&self, images: &[RgbImage], options: &EncodeOptions) -> Result<Latents, VdvaeError> {
        self.encode_from(images, 0, options)
    }

    /// [`encode`](Self::encode) for images `first..first + images.len()` of a longer sequence:
    /// posterior draws of image `first + j` come from stream `first + j` of `options.seed`, so
    /// encoding a sequence in pieces (shards, resumed runs) gives the same latents as in one call.
    pub fn encode_from(
        &self,
        images: &[RgbImage],
        first: usize,
        options: &EncodeOptions,
    ) -> Result<Latents, VdvaeError> {
        check_batch_size(options.batch_size)?;
        let layout = self.config().latent_layout(options.n_blocks)?;
        let mut values = Vec::with_capacity(images.len() * layout.dim());
        for (b, chunk) in images.chunks(options.batch_size).enumerate() {
            let first = first + b * options.batch_size;
            debug!(first, count = chunk.len(), "VDVAE encode batch");
            let x = self.preprocess(chunk)?;
            let activations = self.encoder_activations(&x)?;
            let mut noise = SeededNoise::for_images(options.seed, first, chunk.len());
            let pass = self.posterior_pass(&activations, options.n_blocks, options.posterior, &mut noise, false)?;
            values.extend(layout.flatten(&pass.z)?);
        }
        Ok(Latents { n_blocks: options.n_blocks, dim: layout.dim(), values })
    }

    /// Decodes latent rows into `S x S` uint8 images: the given blocks take the latents, the
    /// remaining blocks draw from the prior at `options.temperature`, then the output is
    /// sampled (or its mode taken).
    pub fn decode(&self, latents: &Latents, options: &DecodeOptions) -> Result<Vec<RgbImage>, VdvaeError> {
        self.check_latent_dim(latents)?;
        self.decode_rows(&latents.values, latents.n_blocks, options)
    }

    /// [`decode`](Self::decode) with one seed per image (see
    /// [`decode_rows_per_image_seeds`](Self::decode_rows_per_image_seeds)).
    pub fn decode_per_image_seeds(
        &self,
        latents: &Latents,
        options: &DecodeOptions,
        seeds: &[u64],
    ) -> Result<Vec<RgbImage>, VdvaeError> {
        self.check_latent_dim(latents)?;
        if seeds.len() != latents.n_images() {
            return Err(VdvaeError::Invalid {
                what: "seeds".into(),
                message: format!("{} seeds for {} images: one per image expected", seeds.len(), latents.n_images()),
            });
        }
        self.decode_rows_per_image_seeds(&latents.values, latents.n_blocks, options, seeds)
    }

    fn check_latent_dim(&self, latents: &Latents) -> Result<(), VdvaeError> {
        let layout = self.config().latent_layout(latents.n_blocks)?;
        if latents.dim != layout.dim() {
            return Err(VdvaeError::Invalid {
                what: "latents".into(),
                message: format!(
                    "dimension {} given for {} blocks, which need dimension {}",
                    latents.dim,
                    latents.n_blocks,
                    layout.dim()
                ),
            });
        }
        Ok(())
    }

    /// [`decode`](Self::decode) from a flat slice of rows (each the latents of the first
    /// `n_blocks` blocks in the reference layout), e.g. regression predictions.
    pub fn decode_rows(
        &self,
        values: &[f32],
        n_blocks: usize,
        options: &DecodeOptions,
    ) -> Result<Vec<RgbImage>, VdvaeError> {
        self.decode_rows_with(values, n_blocks, options, |first, count| {
            Ok(SeededNoise::for_images(options.seed, first, count))
        })
    }

    /// [`decode_rows`](Self::decode_rows) with one seed per row: row `j` draws from
    /// [`SeededNoise::per_image`]`(&[seeds[j]])` whatever the batch (`options.seed` is unused).
    /// For callers that derive a seed per image, so that an image does not depend on its batch.
    pub fn decode_rows_per_image_seeds(
        &self,
        values: &[f32],
        n_blocks: usize,
        options: &DecodeOptions,
        seeds: &[u64],
    ) -> Result<Vec<RgbImage>, VdvaeError> {
        self.decode_rows_with(values, n_blocks, options, |first, count| {
            seeds.get(first..first + count).map(SeededNoise::per_image).ok_or_else(|| VdvaeError::Invalid {
                what: "seeds".into(),
                message: format!("{} seeds for the latent rows {first}..{}", seeds.len(), first + count),
            })
        })
    }

    fn decode_rows_with(
        &self,
        values: &[f32],
        n_blocks: usize,
        options: &DecodeOptions,
        noise_for: impl Fn(usize, usize) -> Result<SeededNoise, VdvaeError>,
    ) -> Result<Vec<RgbImage>, VdvaeError> {
        check_batch_size(options.batch_size)?;
        let layout = self.config().latent_layout(n_blocks)?;
        if values.len() % layout.dim() != 0 {
            return Err(VdvaeError::Invalid {
                what: "latents".into(),
                message: format!(
                    "{} values are not whole rows of dimension {} ({n_blocks} blocks)",
                    values.len(),
                    layout.dim()
                ),
            });
        }
        let n = values.len() / layout.dim();
        let s = self.config().image_size as u32;
        let mut images = Vec::with_capacity(n);
        let rows_per_batch = options.batch_size * layout.dim();
        for (b, rows) in values.chunks(rows_per_batch).enumerate() {
            let first = b * options.batch_size;
            let count = rows.len() / layout.dim();
            debug!(first, count, "VDVAE decode batch");
            let blocks = layout.unflatten(rows, count, self.device(), self.kind())?;
            let mut noise = noise_for(first, count)?;
            let px_z = self.generate(count, &blocks, options.temperature, &mut noise)?;
            let pixels = self.sample_output(&px_z, options.output, &mut noise)?;
            let bytes = Vec::<u8>::try_from(pixels.to_device(tch::Device::Cpu).contiguous().reshape([-1]))?;
            for img in bytes.chunks((s * s * 3) as usize) {
                images.push(RgbImage::from_raw(s, s, img.to_vec()).ok_or_else(|| VdvaeError::Invalid {
                    what: "decoded image".into(),
                    message: format!("{} bytes for {s}x{s}x3", img.len()),
                })?);
            }
        }
        Ok(images)
    }
}

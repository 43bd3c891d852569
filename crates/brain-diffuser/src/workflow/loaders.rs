//! Builds the pipeline's stages from a models folder ([`crate::models::ModelsDir`]) and the
//! configuration: what the command line and the `reconstruct_nsd` example run.

use std::rc::Rc;

use image::{Rgb, RgbImage};
use ndarray::Array2;
use tch::{Device, Kind};
use vdvae::{DecodeOptions, EncodeOptions, OutputDraw, PosteriorDraw, Vdvae};

use super::WorkflowError;
use crate::config::{Config, DiffusionConfig, LatentTarget, PixelSampling, Precision};
use crate::models::ModelsDir;
use crate::stages::clip::{ClipTextEncoder, ClipVisionEncoder};
use crate::stages::ridge::RidgeRegressor;
use crate::stages::vdvae::{VdvaeDecoder, VdvaeEncoder};
use crate::stages::versatile_diffusion::{VersatileDiffusionRefiner, img2img_settings};
use crate::{Encoder, Pipeline, Regressor, StageError};

/// Loads models on demand for the steps that need them.
pub struct StageLoader<'a> {
    pub models: &'a ModelsDir,
    pub config: &'a Config,
    pub device: Device,
}

fn as_tokens(row: Array2<f32>, shape: &[usize]) -> Result<Array2<f32>, WorkflowError> {
    let &[tokens, width] = shape else {
        return Err(WorkflowError::Invalid(format!("a token encoder must have a 2-D feature shape, got {shape:?}")));
    };
    row.into_shape_with_order((tokens, width)).map_err(|e| WorkflowError::Invalid(format!("embedding as tokens: {e}")))
}

impl StageLoader<'_> {
    /// The VDVAE model (shared by its encoder and decoder).
    pub fn vdvae(&self) -> Result<Rc<Vdvae>, WorkflowError> {
        Ok(Rc::new(self.models.load_vdvae(self.device)?))
    }

    /// The VDVAE encoder: latents of the first `vdvae.layers` blocks, posterior sample or mean.
    pub fn vdvae_encoder(&self, model: Rc<Vdvae>) -> Result<VdvaeEncoder, WorkflowError> {
        let c = &self.config;
        let options = EncodeOptions {
            n_blocks: c.vdvae.layers,
            posterior: match c.vdvae.target {
                LatentTarget::PosteriorSample => PosteriorDraw::Sample,
                LatentTarget::PosteriorMean => PosteriorDraw::Mean,
            },
            seed: c.seeds.vdvae_targets,
            batch_size: c.vdvae.batch_size,
        };
        Ok(VdvaeEncoder::new(model, "vdvae", options)?)
    }

    /// The VDVAE decoder of stage 1, upscaling to `vdvae.upscale_size`.
    pub fn vdvae_decoder(&self, model: Rc<Vdvae>) -> VdvaeDecoder {
        let c = &self.config;
        let options = DecodeOptions {
            temperature: f64::from(c.vdvae.temperature),
            output: match c.vdvae.pixel_sampling {
                PixelSampling::Sample => OutputDraw::Sample,
                PixelSampling::Mode => OutputDraw::Mode,
            },
            seed: c.seeds.vdvae_decode,
            batch_size: c.vdvae.batch_size,
        };
        VdvaeDecoder::new(model, "vdvae", c.vdvae.layers, options, Some(c.vdvae.upscale_size))
    }

    /// CLIP-Vision in Versatile Diffusion's normalisation (f32).
    pub fn clip_vision(&self) -> Result<ClipVisionEncoder, WorkflowError> {
        let model = self.models.load_clip_vision(self.device, Kind::Float)?;
        Ok(ClipVisionEncoder::new(model, "vd-clip-vit-l14", self.config.clip.vision_resize, 16)?)
    }

    /// CLIP-Text in Versatile Diffusion's normalisation (f32).
    pub fn clip_text(&self) -> Result<ClipTextEncoder, WorkflowError> {
        let (model, tokenizer) = self.models.load_clip_text(self.device, Kind::Float)?;
        Ok(ClipTextEncoder::new(model, tokenizer, "vd-clip-vit-l14")?)
    }

    /// Versatile Diffusion's img2img with `diffusion` settings; its unconditional embeddings are
    /// CLIP's of a uniform grey image and of the empty prompt, as the reference builds them.
    pub fn refiner(&self, diffusion: &DiffusionConfig) -> Result<VersatileDiffusionRefiner, WorkflowError> {
        let vision = self.clip_vision()?;
        let text = self.clip_text()?;
        let grey = RgbImage::from_pixel(224, 224, Rgb([127, 127, 127]));
        let negative_vision = as_tokens(vision.encode(&[grey])?, vision.feature_shape())?;
        let negative_text = as_tokens(text.encode(&[vec![String::new()]])?, text.feature_shape())?;
        drop((vision, text));
        let unet_kind = match (self.device, diffusion.cuda_precision) {
            (Device::Cpu, _) | (_, Precision::F32) => Kind::Float,
            (_, Precision::F16) => Kind::Half,
            (_, Precision::Bf16) => Kind::BFloat16,
        };
        let model = self.models.load_versatile_diffusion(self.device, unet_kind, unet_kind)?;
        Ok(VersatileDiffusionRefiner::new(
            model,
            img2img_settings(diffusion),
            negative_vision.view(),
            negative_text.view(),
            diffusion.resolution,
            &format!("vd-{unet_kind:?}"),
        ))
    }
}

impl StageLoader<'_> {
    /// The in-memory [`Pipeline`] of these models (for data that fits in memory): ridge
    /// regressors with the configured alphas, which the caller may replace.
    pub fn pipeline(&self) -> Result<Pipeline, WorkflowError> {
        let vdvae = self.vdvae()?;
        Ok(Pipeline {
            config: self.config.clone(),
            vdvae: Box::new(self.vdvae_encoder(vdvae.clone())?),
            clip_vision: Box::new(self.clip_vision()?),
            clip_text: Box::new(self.clip_text()?),
            regressor: Box::new(|group, config| -> Box<dyn Regressor> {
                Box::new(RidgeRegressor::fixed(group.alpha(config), config.regression.fit_intercept))
            }),
            initial_guess: Box::new(self.vdvae_decoder(vdvae)),
            refiner: Box::new(self.refiner(&self.config.diffusion)?),
        })
    }
}

impl From<crate::models::ModelError> for WorkflowError {
    fn from(e: crate::models::ModelError) -> Self {
        WorkflowError::Stage(StageError::new("models", e))
    }
}

//! Builds the default stages from a models folder ([`crate::models::ModelsDir`]), the
//! configuration and the caller's device: what a [`super::steps::Session`] runs unless it is
//! given other stages.

use std::path::Path;
use std::rc::Rc;

use image::{Rgb, RgbImage};
use ndarray::Array2;
use tch::{Device, Kind};
use vdvae::Vdvae;

use super::WorkflowError;
use super::integrity::weights_fingerprint;
use crate::config::{Config, DiffusionSection};
use crate::models::{ModelError, ModelsDir};
use crate::stages::clip::{ClipTextEncoder, ClipVisionEncoder};
use crate::stages::vdvae::{VdvaeDecoder, VdvaeEncoder};
use crate::stages::versatile_diffusion::VersatileDiffusionRefiner;
use crate::{Encoder, StageError};

/// Images per CLIP-Vision forward in `extract` (the reference runs one at a time; 16 keeps a
/// 224x224 ViT-L/14 batch within a few GB on any device).
pub const CLIP_VISION_BATCH: usize = 16;

/// Loads models on demand for the steps that need them.
pub struct StageLoader<'a> {
    pub models: &'a ModelsDir,
    pub config: &'a Config,
    pub device: Device,
}

/// The one-row embedding `row` of `what` (e.g. "the unconditional CLIP-Vision embedding") as its
/// `[tokens, width]` token matrix.
fn as_tokens(what: &str, row: Array2<f32>, shape: &[usize]) -> Result<Array2<f32>, WorkflowError> {
    let &[tokens, width] = shape else {
        return Err(WorkflowError::Invalid(format!(
            "{what}: a token encoder must have a 2-D feature shape, got {shape:?}"
        )));
    };
    let found = row.dim();
    row.into_shape_with_order((tokens, width)).map_err(|e| {
        WorkflowError::Invalid(format!(
            "{what}: {} rows of {} values cannot be read as [{tokens}, {width}] tokens ({e})",
            found.0, found.1
        ))
    })
}

/// Versatile Diffusion's unconditional embeddings, as the reference builds them: `vision`'s tokens
/// of a uniform grey 224x224 image and `text`'s tokens of the empty prompt (`[tokens, width]` each).
/// [`StageLoader::refiner`] makes them with the models folder's CLIP towers; a caller assembling a
/// refiner from its own towers (a benchmark, a downstream project) calls this.
pub fn unconditional_embeddings(
    vision: &dyn Encoder<Input = RgbImage>,
    text: &dyn Encoder<Input = Vec<String>>,
) -> Result<(Array2<f32>, Array2<f32>), WorkflowError> {
    let grey = RgbImage::from_pixel(224, 224, Rgb([127, 127, 127]));
    let negative_vision =
        as_tokens("the unconditional CLIP-Vision embedding", vision.encode(&[grey])?, vision.feature_shape())?;
    let negative_text =
        as_tokens("the unconditional CLIP-Text embedding", text.encode(&[vec![String::new()]])?, text.feature_shape())?;
    Ok((negative_vision, negative_text))
}

/// The shape of the loaded variable `name` of a tch `VarStore` (what the checkpoint held).
fn var_shape(vs: &tch::nn::VarStore, name: &str) -> Vec<i64> {
    vs.variables().get(name).map(|t| t.size()).unwrap_or_default()
}

/// A configuration value that the loaded checkpoint `file` contradicts.
fn mismatch(
    key: &'static str,
    value: impl std::fmt::Display,
    file: std::path::PathBuf,
    evidence: String,
    fix: String,
) -> WorkflowError {
    ModelError::ConfigMismatch { key, value: value.to_string(), file, evidence, fix }.into()
}

impl StageLoader<'_> {
    /// The VDVAE model (shared by its encoder and decoder). `vdvae.layers` and `vdvae.image_size`
    /// are checked against the checkpoint's decoder.
    pub fn vdvae(&self) -> Result<Rc<Vdvae>, WorkflowError> {
        let model = self.models.load_vdvae(self.device)?;
        self.check_vdvae(&model)?;
        Ok(Rc::new(model))
    }

    fn check_vdvae(&self, model: &Vdvae) -> Result<(), WorkflowError> {
        let c = &self.config.vdvae;
        let file = self.models.vdvae_checkpoint();
        let config_source = match self.models.vdvae_hps() {
            Some(hps) => format!("configuration {}", hps.display()),
            None => "ImageNet-64 configuration (no vdvae/hps.json)".to_owned(),
        };
        let blocks = model
            .config()
            .decoder_blocks()
            .map_err(|e| ModelError::Vdvae { path: file.clone(), error: Box::new(e) })?;
        if c.layers == 0 || c.layers > blocks.len() {
            let last = format!("decoder.dec_blocks.{}", blocks.len().saturating_sub(1));
            let shape = var_shape(model.var_store(), &format!("{last}.enc.c1.weight"));
            return Err(mismatch(
                "vdvae.layers",
                c.layers,
                file,
                format!(
                    "its decoder has {} blocks (the last, `{last}`, has `{last}.enc.c1.weight` of shape {shape:?}; \
                     {config_source})",
                    blocks.len()
                ),
                format!("set vdvae.layers between 1 and {}", blocks.len()),
            ));
        }
        let side = model.config().image_size;
        if i64::from(c.image_size) != side {
            let vars = model.var_store().variables();
            let bias = vars
                .iter()
                .filter(|(k, t)| k.starts_with("decoder.bias_xs.") && t.size().last() == Some(&side))
                .map(|(k, t)| format!("tensor `{k}` has shape {:?}, ", t.size()))
                .next()
                .unwrap_or_default();
            return Err(mismatch(
                "vdvae.image_size",
                c.image_size,
                file,
                format!("{bias}the model makes {side}x{side} images ({config_source})"),
                format!("set vdvae.image_size = {side}"),
            ));
        }
        Ok(())
    }

    /// The VDVAE encoder: latents of the first `vdvae.layers` blocks, posterior sample or mean.
    pub fn vdvae_encoder(&self, model: Rc<Vdvae>) -> Result<VdvaeEncoder, WorkflowError> {
        Ok(VdvaeEncoder::new(model, &self.vdvae_weights_name()?, self.config.vdvae_encode_options())?)
    }

    /// The VDVAE decoder of stage 1, upscaling to `vdvae.upscale_size`.
    pub fn vdvae_decoder(&self, model: Rc<Vdvae>) -> Result<VdvaeDecoder, WorkflowError> {
        let c = &self.config;
        let options = c.vdvae_decode_options();
        Ok(VdvaeDecoder::new(model, &self.vdvae_weights_name()?, c.vdvae.layers, options, Some(c.vdvae.upscale_size)))
    }

    /// The name of the VDVAE weights in stage names (and so in every record keyed by them):
    /// `vdvae@` and the fingerprint of the checkpoint and its configuration file.
    fn vdvae_weights_name(&self) -> Result<String, WorkflowError> {
        let checkpoint = self.models.vdvae_checkpoint();
        let hps = self.models.vdvae_hps();
        let mut paths = vec![checkpoint.as_path()];
        paths.extend(hps.as_deref());
        Ok(format!("vdvae@{}", weights_fingerprint(&paths)?))
    }

    /// The folder of a CLIP tower's weights and configuration (`image_encoder`, `text_encoder`).
    fn clip_folder(&self, tower: &str) -> std::path::PathBuf {
        let checkpoint = self.models.clip_checkpoint(tower);
        if checkpoint.is_file() { checkpoint.parent().map(Path::to_path_buf).unwrap_or(checkpoint) } else { checkpoint }
    }

    /// The name of a CLIP tower's weights: `vd-clip-vit-l14@` and the fingerprint of its folder
    /// (and of the tokenizer for the text tower).
    fn clip_weights_name(&self, tower: &str) -> Result<String, WorkflowError> {
        let folder = self.clip_folder(tower);
        let tokenizer = self.models.tokenizer_dir();
        let mut paths = vec![folder.as_path()];
        if tower == "text_encoder" && tokenizer.exists() {
            paths.push(tokenizer.as_path());
        }
        Ok(format!("vd-clip-vit-l14@{}", weights_fingerprint(&paths)?))
    }

    /// The name of Versatile Diffusion's weights: the fingerprint of the merged file or of the
    /// diffusers folders, with both CLIP towers' (which make the unconditional embeddings).
    fn diffusion_weights_name(&self, kind: Kind) -> Result<String, WorkflowError> {
        let root = self.models.root();
        let merged = root.join(crate::models::VD_MERGED);
        let folders: Vec<std::path::PathBuf> = if merged.is_file() {
            vec![merged]
        } else {
            ["image_unet", "text_unet", "vae", "scheduler"]
                .iter()
                .map(|name| root.join(crate::models::VD_FOLDER).join(name))
                .filter(|p| p.exists())
                .collect()
        };
        let paths: Vec<&Path> = folders.iter().map(std::path::PathBuf::as_path).collect();
        Ok(format!(
            "vd-{kind:?}@{}+{}+{}",
            weights_fingerprint(&paths)?,
            self.clip_weights_name("image_encoder")?,
            self.clip_weights_name("text_encoder")?
        ))
    }

    /// CLIP-Vision in Versatile Diffusion's normalisation (f32 on the CPU, `clip.cuda_precision`
    /// on CUDA). `clip.vision_tokens` and `clip.embedding_dim` are checked against the checkpoint.
    pub fn clip_vision(&self) -> Result<ClipVisionEncoder, WorkflowError> {
        let model = self.models.load_clip_vision(self.device, self.config.clip.cuda_precision.kind_on(self.device))?;
        let c = &self.config.clip;
        let file = self.models.clip_checkpoint("image_encoder");
        let positions = "vision_model.embeddings.position_embedding.weight";
        let tokens = model.config().num_positions();
        if c.vision_tokens as i64 != tokens {
            return Err(mismatch(
                "clip.vision_tokens",
                c.vision_tokens,
                file,
                format!(
                    "tensor `{positions}` has shape {:?}: the vision tower makes {tokens} tokens per image",
                    var_shape(model.var_store(), positions)
                ),
                format!("set clip.vision_tokens = {tokens}"),
            ));
        }
        let projection_shape = var_shape(model.var_store(), "visual_projection.weight");
        let encoder = ClipVisionEncoder::new(
            model,
            &self.clip_weights_name("image_encoder")?,
            c.vision_resize,
            CLIP_VISION_BATCH,
        )?;
        let width = encoder.feature_shape()[1];
        if c.embedding_dim != width {
            return Err(mismatch(
                "clip.embedding_dim",
                c.embedding_dim,
                file,
                format!(
                    "tensor `visual_projection.weight` has shape {projection_shape:?}: the vision tower's embeddings \
                     are {width} wide"
                ),
                format!("set clip.embedding_dim = {width}"),
            ));
        }
        Ok(encoder)
    }

    /// CLIP-Text in Versatile Diffusion's normalisation (f32). `clip.text_tokens` and
    /// `clip.embedding_dim` are checked against the tokenizer and the checkpoint.
    pub fn clip_text(&self) -> Result<ClipTextEncoder, WorkflowError> {
        let (model, tokenizer) =
            self.models.load_clip_text(self.device, self.config.clip.cuda_precision.kind_on(self.device))?;
        let c = &self.config.clip;
        let file = self.models.clip_checkpoint("text_encoder");
        let positions = "text_model.embeddings.position_embedding.weight";
        let position_shape = var_shape(model.var_store(), positions);
        let context = tokenizer.context_length();
        let projection_shape = var_shape(model.var_store(), "text_projection.weight");
        let encoder = ClipTextEncoder::new(model, tokenizer, &self.clip_weights_name("text_encoder")?)?;
        let [tokens, width] = [encoder.feature_shape()[0], encoder.feature_shape()[1]];
        if c.text_tokens != tokens {
            return Err(mismatch(
                "clip.text_tokens",
                c.text_tokens,
                file,
                format!(
                    "tensor `{positions}` has shape {position_shape:?} and the tokenizer ({}) pads every caption to \
                     {context} tokens: the text tower makes {tokens} tokens per caption",
                    self.models.tokenizer_dir().display()
                ),
                format!("set clip.text_tokens = {tokens}"),
            ));
        }
        if c.embedding_dim != width {
            return Err(mismatch(
                "clip.embedding_dim",
                c.embedding_dim,
                file,
                format!(
                    "tensor `text_projection.weight` has shape {projection_shape:?}: the text tower's embeddings are \
                     {width} wide"
                ),
                format!("set clip.embedding_dim = {width}"),
            ));
        }
        Ok(encoder)
    }

    /// Versatile Diffusion's img2img with `diffusion` settings; its unconditional embeddings are
    /// CLIP's of a uniform grey image and of the empty prompt, as the reference builds them.
    pub fn refiner(&self, diffusion: &DiffusionSection) -> Result<VersatileDiffusionRefiner, WorkflowError> {
        let (negative_vision, negative_text) = unconditional_embeddings(&self.clip_vision()?, &self.clip_text()?)?;
        let unet_kind = diffusion.cuda_precision.kind_on(self.device);
        let model = self.models.load_versatile_diffusion(self.device, unet_kind, unet_kind)?;
        self.check_diffusion(&model, diffusion)?;
        Ok(VersatileDiffusionRefiner::new(
            model,
            diffusion.img2img.clone(),
            negative_vision.view(),
            negative_text.view(),
            diffusion.resolution,
            &self.diffusion_weights_name(unet_kind)?,
        ))
    }
}

impl StageLoader<'_> {
    /// `clip.embedding_dim` against the U-Net's cross-attention width and `diffusion.resolution`
    /// against the autoencoder's downscale factor.
    fn check_diffusion(
        &self,
        model: &versatile_diffusion::VersatileDiffusion,
        diffusion: &DiffusionSection,
    ) -> Result<(), WorkflowError> {
        let width = self.config.clip.embedding_dim as i64;
        let manifest = versatile_diffusion::DualUNet::manifest(model.unet.config())
            .map_err(|e| ModelError::Diffusion { path: self.models.vd_unet_file(), error: Box::new(e) })?;
        let context =
            manifest.iter().find(|(k, shape)| k.ends_with(".attn2.to_k.weight") && shape.get(1) != Some(&width));
        if let Some((key, shape)) = context {
            let found = shape.get(1).copied().unwrap_or_default();
            return Err(mismatch(
                "clip.embedding_dim",
                width,
                self.models.vd_unet_file(),
                format!("tensor `{key}` has shape {shape:?}: the U-Net attends to embeddings {found} wide"),
                format!("set clip.embedding_dim = {found} (and use CLIP towers of that width)"),
            ));
        }
        let vae = model.vae.config();
        let factor = vae.downscale();
        if diffusion.resolution == 0 || i64::from(diffusion.resolution) % factor != 0 {
            let levels = vae.block_out_channels.len();
            return Err(mismatch(
                "diffusion.resolution",
                diffusion.resolution,
                self.models.vd_vae_config_file(),
                format!(
                    "the autoencoder has {levels} levels (block_out_channels {:?}; its encoder downsamples {} times, \
                     `encoder.down_blocks.*.downsamplers.0.conv.weight`), so image sides must be positive multiples \
                     of {factor}",
                    vae.block_out_channels,
                    levels.saturating_sub(1)
                ),
                format!("set diffusion.resolution to a multiple of {factor}"),
            ));
        }
        Ok(())
    }
}

impl From<crate::models::ModelError> for WorkflowError {
    fn from(e: crate::models::ModelError) -> Self {
        WorkflowError::Stage(StageError::new("models", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::tiny_models::{TinyModels, write_tiny_models};
    use crate::demo::{demo_config, demo_synth_config};

    fn tiny() -> (tempfile::TempDir, TinyModels, Config) {
        let tmp = tempfile::tempdir().unwrap();
        let tiny = write_tiny_models(tmp.path(), 9).unwrap();
        let config = demo_config(&demo_synth_config(1, crate::demo::DemoWorld::default()), &tiny);
        (tmp, tiny, config)
    }

    /// The message of a stage built with `edit` applied to the demo configuration.
    fn refused<T>(edit: impl FnOnce(&mut Config), build: impl Fn(&StageLoader) -> Result<T, WorkflowError>) -> String {
        let (tmp, _, mut config) = tiny();
        let models = ModelsDir::new(tmp.path());
        let good = StageLoader { models: &models, config: &config, device: Device::Cpu };
        assert!(build(&good).is_ok(), "the demo configuration fits the tiny models");
        edit(&mut config);
        let loader = StageLoader { models: &models, config: &config, device: Device::Cpu };
        match build(&loader) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a configuration that contradicts the checkpoint was accepted"),
        }
    }

    fn assert_names(text: &str, parts: &[&str]) {
        for part in parts {
            assert!(text.contains(part), "{part:?} missing from: {text}");
        }
    }

    #[test]
    fn a_clip_embedding_dim_that_the_checkpoint_contradicts_is_named_at_load() {
        // The case: the wrong width passed extract, fit and predict before.
        let text = refused(|c| c.clip.embedding_dim = 5, |l| l.clip_vision());
        assert_names(
            &text,
            &[
                "configuration `clip.embedding_dim` = 5",
                "versatile-diffusion/image_encoder/model.safetensors",
                "tensor `visual_projection.weight` has shape [16, 32]",
                "set clip.embedding_dim = 16",
            ],
        );
        let text = refused(|c| c.clip.embedding_dim = 5, |l| l.clip_text());
        assert_names(
            &text,
            &[
                "configuration `clip.embedding_dim` = 5",
                "versatile-diffusion/text_encoder/model.safetensors",
                "tensor `text_projection.weight` has shape [16, ",
            ],
        );
    }

    #[test]
    fn token_counts_that_the_checkpoint_contradicts_are_named_at_load() {
        let text = refused(|c| c.clip.vision_tokens = 257, |l| l.clip_vision());
        assert_names(
            &text,
            &[
                "configuration `clip.vision_tokens` = 257",
                "image_encoder/model.safetensors",
                "tensor `vision_model.embeddings.position_embedding.weight` has shape [5, 32]",
                "set clip.vision_tokens = 5",
            ],
        );
        let text = refused(|c| c.clip.text_tokens = 76, |l| l.clip_text());
        assert_names(
            &text,
            &[
                "configuration `clip.text_tokens` = 76",
                "text_encoder/model.safetensors",
                "tensor `text_model.embeddings.position_embedding.weight` has shape [77, ",
                "set clip.text_tokens = 77",
            ],
        );
    }

    #[test]
    fn vdvae_settings_that_the_checkpoint_contradicts_are_named_at_load() {
        let text = refused(|c| c.vdvae.layers = 31, |l| l.vdvae());
        assert_names(
            &text,
            &[
                "configuration `vdvae.layers` = 31",
                "vdvae/model.safetensors",
                "its decoder has 10 blocks",
                "decoder.dec_blocks.9.enc.c1.weight",
                "vdvae/hps.json",
                "set vdvae.layers between 1 and 10",
            ],
        );
        let text = refused(|c| c.vdvae.image_size = 64, |l| l.vdvae());
        assert_names(
            &text,
            &["configuration `vdvae.image_size` = 64", "vdvae/model.safetensors", "16x16", "set vdvae.image_size = 16"],
        );
    }

    #[test]
    fn diffusion_settings_that_the_checkpoint_contradicts_are_named_at_load() {
        let (tmp, tiny, mut config) = tiny();
        let models = ModelsDir::new(tmp.path());
        let vd = models.load_versatile_diffusion(Device::Cpu, Kind::Float, Kind::Float).unwrap();
        let diffusion = config.diffusion.clone();
        let loader = StageLoader { models: &models, config: &config, device: Device::Cpu };
        loader.check_diffusion(&vd, &diffusion).unwrap();
        let odd = DiffusionSection { resolution: tiny.image_side + 2, ..diffusion.clone() };
        let text = loader.check_diffusion(&vd, &odd).unwrap_err().to_string();
        assert_names(
            &text,
            &[
                &format!("configuration `diffusion.resolution` = {}", tiny.image_side + 2),
                "versatile-diffusion/vae/config.json",
                "multiples of 4",
            ],
        );
        // A context width other than the U-Net's (here with CLIP towers that would agree with it).
        config.clip.embedding_dim = 24;
        let loader = StageLoader { models: &models, config: &config, device: Device::Cpu };
        let text = loader.check_diffusion(&vd, &diffusion).unwrap_err().to_string();
        assert_names(
            &text,
            &[
                "configuration `clip.embedding_dim` = 24",
                "versatile-diffusion/image_unet/diffusion_pytorch_model.safetensors",
                ".attn2.to_k.weight` has shape [",
                "set clip.embedding_dim = 16",
            ],
        );
        // The whole refiner stops at the first of them, before any image is made.
        let text = match loader.refiner(&diffusion) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("refiner built"),
        };
        assert!(text.contains("clip.embedding_dim"), "{text}");
    }

    #[test]
    fn unconditional_embeddings_of_another_shape_name_the_array_and_the_shape() {
        let err = as_tokens("the unconditional CLIP-Text embedding", Array2::zeros((1, 30)), &[5, 16]).unwrap_err();
        assert_names(&err.to_string(), &["the unconditional CLIP-Text embedding", "1 rows of 30 values", "[5, 16]"]);
    }
}

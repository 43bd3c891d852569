//! # clip
//!
//! CLIP ViT-L/14 vision and text towers in tch, its byte-pair tokenizer and its image
//! preprocessing, loading Hugging Face weights (`openai/clip-vit-large-patch14`, or the
//! `image_encoder/` and `text_encoder/` folders of `shi-labs/versatile-diffusion`). Besides the
//! usual pooled embeddings it produces the token sequences that Versatile Diffusion conditions on
//! (257x768 for an image, 77x768 for a caption, each divided by the norm of its projected pooled
//! token), which Brain-Diffuser regresses from fMRI, and the image embedding used by the CLIP
//! evaluation metric.
//!
//! Layout:
//! - [`config`]: `config.json` reading and the ViT-L/14 preset;
//! - [`ClipTokenizer`]: CLIP's BPE through the `tokenizers` crate;
//! - [`preprocess`]: Pillow-exact bicubic resize (the `pil-resample` crate), centre crop, normalisation;
//! - [`ClipVisionModel`], [`ClipTextModel`]: the towers with transformers' parameter names;
//! - [`ClipModel`]: both towers from one `CLIPModel` checkpoint;
//! - [`weights`]: checkpoint reading with key problems reported by name;
//! - [`Embeddings`]: plain `f32` data with a shape, for callers without tch.
//!
//! Device and precision are chosen by the caller (`tch::Device`, `tch::Kind`).

pub mod config;
mod error;
mod layers;
pub mod preprocess;
mod text;
mod tokenizer;
mod vision;
pub mod weights;

use std::collections::BTreeMap;
use std::path::Path;

use tch::{Device, Kind, Tensor};

pub use config::{ClipConfig, TextConfig, VisionConfig};
pub use error::ClipError;
pub use preprocess::ClipImageProcessor;
pub use text::{ClipTextModel, TextOutput, text_parameter_shapes};
pub use tokenizer::{BOS_TOKEN, CONTEXT_LENGTH, ClipTokenizer, EOS_TOKEN};
pub use vision::{ClipVisionModel, VisionOutput, vision_parameter_shapes};
use weights::{Checkpoint, find_checkpoint};

/// A row-major `f32` array and its shape: embeddings handed to callers that do not use tch.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// The values, row-major.
    pub data: Vec<f32>,
    /// The shape, e.g. `[images, 257, 768]`.
    pub shape: Vec<usize>,
}

impl Embeddings {
    /// Copies a tensor (any device or float kind) to host `f32`.
    pub fn from_tensor(t: &Tensor) -> Result<Self, ClipError> {
        let shape = t.size().iter().map(|&d| d as usize).collect();
        let flat = t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_contiguous()?.f_view([-1])?;
        let data = Vec::<f32>::try_from(&flat)?;
        Ok(Self { data, shape })
    }
}

/// Both CLIP towers, loaded from one `CLIPModel` checkpoint (read once).
#[derive(Debug)]
pub struct ClipModel {
    /// The image encoder with `visual_projection`.
    pub vision: ClipVisionModel,
    /// The text encoder with `text_projection`.
    pub text: ClipTextModel,
    /// The learnt temperature (`logit_scale`, log of the logit multiplier; about ln 100).
    pub logit_scale: f64,
}

impl ClipModel {
    /// Loads a `CLIPModel` folder (`config.json` + `model.safetensors` or `pytorch_model.bin`),
    /// e.g. a download of openai/clip-vit-large-patch14.
    pub fn from_pretrained(dir: impl AsRef<Path>, device: Device, kind: Kind) -> Result<Self, ClipError> {
        let dir = dir.as_ref();
        let config = ClipConfig::from_file(dir.join("config.json"))?;
        let checkpoint = Checkpoint::open(find_checkpoint(dir)?)?;
        let vision = ClipVisionModel::from_checkpoint(&config.vision, &checkpoint, device, kind)?;
        let text = ClipTextModel::from_checkpoint(&config.text, &checkpoint, device, kind)?;
        let logit_scale = checkpoint.scalar("logit_scale")?.unwrap_or(2.6592);
        Ok(Self { vision, text, logit_scale })
    }
}

/// Names and shapes of every tensor of transformers' `CLIPModel` at `config`, computed from the
/// config alone (nothing allocated): the two towers, their projections and `logit_scale`.
pub fn clip_model_parameter_shapes(config: &ClipConfig) -> BTreeMap<String, Vec<i64>> {
    let mut all: BTreeMap<String, Vec<i64>> = vision_parameter_shapes(&config.vision, config.projection_dim)
        .into_iter()
        .chain(text_parameter_shapes(&config.text, config.projection_dim))
        .collect();
    all.insert("logit_scale".to_string(), vec![]);
    all
}

/// Encodes RGB images into Versatile Diffusion's image conditioning `[n, 257, 768]` as plain data:
/// CLIP preprocessing ([`ClipImageProcessor`] for the model's input size), then
/// [`ClipVisionModel::vd_embeddings`], in batches of `batch_size`.
pub fn encode_images_vd(
    model: &ClipVisionModel,
    images: &[image::RgbImage],
    batch_size: usize,
) -> Result<Embeddings, ClipError> {
    let processor = ClipImageProcessor::for_image_size(model.config().image_size as u32);
    let device = model.var_store().device();
    let mut parts = Vec::new();
    for chunk in images.chunks(batch_size.max(1)) {
        let x = processor.batch(chunk, device)?;
        parts.push(model.vd_embeddings(&x)?.to_device(Device::Cpu));
    }
    if parts.is_empty() {
        return Err(ClipError::invalid("images", "no image given"));
    }
    Embeddings::from_tensor(&Tensor::cat(&parts, 0))
}

/// Encodes the captions of several images into Brain-Diffuser's text targets `[images, 77, 768]`:
/// every caption through [`ClipTextModel::vd_embeddings`], then the mean over each image's captions
/// (as `cliptext_extract_features.py` does). Empty captions should be dropped by the caller, as
/// the reference does.
pub fn encode_captions_vd(
    model: &ClipTextModel,
    tokenizer: &ClipTokenizer,
    captions_per_image: &[Vec<&str>],
) -> Result<Embeddings, ClipError> {
    let groups: Vec<usize> = captions_per_image.iter().map(Vec::len).collect();
    let flat: Vec<&str> = captions_per_image.iter().flatten().copied().collect();
    if flat.is_empty() {
        return Err(ClipError::invalid("captions", "no caption given"));
    }
    let ids = tokenizer.encode_tensor(&flat)?;
    Embeddings::from_tensor(&model.vd_embeddings_mean(&ids, &groups)?)
}

//! The models folder: where the `brain-diffuser` command line finds every checkpoint, how each one is
//! loaded through its crate, and a check that reports what is present, missing or broken (with the URL
//! to fetch and the path to put it at). Tiny random-weight models in the same layout are written by
//! [`write_tiny_models`], which lives beside the demo ([`crate::demo::tiny_models`]).
//!
//! ```text
//! models/
//!   vdvae/imagenet64-iter-1600000-model-ema.th   openai/vdvae ImageNet-64 EMA weights
//!                                                 (or vdvae/model.safetensors)
//!   vdvae/hps.json                                optional reference hps JSON (absent: ImageNet-64)
//!   versatile-diffusion/                          diffusers snapshot of shi-labs/versatile-diffusion:
//!     image_unet/ text_unet/ vae/ scheduler/      dual U-Net, AutoencoderKL, DDIM config
//!     image_encoder/ text_encoder/ tokenizer/     VD's CLIP ViT-L/14 towers and tokenizer
//!   versatile-diffusion.safetensors               optional merged file from `vd-convert`; preferred
//!                                                 over the U-Net and VAE folders when present
//!   metrics/                                      torchvision networks as .safetensors (see METRIC_NETWORKS)
//!   TINY-RANDOM-MODELS.txt                        only in folders written by write_tiny_models
//! ```
//!
//! The CLIP metric uses VD's `image_encoder/`: diffusers' conversion script for Versatile Diffusion
//! (`scripts/convert_versatile_diffusion_to_diffusers.py`) takes the tokenizer and both CLIP towers
//! from `openai/clip-vit-large-patch14`, the OpenAI ViT-L/14 weights the metric protocols use (the
//! files were not compared by hash). See `docs/models.md`.
//!
//! One job a file: this file holds the folder's layout (the paths below and where they come from);
//! `error.rs` the [`ModelError`] of every job; `load.rs` [`ModelsDir`], which finds each model's
//! files and loads it through its crate; `check.rs` [`ModelsDir::check`] and its [`ModelsReport`];
//! `header.rs` the names, shapes and dtypes of weight files read from their headers;
//! `catalogue.rs` the torchvision metric networks the folder can hold ([`METRIC_NETWORKS`]).
//! Versatile Diffusion's full-size configurations are the `versatile-diffusion` crate's presets
//! ([`versatile_diffusion::UNetConfig::versatile_diffusion`] and its siblings).

use std::path::{Path, PathBuf};

mod catalogue;
mod check;
mod error;
mod header;
mod load;

pub use catalogue::{METRIC_NETWORKS, MetricNetworkFile, metric_networks_for};
pub use check::{Download, ModelEntry, ModelStatus, ModelsReport};
pub use error::ModelError;
pub(crate) use error::io_error;
pub use load::ModelsDir;
// The tiny-model writer lives beside the demo; this path is the one its marker file names.
pub use crate::demo::tiny_models::{TinyModels, write_tiny_models};

/// Marker file of a folder written by [`write_tiny_models`]; [`ModelsDir::check`] reports its
/// models as tiny random stand-ins, never as valid.
pub const TINY_MARKER: &str = "TINY-RANDOM-MODELS.txt";
/// The official VDVAE checkpoint, relative to the models folder.
pub const VDVAE_CHECKPOINT: &str = "vdvae/imagenet64-iter-1600000-model-ema.th";
/// The VDVAE weights as safetensors (used when the official checkpoint is absent).
pub const VDVAE_SAFETENSORS: &str = "vdvae/model.safetensors";
/// The optional VDVAE hyper-parameters (reference `hps` JSON); absent means ImageNet-64.
pub const VDVAE_HPS: &str = "vdvae/hps.json";
/// The diffusers snapshot of `shi-labs/versatile-diffusion`.
pub const VD_FOLDER: &str = "versatile-diffusion";
/// The merged dual-U-Net + VAE file written by `vd-convert`; preferred over the folders when present.
pub const VD_MERGED: &str = "versatile-diffusion.safetensors";
/// The folder of the torchvision metric networks.
pub const METRICS_FOLDER: &str = "metrics";

const VDVAE_URL: &str = "https://openaipublic.blob.core.windows.net/very-deep-vaes-assets/vdvae-assets-2/imagenet64-iter-1600000-model-ema.th";
const VD_HUB: &str = "https://huggingface.co/shi-labs/versatile-diffusion/resolve/main";
/// Weight file names of a diffusers model folder, in the order `versatile-diffusion` looks for them.
const DIFFUSERS_WEIGHTS: [&str; 4] = [
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.fp16.bin",
];
/// Tokenizer files `ClipTokenizer::from_dir` reads (any one set of them).
const TOKENIZER_FILES: [&str; 4] = ["tokenizer.json", "vocab.json", "merges.txt", "bpe_simple_vocab_16e6.txt.gz"];

/// The weight file of a diffusers model folder, in the order of [`DIFFUSERS_WEIGHTS`].
fn diffusers_weights(dir: &Path) -> Option<PathBuf> {
    DIFFUSERS_WEIGHTS.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

//! # vdvae
//!
//! The very deep VAE (VDVAE) trained on ImageNet-64, as used by Brain-Diffuser's first stage: it
//! loads the official `imagenet64-iter-1600000-model-ema.th` checkpoint under its own key names,
//! encodes images into the latents of the first decoder blocks (a flat vector per image in the
//! reference layout), and decodes such latents, drawing the remaining blocks from the prior, back
//! into 64x64 images. It matches the original code number for number and knows nothing of NSD.
//!
//! - [`VdvaeConfig`]: hyper-parameters, the `imagenet64` preset and the block-string grammar.
//! - [`Vdvae`]: the network (tch `VarStore` named like the official state dict), loading of
//!   `torch.save` (zip or legacy pickle) and safetensors checkpoints with every key and shape checked, and the
//!   tensor-level passes (encoder, posterior pass, generative pass, output distribution);
//!   device, precision (`set_precision`) and memory layout (`set_channels_last`) are the caller's.
//! - [`Vdvae::encode`] / [`Vdvae::decode`]: plain-data entry points (RGB images of any size in,
//!   flat latents out, and back), seeded; [`upscale`] for the 512x512 bicubic upscale.
//! - [`noise`]: seeded or explicit draws, [`parity`]: replay of reference fixtures. Resizing
//!   (Pillow-exact bilinear in, bicubic upscale out) is the `pil-resample` crate's.
//!
//! ```no_run
//! use vdvae::{DecodeOptions, EncodeOptions, Vdvae, VdvaeConfig};
//! # fn main() -> Result<(), vdvae::VdvaeError> {
//! let model = Vdvae::load(
//!     "imagenet64-iter-1600000-model-ema.th".as_ref(),
//!     &VdvaeConfig::imagenet64(),
//!     tch::Device::cuda_if_available(),
//! )?;
//! let images = vec![image::RgbImage::new(425, 425)];
//! let latents = model.encode(&images, &EncodeOptions::default())?; // 91,168 values per image
//! let recon = model.decode(&latents, &DecodeOptions::default())?; // 64x64 RGB
//! let big = vdvae::upscale(&recon[0], 512)?;
//! # let _ = big; Ok(()) }
//! ```

pub mod checkpoint;
mod config;
mod error;
mod inference;
mod latents;
mod model;
pub mod noise;
pub mod parity;

pub use config::{BlockString, DecoderBlockSpec, EncoderBlockSpec, Normalisation, VdvaeConfig, parse_block_string};
pub use error::{KeyMismatch, VdvaeError};
pub use inference::{DecodeOptions, EncodeOptions, upscale};
pub use latents::{LatentLayout, Latents};
pub use model::dmol::{sample_mixture, to_u8};
pub use model::{OutputDraw, PosteriorDraw, PosteriorPass, Vdvae, WeightInit};
pub use noise::{ExplicitNoise, GaussianDraw, NoiseSource, SeededNoise, UniformDraw};

//! # versatile-diffusion
//!
//! Versatile Diffusion's dual-guided image-to-image generation (Brain-Diffuser stage 2): the U-Net
//! whose attention positions each mix an image-conditioned and a text-conditioned transformer, the
//! AutoencoderKL, and the DDIM sampler, loading the diffusers-format `shi-labs/versatile-diffusion`
//! checkpoint or one merged safetensors file. It takes CLIP embeddings as tensors and never
//! computes them itself.
//!
//! - [`checkpoint`]: diffusers folders (`image_unet/`, `text_unet/`, `vae/`, `scheduler/`), the
//!   dual assembly, legacy VAE names, the merged file ([`VdWeights`]).
//! - [`unet`], [`attention`], [`resnet`], [`layers`]: the dual U-Net ([`DualUNet`]).
//! - [`vae`]: [`AutoencoderKl`]. [`ddim`]: [`DdimScheduler`] and [`NoiseTimestep`].
//! - [`pipeline`]: [`VersatileDiffusion::img2img`] with Brain-Diffuser's defaults
//!   ([`Img2ImgSettings`]).
//! - [`weights`]: where parameters come from (state dict, seeded random, or shape-only walks
//!   that list full-size names and shapes without allocating).

pub mod attention;
pub mod checkpoint;
pub mod config;
pub mod ddim;
mod error;
pub mod layers;
pub mod pipeline;
pub mod resnet;
pub mod unet;
pub mod vae;
pub mod weights;

pub use attention::{AttentionKernel, DualMix};
pub use checkpoint::VdWeights;
pub use config::{SchedulerConfig, UNetConfig, VaeConfig};
pub use ddim::{DdimScheduler, Img2ImgSchedule, NoiseTimestep};
pub use error::{DiffusionError, KeyProblem};
pub use pipeline::{
    BatchForward, Conditioning, Img2ImgSettings, Noise, PosteriorMode, Quantize, RgbImages, StepProgress,
    VersatileDiffusion,
};
pub use unet::{DualUNet, UNetRun};
pub use vae::AutoencoderKl;
pub use weights::{Manifest, WeightSource};

//! # versatile-diffusion
//!
//! Versatile Diffusion's dual-guided image-to-image generation: the U-Net whose attention positions
//! each mix an image-conditioned and a text-conditioned transformer, the AutoencoderKL, and the DDIM
//! sampler, loading the diffusers-format `shi-labs/versatile-diffusion` checkpoint. It takes CLIP
//! embeddings as tensors and never computes them itself.

mod error;

pub use error::DiffusionError;

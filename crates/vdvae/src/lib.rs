//! # vdvae
//!
//! The very deep VAE (VDVAE) trained on ImageNet-64, as used by Brain-Diffuser's first stage: it
//! loads the official `imagenet64-iter-1600000-model-ema.th` checkpoint under its own key names,
//! encodes images into the latents of the first decoder blocks (a flat vector per image in the
//! reference layout), and decodes such latents, drawing the remaining blocks from the prior, back
//! into 64x64 images. It matches the original code number for number and knows nothing of NSD.

mod error;

pub use error::VdvaeError;

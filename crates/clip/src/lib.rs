//! # clip
//!
//! CLIP ViT-L/14 vision and text towers, its byte-pair tokenizer and its image preprocessing, loading
//! Hugging Face weights. Besides the usual pooled embeddings it produces the token sequences that
//! Versatile Diffusion conditions on (257x768 for an image, 77x768 for a caption, each normalised by
//! its pooled token), which Brain-Diffuser regresses from fMRI, and the image embedding used by the
//! CLIP evaluation metric.

mod error;

pub use error::ClipError;

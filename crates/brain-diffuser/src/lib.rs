//! # brain-diffuser
//!
//! Reconstructs the images a person saw from their fMRI, the Brain-Diffuser method (Ozcelik &
//! VanRullen, 2023). Three ridge regressions map NSD betas to VDVAE latents, CLIP-Vision and
//! CLIP-Text embeddings; VDVAE decodes a 64x64 initial guess, which Versatile Diffusion refines under
//! the predicted embeddings. This crate composes the stage crates (`nsd-io`, `ridge`, `vdvae`,
//! `clip`, `versatile-diffusion`, `metrics`) through three traits — [`Encoder`], [`Regressor`] and
//! [`Generator`] — so that any stage can be swapped for another project's.

pub mod cli;
pub mod config;
pub mod demo;
mod error;
pub mod models;
pub mod renormalise;
pub mod report;
pub mod roi;
pub mod runtime;
pub mod seeds;
pub mod shard;
mod stage;
pub mod stages;
mod target_group;
pub mod workflow;

pub use config::Config;
pub use error::StageError;
pub use stage::{
    AnyGenerator, Encoder, ExpectedPredictions, Generator, GuidedCondition, LatentCondition, PreparedRegressor,
    Regressor, TargetSource, check_predictions, check_seed_count,
};
pub use target_group::{ConditionInputs, GroupFeatures, TargetGroup};

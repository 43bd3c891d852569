//! # nsd-io
//!
//! Reads the Natural Scenes Dataset (NSD) from the files it is distributed in — NIfTI-1 betas and
//! ROI volumes, the HDF5 stimulus brick, the MATLAB v5 experiment design, the curated caption array —
//! and assembles each subject's train/test fMRI, image ids and captions exactly as the Brain-Diffuser
//! reference prepares them, one session at a time so a subject never needs the reference's 80 GB.
//! It also writes a small synthetic NSD in the same formats, with a known encoding model, for
//! end-to-end tests. It knows nothing of models or tensors.

mod error;

pub use error::NsdError;

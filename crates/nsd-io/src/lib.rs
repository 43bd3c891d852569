//! # nsd-io
//!
//! Reads the Natural Scenes Dataset (NSD) from the files it is distributed in — NIfTI-1 betas and
//! ROI volumes ([`nifti`]), the HDF5 stimulus brick and HDF5 betas (`hdf5`, behind the `hdf5`
//! feature, on by default), the MATLAB v5 (or v4) experiment design ([`mat`], [`expdesign`]), the curated caption array
//! or COCO caption files ([`captions`]) — and assembles each subject's train/test fMRI, image ids
//! and captions exactly as the Brain-Diffuser reference prepares them ([`subject`]), one session at
//! a time so a subject never needs the reference's 80 GB.
//! It also writes a small synthetic NSD in the same formats, with a known linear encoding model,
//! for end-to-end tests ([`synth`]). It knows nothing of models or tensors.
//!
//! ```no_run
//! use nsd_io::{AssemblyOptions, NsdLayout, assemble_subject};
//! let layout = NsdLayout::new("/data/nsd");
//! let mut subj = assemble_subject(&layout, 1, &AssemblyOptions::default())?;
//! subj.divide(300.0); // explicit, as the reference's regression scripts do
//! let _stats = subj.zscore_with_train_stats()?;
//! subj.save(std::path::Path::new("processed/subj01"))?;
//! # Ok::<(), nsd_io::NsdError>(())
//! ```

mod atomic;
pub mod captions;
mod error;
pub mod expdesign;
#[cfg(feature = "hdf5")]
pub mod hdf5;
pub mod layout;
pub mod lzf;
pub mod mat;
pub mod nifti;
pub mod subject;
pub mod synth;

pub use atomic::{remove_stale_partials, write_atomic};
pub use captions::CaptionTable;
pub use error::{NsdError, Result};
pub use expdesign::{ExpDesign, Split, SplitPlan, Stimulus};
pub use layout::NsdLayout;
pub use nifti::{NiftiHeader, NiftiReader, Volume, VoxelMask, read_nifti, read_volume};
pub use subject::{
    AssemblyOptions, BetasFormat, SubjectData, TrainStats, TrainTrials, assemble_subject,
    assemble_subject_with_progress, nsdgeneral_mask,
};

//! Where each NSD file lives inside a download (the layout of the `natural-scenes-dataset` bucket).

use std::path::{Path, PathBuf};

/// Paths of the NSD files under one root folder.
///
/// The curated caption array is not part of NSD (it comes from the HuggingFace dataset
/// pscotti/naturalscenesdataset); by default it is looked for at `<root>/annots/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsdLayout {
    /// The folder that holds `nsddata/`, `nsddata_betas/` and `nsddata_stimuli/`.
    pub root: PathBuf,
    /// The curated caption array `COCO_73k_annots_curated.npy`.
    pub captions: PathBuf,
}

impl NsdLayout {
    /// The standard layout under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let captions = root.join("annots").join("COCO_73k_annots_curated.npy");
        Self { root, captions }
    }

    /// The same layout with the caption array at `path`.
    pub fn with_captions(mut self, path: impl Into<PathBuf>) -> Self {
        self.captions = path.into();
        self
    }

    /// `nsddata/experiments/nsd/nsd_expdesign.mat`.
    pub fn expdesign(&self) -> PathBuf {
        self.root.join("nsddata/experiments/nsd/nsd_expdesign.mat")
    }

    /// `nsddata/experiments/nsd/nsd_stim_info_merged.csv`.
    pub fn stim_info_csv(&self) -> PathBuf {
        self.root.join("nsddata/experiments/nsd/nsd_stim_info_merged.csv")
    }

    /// `nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5`.
    pub fn stimuli(&self) -> PathBuf {
        self.root.join("nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5")
    }

    /// `nsddata_stimuli/stimuli/nsd/annotations/captions_{split}2017.json` (COCO captions).
    pub fn coco_captions(&self, split: &str) -> PathBuf {
        self.root.join(format!("nsddata_stimuli/stimuli/nsd/annotations/captions_{split}2017.json"))
    }

    fn betas_dir(&self, subject: u8) -> PathBuf {
        self.root.join(format!("nsddata_betas/ppdata/subj{subject:02}/func1pt8mm/betas_fithrf_GLMdenoise_RR"))
    }

    /// `.../subjXX/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_sessionYY.nii.gz` (session 1-based).
    pub fn betas_session(&self, subject: u8, session: usize) -> PathBuf {
        self.betas_dir(subject).join(format!("betas_session{session:02}.nii.gz"))
    }

    /// The HDF5 variant `betas_sessionYY.hdf5` of the same session.
    pub fn betas_session_hdf5(&self, subject: u8, session: usize) -> PathBuf {
        self.betas_dir(subject).join(format!("betas_session{session:02}.hdf5"))
    }

    /// `nsddata/ppdata/subjXX/func1pt8mm/roi/{name}.nii.gz` (e.g. `nsdgeneral`, `prf-visualrois`).
    pub fn roi(&self, subject: u8, name: &str) -> PathBuf {
        self.root.join(format!("nsddata/ppdata/subj{subject:02}/func1pt8mm/roi/{name}.nii.gz"))
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

//! Where every step's outputs live inside a run folder.
//!
//! ```text
//! <run>/
//!   config.toml                      the configuration of the run (written by `prepare`)
//!   subj01/
//!     fmri/                          nsd-io's subject cache (reference file names) + roi_patterns.npy
//!     ground_truth/0000.png ...      the test stimuli, for evaluation and reports
//!     features/<group>/<split>/      feature rows in chunks: rows-000000-000064.npy, ...
//!     regression/<group>/            test and ROI predictions, alphas, training-feature statistics
//!     predicted/<group>.npy          renormalised test predictions (what the generators consume)
//!     reconstructions/<variant>/     0000.png ... per test image
//!     metrics/<variant>/<protocol>/  metrics.json, metrics.csv
//!     roi/<variant>/                 ROI-optimal images
//!     weights-roi/                   per-voxel L1 norms of the regression weights, the Figure 7 table
//!   average/                         predictions averaged over subjects, their reconstructions and metrics
//!                                    (settings.toml: the subject list and their predictions' records)
//!   weights-roi/                     Figure 7 over subjects: table and bar chart
//!   report/                          grid.png, metrics.md, index.html (+ images/, figure7.svg)
//! ```

use std::path::{Path, PathBuf};

use crate::TargetGroup;
use crate::config::DiffusionSection;

/// The root of one run: every step of every subject writes below it.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// A run rooted at `root` (created by the steps as needed).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The run's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The configuration file of the run.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// The outputs of NSD subject `subject` (`subj01`, ...).
    pub fn subject(&self, subject: u8) -> SubjectDir {
        SubjectDir { subject, outputs: OutputDir { root: self.root.join(format!("subj{subject:02}")) } }
    }

    /// Outputs made from predictions averaged over subjects.
    pub fn average(&self) -> OutputDir {
        OutputDir { root: self.root.join("average") }
    }

    /// Analyses over subjects (the Figure 7 statistic).
    pub fn weights_roi(&self) -> PathBuf {
        self.root.join("weights-roi")
    }

    /// The report folder.
    pub fn report(&self) -> PathBuf {
        self.root.join("report")
    }
}

/// Outputs derived from predicted features: of one subject, or of the subject average.
#[derive(Debug, Clone)]
pub struct OutputDir {
    root: PathBuf,
}

impl OutputDir {
    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Renormalised test predictions of a target group.
    pub fn predicted(&self, group: &TargetGroup) -> PathBuf {
        self.root.join("predicted").join(format!("{}.npy", group.name()))
    }

    /// NSD ids of the test images, in the row order of the predictions.
    pub fn predicted_ids(&self) -> PathBuf {
        self.root.join("predicted").join("test_ids.txt")
    }

    /// Reconstructions of one variant.
    pub fn reconstructions(&self, variant: Variant) -> PathBuf {
        self.root.join("reconstructions").join(variant.name())
    }

    /// Metrics of one variant under one protocol.
    pub fn metrics(&self, variant: Variant, protocol: &str) -> PathBuf {
        self.root.join("metrics").join(variant.name()).join(protocol)
    }

    /// ROI-optimal images of one variant (only-vdvae or brain-diffuser).
    pub fn roi_images(&self, variant: Variant) -> PathBuf {
        self.root.join("roi").join(variant.name())
    }

    /// ROI-optimal features (inputs of the ROI images).
    pub fn roi_features(&self, group: &TargetGroup) -> PathBuf {
        self.roi_features_folder().join(format!("{}.npy", group.name()))
    }

    /// The folder of the ROI-optimal features (and of their settings record).
    pub fn roi_features_folder(&self) -> PathBuf {
        self.root.join("roi").join("features")
    }
}

/// The folders of one subject.
#[derive(Debug, Clone)]
pub struct SubjectDir {
    /// The NSD subject number.
    pub subject: u8,
    /// Folders derived from predictions, shared in shape with the subject average.
    pub outputs: OutputDir,
}

impl SubjectDir {
    /// The subject's root folder.
    pub fn root(&self) -> &Path {
        self.outputs.root()
    }

    /// nsd-io's cache of the assembled, z-scored fMRI, ids and captions.
    pub fn fmri(&self) -> PathBuf {
        self.root().join("fmri")
    }

    /// The 13 binary ROI patterns over nsdgeneral voxels (`roi::ROI_NAMES` order).
    pub fn roi_patterns(&self) -> PathBuf {
        self.fmri().join("roi_patterns.npy")
    }

    /// The test stimuli as PNGs.
    pub fn ground_truth(&self) -> PathBuf {
        self.root().join("ground_truth")
    }

    /// Feature chunks of one group and split (`train` or `test`).
    pub fn features(&self, group: &TargetGroup, split: DataSplit) -> PathBuf {
        self.root().join("features").join(group.name()).join(split.name())
    }

    /// Outputs of one regression.
    pub fn regression(&self, group: &TargetGroup) -> PathBuf {
        self.root().join("regression").join(group.name())
    }

    /// Per-voxel weight norms and the Figure 7 table of this subject.
    pub fn weights_roi(&self) -> PathBuf {
        self.root().join("weights-roi")
    }
}

/// The training or the test stimuli.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataSplit {
    Train,
    Test,
}

impl DataSplit {
    /// `train` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            DataSplit::Train => "train",
            DataSplit::Test => "test",
        }
    }
}

/// The full model and the paper's ablations (Table 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// VDVAE initial guess refined by Versatile Diffusion under both CLIP embeddings.
    BrainDiffuser,
    /// Stage 1 only: the VDVAE images (upscaled as for stage 2).
    OnlyVdvae,
    /// Stage 2 from a random latent instead of the VDVAE guess: all 50 steps from pure noise
    /// (img2img strength 1).
    NoVdvae,
    /// Stage 2 guided by CLIP-Vision only (text weight 0).
    NoClipText,
    /// Stage 2 guided by CLIP-Text only (text weight 1).
    NoClipVision,
}

impl Variant {
    /// Every variant, the full model first.
    pub const ALL: [Variant; 5] =
        [Variant::BrainDiffuser, Variant::OnlyVdvae, Variant::NoVdvae, Variant::NoClipText, Variant::NoClipVision];

    /// The ablations of the paper's Table 2.
    pub const ABLATIONS: [Variant; 4] =
        [Variant::OnlyVdvae, Variant::NoVdvae, Variant::NoClipText, Variant::NoClipVision];

    /// Folder and report name.
    pub fn name(self) -> &'static str {
        match self {
            Variant::BrainDiffuser => "brain-diffuser",
            Variant::OnlyVdvae => "only-vdvae",
            Variant::NoVdvae => "no-vdvae",
            Variant::NoClipText => "no-clip-text",
            Variant::NoClipVision => "no-clip-vision",
        }
    }

    /// Parses a [`Variant::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == name)
    }

    /// The stage-2 settings of this variant, or `None` for the stage-1-only variant.
    pub fn diffusion(self, base: &DiffusionSection) -> Option<DiffusionSection> {
        let mut config = base.clone();
        match self {
            Variant::OnlyVdvae => return None,
            Variant::BrainDiffuser => {}
            Variant::NoVdvae => {
                // A random start: the whole schedule from pure noise (the reference's index
                // convention has no step before index 49, so the consistent one is used here).
                config.img2img.strength = 1.0;
                config.img2img.noise_timestep = versatile_diffusion::NoiseTimestep::Consistent;
            }
            Variant::NoClipText => config.img2img.text_weight = 0.0,
            Variant::NoClipVision => config.img2img.text_weight = 1.0,
        }
        Some(config)
    }

    /// Whether stage 2 starts from the VDVAE images (all but [`Variant::NoVdvae`]).
    pub fn starts_from_stage1(self) -> bool {
        self != Variant::NoVdvae
    }
}

//! One subject's train/test fMRI, image ids and captions, assembled as the reference's
//! `prepare_nsddata.py` does, but streaming: one session at a time, only masked voxels kept.
//!
//! Faithfulness: masked values are `f32(get_fdata())`; repetitions are averaged by summing in f32
//! in trial order and dividing in f32, exactly as numpy's `mean(0)` of the reference's f32 rows.
//! The /300 scaling and the z-scoring with train statistics are separate, explicit steps
//! ([`SubjectData::divide`], [`SubjectData::zscore_with_train_stats`]), as in the regression scripts.

use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use rayon::prelude::*;
use tracing::info;

use crate::atomic::write_atomic;
use crate::captions::CaptionTable;
use crate::error::{NsdError, Result};
use crate::expdesign::{ExpDesign, Split, SplitPlan};
use crate::layout::NsdLayout;
use crate::nifti::{NiftiReader, VoxelMask, read_volume};

/// Which files hold the betas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BetasFormat {
    /// `betas_sessionYY.nii.gz` (what the reference reads).
    NiftiGz,
    /// `betas_sessionYY.hdf5` (needs the `hdf5` feature).
    Hdf5,
}

/// How to assemble a subject.
#[derive(Debug, Clone, PartialEq)]
pub struct AssemblyOptions {
    /// Sessions to read (1..=sessions). The reference uses the 37 public sessions.
    pub sessions: usize,
    /// Trials per session (750 in NSD).
    pub trials_per_session: usize,
    /// Images with `masterordering <= test_threshold` form the test set (1000 in NSD).
    pub test_threshold: usize,
    /// Size of the stimulus set (73000 in NSD), for range checks of image ids.
    pub n_images: usize,
    /// Where the betas are read from.
    pub betas_format: BetasFormat,
    /// Read the curated caption array (at [`NsdLayout::captions`]).
    pub with_captions: bool,
    /// Sessions decoded at the same time (each holds one session's masked rows in memory).
    pub parallel_sessions: usize,
    /// One training row per image (its trials averaged, the reference) or per trial.
    pub train_trials: TrainTrials,
}

/// How the training trials become regression rows. The test images' repetitions are averaged
/// either way, as both the reference and MindEye do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrainTrials {
    /// One row per training image, the mean of its trials (Brain-Diffuser's `prepare_nsddata.py`).
    #[default]
    Averaged,
    /// One row per training trial (MindEye2's regime): an image's rows repeat its id.
    Single,
}

impl Default for AssemblyOptions {
    fn default() -> Self {
        Self {
            sessions: 37,
            trials_per_session: 750,
            test_threshold: 1000,
            n_images: 73000,
            betas_format: BetasFormat::NiftiGz,
            with_captions: true,
            parallel_sessions: 2,
            train_trials: TrainTrials::Averaged,
        }
    }
}

/// A subject's data as the reference's `prepare_nsddata.py` produces it (fMRI in f32).
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectData {
    /// Subject number (1-based).
    pub subject: u8,
    /// `(n_train, n_voxels)`: trial-averaged betas of each train image, first-appearance order.
    pub train_fmri: Array2<f32>,
    /// `(n_test, n_voxels)`.
    pub test_fmri: Array2<f32>,
    /// 0-based NSD ids of the train images, row order of `train_fmri`.
    pub train_ids: Vec<usize>,
    /// 0-based NSD ids of the test images.
    pub test_ids: Vec<usize>,
    /// Caption rows of the train images (empty table when captions were not requested).
    pub train_captions: CaptionTable,
    /// Caption rows of the test images.
    pub test_captions: CaptionTable,
}

/// Per-voxel train statistics used to z-score (mean, std with ddof = 1).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainStats {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

/// The nsdgeneral mask of `subject` (voxels > 0, numpy C order).
pub fn nsdgeneral_mask(layout: &NsdLayout, subject: u8) -> Result<VoxelMask> {
    let volume = read_volume(&layout.roi(subject, "nsdgeneral"))?;
    let mask = VoxelMask::positive(&volume);
    if mask.is_empty() {
        return Err(NsdError::format(&volume.path, "nsdgeneral selects no voxel (no value > 0)"));
    }
    Ok(mask)
}

/// Reads one session's betas, masked: `(trials_per_session * mask.len())` values, trial-major.
pub fn read_session(
    layout: &NsdLayout,
    subject: u8,
    session: usize,
    mask: &VoxelMask,
    opts: &AssemblyOptions,
) -> Result<Vec<f32>> {
    let n = mask.len();
    let mut rows = vec![0f32; opts.trials_per_session * n];
    match opts.betas_format {
        BetasFormat::NiftiGz => {
            let path = layout.betas_session(subject, session);
            let mut reader = NiftiReader::open(&path)?;
            let h = reader.header();
            if h.dims.len() != 4 || h.n_volumes() != opts.trials_per_session {
                return Err(NsdError::format(
                    &path,
                    format!("betas dims {:?}, expected (x, y, z, {})", h.dims, opts.trials_per_session),
                ));
            }
            for row in rows.chunks_exact_mut(n) {
                reader.next_masked(mask, row)?;
            }
        }
        BetasFormat::Hdf5 => {
            #[cfg(feature = "hdf5")]
            {
                let path = layout.betas_session_hdf5(subject, session);
                let betas = crate::hdf5::Hdf5Betas::open(&path)?;
                if betas.n_trials() != opts.trials_per_session {
                    return Err(NsdError::format(
                        &path,
                        format!("{} trials, expected {}", betas.n_trials(), opts.trials_per_session),
                    ));
                }
                betas.read_masked(mask, &mut rows, 50)?;
            }
            #[cfg(not(feature = "hdf5"))]
            return Err(NsdError::Config("HDF5 betas need nsd-io built with the `hdf5` feature".into()));
        }
    }
    Ok(rows)
}

/// Assembles `subject` (1-based) from the NSD files under `layout`.
pub fn assemble_subject(layout: &NsdLayout, subject: u8, opts: &AssemblyOptions) -> Result<SubjectData> {
    assemble_subject_with_progress(layout, subject, opts, &mut |_, _| {})
}

/// [`assemble_subject`], calling `progress(sessions_done, sessions)` after each session is read
/// (for a progress bar: a subject takes minutes).
pub fn assemble_subject_with_progress(
    layout: &NsdLayout,
    subject: u8,
    opts: &AssemblyOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<SubjectData> {
    if opts.sessions == 0 || opts.trials_per_session == 0 {
        return Err(NsdError::Config(format!(
            "sessions ({}) and trials_per_session ({}) must be positive",
            opts.sessions, opts.trials_per_session
        )));
    }
    let design = ExpDesign::read(&layout.expdesign())?;
    let n_trials = opts.sessions * opts.trials_per_session;
    let plan = design.split(subject, n_trials, opts.n_images, opts.test_threshold)?;
    let plan = match opts.train_trials {
        TrainTrials::Averaged => plan,
        TrainTrials::Single => plan.with_single_training_trials(),
    };
    let mask = nsdgeneral_mask(layout, subject)?;
    info!(subject, voxels = mask.len(), train = plan.train.len(), test = plan.test.len(), "assembling subject");
    let (train_fmri, test_fmri) = average_sessions(layout, subject, &mask, &plan, opts, progress)?;
    let train_ids: Vec<usize> = plan.train.iter().map(|s| s.nsd_id).collect();
    let test_ids: Vec<usize> = plan.test.iter().map(|s| s.nsd_id).collect();
    let (train_captions, test_captions) = if opts.with_captions {
        let table = CaptionTable::read_npy(&layout.captions)?;
        if table.rows.len() != opts.n_images {
            return Err(NsdError::format(
                &layout.captions,
                format!("{} caption rows, expected one per stimulus ({})", table.rows.len(), opts.n_images),
            ));
        }
        (table.select(&train_ids)?, table.select(&test_ids)?)
    } else {
        (CaptionTable::default(), CaptionTable::default())
    };
    Ok(SubjectData { subject, train_fmri, test_fmri, train_ids, test_ids, train_captions, test_captions })
}

/// Streams the sessions and averages each image's repetitions.
fn average_sessions(
    layout: &NsdLayout,
    subject: u8,
    mask: &VoxelMask,
    plan: &SplitPlan,
    opts: &AssemblyOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Array2<f32>, Array2<f32>)> {
    let n = mask.len();
    let mut train = Array2::<f32>::zeros((plan.train.len(), n));
    let mut test = Array2::<f32>::zeros((plan.test.len(), n));
    let mut seen_train = vec![0u32; plan.train.len()];
    let mut seen_test = vec![0u32; plan.test.len()];
    let sessions: Vec<usize> = (1..=opts.sessions).collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.parallel_sessions.max(1))
        .build()
        .map_err(|e| NsdError::Config(format!("cannot start the session threads: {e}")))?;
    for group in sessions.chunks(opts.parallel_sessions.max(1)) {
        let decoded: Vec<Result<Vec<f32>>> =
            pool.install(|| group.par_iter().map(|&s| read_session(layout, subject, s, mask, opts)).collect());
        // Accumulate in session order so every sum runs in trial order, as numpy's mean does.
        for (&s, rows) in group.iter().zip(decoded) {
            let rows = rows?;
            for (t, row) in rows.chunks_exact(n).enumerate() {
                let trial = (s - 1) * opts.trials_per_session + t;
                let (half, slot) = plan.trial_slot[trial];
                let (target, seen) = match half {
                    Split::Train => (&mut train, &mut seen_train),
                    Split::Test => (&mut test, &mut seen_test),
                };
                let mut dst = target.row_mut(slot);
                if seen[slot] == 0 {
                    dst.iter_mut().zip(row).for_each(|(d, &v)| *d = v);
                } else {
                    dst.iter_mut().zip(row).for_each(|(d, &v)| *d += v);
                }
                seen[slot] += 1;
            }
            info!(subject, session = s, "session read");
            progress(s, opts.sessions);
        }
    }
    for (arr, seen) in [(&mut train, &seen_train), (&mut test, &seen_test)] {
        for (mut row, &c) in arr.rows_mut().into_iter().zip(seen.iter()) {
            let c = c as f32;
            row.mapv_inplace(|v| v / c);
        }
    }
    Ok((train, test))
}

impl SubjectData {
    /// Number of voxels.
    pub fn n_voxels(&self) -> usize {
        self.train_fmri.ncols()
    }

    /// Divides train and test fMRI by `divisor` (the reference divides by 300, NSD's int16 units
    /// being percent signal change x 300), computed in f64 as numpy does on its f64 arrays.
    pub fn divide(&mut self, divisor: f64) {
        for a in [&mut self.train_fmri, &mut self.test_fmri] {
            a.mapv_inplace(|v| (v as f64 / divisor) as f32);
        }
    }

    /// Z-scores train and test fMRI per voxel with the train mean and std (ddof = 1), in f64,
    /// and returns those statistics. A voxel with zero or non-finite train std is an error.
    pub fn zscore_with_train_stats(&mut self) -> Result<TrainStats> {
        let (n, p) = self.train_fmri.dim();
        if n < 2 {
            return Err(NsdError::Shape { message: format!("z-scoring needs at least 2 train samples, got {n}") });
        }
        let mut mean = vec![0f64; p];
        for row in self.train_fmri.rows() {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut var = vec![0f64; p];
        for row in self.train_fmri.rows() {
            for ((s, &v), &m) in var.iter_mut().zip(row).zip(&mean) {
                let d = v as f64 - m;
                *s += d * d;
            }
        }
        let std: Vec<f64> = var.iter().map(|s| (s / (n - 1) as f64).sqrt()).collect();
        if let Some(v) = std.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(NsdError::NonFinite {
                path: PathBuf::from(format!("subject {} train fMRI", self.subject)),
                message: format!("train std of voxel {v} is {}, cannot z-score", std[v]),
            });
        }
        for a in [&mut self.train_fmri, &mut self.test_fmri] {
            for mut row in a.rows_mut() {
                for ((x, &m), &s) in row.iter_mut().zip(&mean).zip(&std) {
                    *x = ((*x as f64 - m) / s) as f32;
                }
            }
        }
        Ok(TrainStats { mean, std })
    }

    /// File names of the cache in `dir`, after the reference's (`nsd_train_fmriavg_nsdgeneral_sub1.npy`, ...).
    pub fn cache_paths(dir: &Path, subject: u8) -> [PathBuf; 6] {
        let n = subject;
        [
            dir.join(format!("nsd_train_fmriavg_nsdgeneral_sub{n}.npy")),
            dir.join(format!("nsd_test_fmriavg_nsdgeneral_sub{n}.npy")),
            dir.join(format!("nsd_train_ids_sub{n}.npy")),
            dir.join(format!("nsd_test_ids_sub{n}.npy")),
            dir.join(format!("nsd_train_cap_sub{n}.npy")),
            dir.join(format!("nsd_test_cap_sub{n}.npy")),
        ]
    }

    /// Saves the subject as numpy files in `dir` (f32 fMRI, i64 ids, unicode captions), each
    /// written atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let [trf, tef, tri, tei, trc, tec] = Self::cache_paths(dir, self.subject);
        save_npy(&trf, &self.train_fmri)?;
        save_npy(&tef, &self.test_fmri)?;
        save_npy(&tri, &Array1::from_iter(self.train_ids.iter().map(|&i| i as i64)))?;
        save_npy(&tei, &Array1::from_iter(self.test_ids.iter().map(|&i| i as i64)))?;
        if !self.train_captions.rows.is_empty() || !self.test_captions.rows.is_empty() {
            self.train_captions.write_npy(&trc)?;
            self.test_captions.write_npy(&tec)?;
        }
        Ok(())
    }

    /// Loads a subject saved by [`SubjectData::save`].
    pub fn load(dir: &Path, subject: u8) -> Result<Self> {
        let [trf, tef, tri, tei, trc, tec] = Self::cache_paths(dir, subject);
        let train_fmri: Array2<f32> = load_npy(&trf)?;
        let test_fmri: Array2<f32> = load_npy(&tef)?;
        let ids = |p: &Path| -> Result<Vec<usize>> {
            let a: Array1<i64> = load_npy(p)?;
            a.iter().map(|&v| usize::try_from(v).map_err(|_| NsdError::format(p, format!("negative id {v}")))).collect()
        };
        let (train_ids, test_ids) = (ids(&tri)?, ids(&tei)?);
        let caps = |p: &Path| if p.exists() { CaptionTable::read_npy(p) } else { Ok(CaptionTable::default()) };
        let (train_captions, test_captions) = (caps(&trc)?, caps(&tec)?);
        if train_fmri.nrows() != train_ids.len()
            || test_fmri.nrows() != test_ids.len()
            || train_fmri.ncols() != test_fmri.ncols()
        {
            return Err(NsdError::Shape {
                message: format!(
                    "{}: cached arrays disagree: train {:?} with {} ids, test {:?} with {} ids",
                    dir.display(),
                    train_fmri.dim(),
                    train_ids.len(),
                    test_fmri.dim(),
                    test_ids.len()
                ),
            });
        }
        Ok(Self { subject, train_fmri, test_fmri, train_ids, test_ids, train_captions, test_captions })
    }
}

/// Writes an array as `.npy`, atomically.
pub fn save_npy<A: WriteNpyExt>(path: &Path, array: &A) -> Result<()> {
    write_atomic(path, |w| array.write_npy(w).map_err(|e| NsdError::format(path, format!("npy write failed: {e}"))))
}

/// Reads an `.npy` array.
pub fn load_npy<A: ReadNpyExt>(path: &Path) -> Result<A> {
    let file = std::fs::File::open(path).map_err(|e| NsdError::io(path, e, "a cached .npy array"))?;
    A::read_npy(std::io::BufReader::new(file)).map_err(|e| NsdError::format(path, format!("npy read failed: {e}")))
}

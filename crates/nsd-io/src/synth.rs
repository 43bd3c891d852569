//! A synthetic mini-NSD: the same directory tree and file formats as NSD at a small, configurable
//! size, deterministic by seed, generated from a known linear encoding model so that later stages
//! (regression, identification, reconstruction) can be checked against a truth.
//!
//! The model: every stimulus `i` has a feature vector `z_i ~ N(0, I_d)`; its image is rendered
//! from `z_i` (a sum of smooth colour gratings weighted by the features); subject `s` has weights
//! `W_s ~ N(0, 1)` of shape `(d, n_voxels)` over its nsdgeneral voxels; on every trial showing
//! image `i`, voxel `v` responds `r = z_i . W_s[:, v] / sqrt(d) + noise_sd * e`, `e ~ N(0, 1)`,
//! stored as int16 `round(beta_scale * r)` (NSD's percent-signal-change x 300 convention). Voxels
//! in the brain outside nsdgeneral carry noise only; voxels outside the brain are 0.
//!
//! A caller can replace the gratings (and the features) with its own stimuli through
//! [`GroundTruth::with_stimuli`] and [`write_synthetic_nsd_from`], keeping the design, the encoding
//! weights and the file formats: brain-diffuser's demo decodes its stimuli with its own VDVAE.
//!
//! ```no_run
//! use nsd_io::synth::{SynthConfig, write_synthetic_nsd};
//! let nsd = write_synthetic_nsd(std::path::Path::new("/tmp/mini-nsd"), &SynthConfig::default())?;
//! let subject = nsd_io::assemble_subject(&nsd.layout, 1, &nsd.config.assembly_options())?;
//! let truth = nsd.truth.subject(1).expect("subject 1 was written");
//! assert_eq!(subject.n_voxels(), truth.n_voxels());
//! # Ok::<(), nsd_io::NsdError>(())
//! ```

use std::path::Path;

use ndarray::{Array2, Array3, ArrayView2};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use tracing::info;

use crate::atomic::{werr, write_atomic};
use crate::captions::CaptionTable;
use crate::error::{NsdError, Result};
use crate::expdesign::ExpDesign;
use crate::layout::NsdLayout;
use crate::nifti::{NiftiWriter, Volume, VoxelMask, write_nifti};
use crate::subject::{AssemblyOptions, BetasFormat};

/// Size and randomness of a synthetic NSD.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Seed of every random draw.
    pub seed: u64,
    /// Subjects to write (1..=8); `subjectim` always has 8 rows, as in NSD.
    pub subjects: Vec<u8>,
    /// Sessions per subject (NSD: 37 public).
    pub sessions: usize,
    /// Trials per session (NSD: 750).
    pub trials_per_session: usize,
    /// Volume shape `[nx, ny, nz]` (NSD 1.8 mm: 81 x 104 x 83).
    pub volume: [usize; 3],
    /// Size of the stimulus set (NSD: 73000).
    pub n_images: usize,
    /// Images per subject, the columns of `subjectim` (NSD: 10000).
    pub images_per_subject: usize,
    /// Shared images, the first columns of `subjectim`, which form the test set (NSD: 1000).
    pub n_shared: usize,
    /// Height and width of the square stimuli (NSD: 425).
    pub image_size: usize,
    /// Dimension `d` of the ground-truth features.
    pub n_features: usize,
    /// Noise standard deviation relative to the unit-variance signal.
    pub noise_sd: f32,
    /// int16 units per response unit (NSD: 300).
    pub beta_scale: f32,
    /// gzip level of the betas files (1 is fast; NSD's files are larger).
    pub gzip_level: u32,
    /// Also write `betas_sessionYY.hdf5` (needs the `hdf5` feature).
    pub write_hdf5_betas: bool,
    /// Write the stimulus brick `nsd_stimuli.hdf5` (only with the `hdf5` feature; at full size it
    /// is 39.6 GB, so turn it off for memory or speed measurements of the betas).
    pub write_stimuli: bool,
}

impl Default for SynthConfig {
    /// A mini-NSD that writes in well under a second: 1 subject, 2 sessions of 60 trials,
    /// a 12x14x10 volume, 400 stimuli of 32x32, 8 features.
    fn default() -> Self {
        Self {
            seed: 0,
            subjects: vec![1],
            sessions: 2,
            trials_per_session: 60,
            volume: [12, 14, 10],
            n_images: 400,
            images_per_subject: 60,
            n_shared: 12,
            image_size: 32,
            n_features: 8,
            noise_sd: 0.3,
            beta_scale: 300.0,
            gzip_level: 1,
            write_hdf5_betas: false,
            write_stimuli: true,
        }
    }
}

impl SynthConfig {
    /// The full NSD size for one subject (volume, trials, stimuli), `sessions` sessions.
    pub fn full_size(sessions: usize) -> Self {
        Self {
            sessions,
            trials_per_session: 750,
            volume: [81, 104, 83],
            n_images: 73000,
            images_per_subject: 10000,
            n_shared: 1000,
            image_size: 425,
            n_features: 32,
            ..Self::default()
        }
    }

    /// Assembly options that match this dataset (sessions, trials, test threshold, stimuli).
    pub fn assembly_options(&self) -> AssemblyOptions {
        AssemblyOptions {
            sessions: self.sessions,
            trials_per_session: self.trials_per_session,
            test_threshold: self.n_shared,
            n_images: self.n_images,
            betas_format: BetasFormat::NiftiGz,
            with_captions: true,
            parallel_sessions: 2,
            train_trials: crate::TrainTrials::Averaged,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(NsdError::Config(m));
        if self.subjects.is_empty() || self.subjects.iter().any(|&s| !(1..=8).contains(&s)) {
            return bad(format!("subjects {:?} must be a non-empty list of 1..=8", self.subjects));
        }
        if self.sessions == 0 || self.trials_per_session == 0 || self.n_features == 0 || self.image_size == 0 {
            return bad("sessions, trials_per_session, n_features and image_size must be positive".into());
        }
        if self.volume.iter().any(|&d| !(3..=32767).contains(&d)) {
            return bad(format!("volume {:?}: every dim must be in 3..=32767", self.volume));
        }
        if self.n_shared == 0 || self.n_shared >= self.images_per_subject || self.images_per_subject > self.n_images {
            return bad(format!(
                "need 0 < n_shared ({}) < images_per_subject ({}) <= n_images ({})",
                self.n_shared, self.images_per_subject, self.n_images
            ));
        }
        if self.sessions * self.trials_per_session > 3 * self.images_per_subject {
            return bad(format!(
                "{} trials exceed 3 showings of each of the {} images per subject",
                self.sessions * self.trials_per_session,
                self.images_per_subject
            ));
        }
        if !(self.noise_sd >= 0.0 && self.noise_sd.is_finite() && self.beta_scale > 0.0 && self.beta_scale.is_finite())
        {
            return bad(format!("noise_sd {} must be >= 0 and beta_scale {} > 0", self.noise_sd, self.beta_scale));
        }
        if self.write_hdf5_betas && !cfg!(feature = "hdf5") {
            return bad("write_hdf5_betas needs nsd-io built with the `hdf5` feature".into());
        }
        Ok(())
    }
}

/// The ground truth of one synthetic subject.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectTruth {
    /// Subject number.
    pub subject: u8,
    /// The nsdgeneral mask written for this subject.
    pub mask: VoxelMask,
    /// Encoding weights `(n_features, n_voxels)`, voxels in nsdgeneral (numpy C) order.
    pub weights: Array2<f32>,
}

impl SubjectTruth {
    /// Number of nsdgeneral voxels.
    pub fn n_voxels(&self) -> usize {
        self.weights.ncols()
    }

    /// The noiseless response to `features` (`(n, d)`), in response units (betas / beta_scale):
    /// `features . weights / sqrt(d)`.
    pub fn response(&self, features: ArrayView2<f32>) -> Array2<f32> {
        let d = self.weights.nrows() as f32;
        features.dot(&self.weights) / d.sqrt()
    }
}

/// Everything the synthetic data was generated from.
#[derive(Debug, Clone, PartialEq)]
pub struct GroundTruth {
    /// Features of every stimulus, `(n_images, n_features)`, row = 0-based NSD id.
    pub features: Array2<f32>,
    /// The experimental design written to `nsd_expdesign.mat`.
    pub design: ExpDesign,
    /// Per-subject truth, in the order of [`SynthConfig::subjects`].
    pub subjects: Vec<SubjectTruth>,
    /// Where the stimulus images come from.
    pictures: Pictures,
    image_size: usize,
}

/// The stimulus images of a [`GroundTruth`].
#[derive(Debug, Clone, PartialEq)]
enum Pictures {
    /// Colour gratings weighted by the features: patterns `(n_features, size, size, 3)`, flattened
    /// per feature.
    Gratings(Vec<Vec<f32>>),
    /// Images supplied by [`GroundTruth::with_stimuli`], `size x size x 3` u8 each.
    Given(Vec<Vec<u8>>),
}

impl GroundTruth {
    /// The truth of `subject`, if it was written.
    pub fn subject(&self, subject: u8) -> Option<&SubjectTruth> {
        self.subjects.iter().find(|s| s.subject == subject)
    }

    /// The image of stimulus `nsd_id` (`size x size x 3` u8), as written to `imgBrick`.
    pub fn image(&self, nsd_id: usize) -> Result<Array3<u8>> {
        let n = self.features.nrows();
        if nsd_id >= n {
            return Err(NsdError::OutOfRange { message: format!("image id {nsd_id} >= {n} synthetic stimuli") });
        }
        let s = self.image_size;
        Array3::from_shape_vec((s, s, 3), self.render(nsd_id)).map_err(|e| NsdError::Shape { message: e.to_string() })
    }

    /// The same truth (design, subjects and their encoding weights) with other stimuli: `images`
    /// (one `size x size x 3` image per stimulus, `size` = [`SynthConfig::image_size`]) and the
    /// `features` (`(n_images, n_features)`) that drive the responses to them and the captions.
    /// This is how a caller makes a world whose images come from a model of its own (for example
    /// decoded by a generative model from the features), while the fMRI stay the known linear map.
    pub fn with_stimuli(self, features: Array2<f32>, images: Vec<Array3<u8>>) -> Result<Self> {
        let (n, d) = (self.features.nrows(), self.features.ncols());
        if features.dim() != (n, d) {
            return Err(NsdError::Shape {
                message: format!("stimulus features {:?}: expected ({n}, {d}) (n_images, n_features)", features.dim()),
            });
        }
        let s = self.image_size;
        if images.len() != n {
            return Err(NsdError::Shape { message: format!("{} stimulus images: expected {n}", images.len()) });
        }
        let mut pictures = Vec::with_capacity(n);
        for (id, image) in images.into_iter().enumerate() {
            if image.dim() != (s, s, 3) {
                return Err(NsdError::Shape {
                    message: format!("stimulus image {id}: shape {:?}, expected ({s}, {s}, 3)", image.dim()),
                });
            }
            pictures.push(image.as_standard_layout().iter().copied().collect());
        }
        Ok(Self { features, pictures: Pictures::Given(pictures), ..self })
    }

    fn render(&self, nsd_id: usize) -> Vec<u8> {
        let patterns = match &self.pictures {
            Pictures::Given(images) => return images[nsd_id].clone(),
            Pictures::Gratings(patterns) => patterns,
        };
        let z = self.features.row(nsd_id);
        let amp = 90.0 / (patterns.len() as f32).sqrt();
        let len = self.image_size * self.image_size * 3;
        (0..len)
            .map(|p| {
                let v: f32 = patterns.iter().zip(z.iter()).map(|(b, &zk)| b[p] * zk).sum();
                (128.0 + amp * v).round().clamp(0.0, 255.0) as u8
            })
            .collect()
    }
}

/// A written synthetic NSD: where it is, how it was made, and its truth.
#[derive(Debug, Clone)]
pub struct SynthNsd {
    /// Paths of the written files (captions at `<root>/annots/COCO_73k_annots_curated.npy`).
    pub layout: NsdLayout,
    /// The configuration it was written with.
    pub config: SynthConfig,
    /// The generating model.
    pub truth: GroundTruth,
}

fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

const STREAM_FEATURES: u64 = 1;
const STREAM_DESIGN: u64 = 2;
const STREAM_PATTERNS: u64 = 3;
const STREAM_WEIGHTS: u64 = 100;
const STREAM_SESSION: u64 = 1_000;

/// The ROI volumes of one subject: `nsdgeneral` (-1 outside the brain, 0 in the brain, 1 in the
/// region) and label volumes in the same convention as NSD's (`prf-visualrois` 1..7,
/// `prf-eccrois` 1..5, `floc-*` 1..3; 0 elsewhere in the brain, -1 outside).
pub fn roi_volumes(dims: [usize; 3], subject: u8) -> Vec<(&'static str, Vec<i16>)> {
    let [nx, ny, nz] = dims;
    let mut brain = vec![false; nx * ny * nz];
    let mut general = vec![false; nx * ny * nz];
    // nsdgeneral is a thin posterior shell under the brain surface (about 2.5 voxels deep), so a
    // full-size volume gets about as many voxels as NSD's (~13k-16k); subjects differ by a small
    // shift of the posterior boundary, so their voxel counts differ as in NSD.
    let cut = 0.4 + 0.03 * (subject as f32 - 1.0);
    let radius = 0.95f32.sqrt();
    let half_min = nx.min(ny).min(nz) as f32 / 2.0;
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let f = i + nx * (j + ny * k);
                let u = |x: usize, n: usize| (x as f32 + 0.5) / n as f32 * 2.0 - 1.0;
                let (x, y, z) = (u(i, nx), u(j, ny), u(k, nz));
                let r = (x * x + y * y + z * z).sqrt();
                brain[f] = r <= radius;
                general[f] = brain[f] && (radius - r) * half_min < 2.5 && (y + 1.0) / 2.0 < cut;
            }
        }
    }
    let label = |f: usize, inside: bool, l: i16| {
        if !brain[f] {
            -1
        } else if inside {
            l
        } else {
            0
        }
    };
    let coord = |f: usize| (f % nx, (f / nx) % ny, f / (nx * ny));
    let n = nx * ny * nz;
    let nsdgeneral = (0..n).map(|f| label(f, general[f], 1)).collect();
    let visual = (0..n)
        .map(|f| {
            let (_, j, _) = coord(f);
            label(f, general[f], 1 + (j * 7 / ny).min(6) as i16)
        })
        .collect();
    let ecc = (0..n)
        .map(|f| {
            let (i, _, k) = coord(f);
            let r = ((i as f32 / nx as f32 - 0.5).powi(2) + (k as f32 / nz as f32 - 0.5).powi(2)).sqrt();
            label(f, general[f], 1 + ((r * 10.0) as i16).min(4))
        })
        .collect();
    let floc = |axis: usize| -> Vec<i16> {
        (0..n)
            .map(|f| {
                let (i, j, k) = coord(f);
                let c = [i * 4 / nx, j * 4 / ny, k * 4 / nz][axis];
                label(f, general[f] && c % 2 == 1, 1 + (c / 2) as i16)
            })
            .collect()
    };
    vec![
        ("nsdgeneral", nsdgeneral),
        ("prf-visualrois", visual),
        ("prf-eccrois", ecc),
        ("floc-faces", floc(0)),
        ("floc-words", floc(1)),
        ("floc-places", floc(2)),
        ("floc-bodies", floc(0).iter().map(|&v| if v > 0 { 3 - v } else { v }).collect()),
    ]
}

/// Generates the truth (features, design, patterns, weights) without writing anything.
pub fn ground_truth(config: &SynthConfig) -> Result<GroundTruth> {
    config.validate()?;
    let d = config.n_features;
    let mut r = rng(config.seed, STREAM_FEATURES);
    let features = Array2::from_shape_simple_fn((config.n_images, d), || StandardNormal.sample(&mut r));
    let design = design(config);
    let s = config.image_size;
    let mut r = rng(config.seed, STREAM_PATTERNS);
    let patterns = (0..d)
        .map(|_| {
            let (fx, fy): (f32, f32) = (r.random_range(0.5..3.0), r.random_range(0.5..3.0));
            let phase: f32 = r.random_range(0.0..std::f32::consts::TAU);
            let color: [f32; 3] = [r.random_range(-1.0..1.0), r.random_range(-1.0..1.0), r.random_range(-1.0..1.0)];
            let mut p = Vec::with_capacity(s * s * 3);
            for y in 0..s {
                for x in 0..s {
                    let t = std::f32::consts::TAU * (fx * x as f32 + fy * y as f32) / s as f32 + phase;
                    let v = t.cos();
                    p.extend(color.iter().map(|c| c * v));
                }
            }
            p
        })
        .collect();
    let subjects = config
        .subjects
        .iter()
        .map(|&subject| {
            let rois = roi_volumes(config.volume, subject);
            let general = Volume {
                path: "nsdgeneral".into(),
                dims: config.volume,
                data: rois[0].1.iter().map(|&v| v as f64).collect(),
            };
            let mask = VoxelMask::positive(&general);
            if mask.is_empty() {
                return Err(NsdError::Config(format!(
                    "volume {:?} is too small to hold an nsdgeneral region",
                    config.volume
                )));
            }
            let mut r = rng(config.seed, STREAM_WEIGHTS + subject as u64);
            let weights = Array2::from_shape_simple_fn((d, mask.len()), || StandardNormal.sample(&mut r));
            Ok(SubjectTruth { subject, mask, weights })
        })
        .collect::<Result<_>>()?;
    Ok(GroundTruth { features, design, subjects, pictures: Pictures::Gratings(patterns), image_size: s })
}

/// NSD-like design: shared images first in every `subjectim` row; each image shown up to 3 times
/// in a shuffled order.
fn design(c: &SynthConfig) -> ExpDesign {
    let mut r = rng(c.seed, STREAM_DESIGN);
    let mut ids: Vec<usize> = (1..=c.n_images).collect();
    ids.shuffle(&mut r);
    let shared: Vec<usize> = ids[..c.n_shared].to_vec();
    let pool: Vec<usize> = ids[c.n_shared..].to_vec();
    let subjectim = (0..8)
        .map(|_| {
            let mut own = pool.clone();
            own.shuffle(&mut r);
            shared.iter().copied().chain(own.into_iter().take(c.images_per_subject - c.n_shared)).collect()
        })
        .collect();
    let mut order: Vec<usize> = (1..=c.images_per_subject).flat_map(|m| [m, m, m]).collect();
    order.shuffle(&mut r);
    order.truncate(c.sessions * c.trials_per_session);
    let mut sharedix = shared;
    sharedix.sort_unstable();
    ExpDesign { masterordering: order, subjectim, sharedix }
}

/// Writes a synthetic NSD under `root` (any existing files of the same names are replaced) and
/// returns its layout and truth. Every file is written atomically.
pub fn write_synthetic_nsd(root: &Path, config: &SynthConfig) -> Result<SynthNsd> {
    write_synthetic_nsd_from(root, config, ground_truth(config)?)
}

/// [`write_synthetic_nsd`] from a given truth: [`ground_truth`] of `config`, possibly with other
/// stimuli ([`GroundTruth::with_stimuli`]).
pub fn write_synthetic_nsd_from(root: &Path, config: &SynthConfig, truth: GroundTruth) -> Result<SynthNsd> {
    config.validate()?;
    if truth.features.dim() != (config.n_images, config.n_features) || truth.image_size != config.image_size {
        return Err(NsdError::Config(format!(
            "the truth holds {:?} features of {t}x{t} images; the configuration asks for ({}, {}) of {c}x{c}",
            truth.features.dim(),
            config.n_images,
            config.n_features,
            t = truth.image_size,
            c = config.image_size
        )));
    }
    let layout = NsdLayout::new(root);
    info!(root = %root.display(), ?config, "writing synthetic NSD");
    truth.design.write(&layout.expdesign())?;
    write_captions(&layout, config, &truth)?;
    #[cfg(feature = "hdf5")]
    if config.write_stimuli {
        let s = config.image_size;
        crate::hdf5::write_stimuli(&layout.stimuli(), config.n_images, s, s, |id| truth.render(id))?;
    }
    for st in &truth.subjects {
        for (name, data) in roi_volumes(config.volume, st.subject) {
            write_nifti(&layout.roi(st.subject, name), &config.volume, &data, [1.8; 3], (1.0, 0.0))?;
        }
        let trials =
            truth.design.trial_images(st.subject, config.sessions * config.trials_per_session, config.n_images)?;
        (1..=config.sessions)
            .into_par_iter()
            .try_for_each(|session| write_session(&layout, config, &truth, st, &trials, session))?;
    }
    Ok(SynthNsd { layout, config: config.clone(), truth })
}

fn write_session(
    layout: &NsdLayout,
    c: &SynthConfig,
    truth: &GroundTruth,
    st: &SubjectTruth,
    trials: &[(usize, usize)],
    session: usize,
) -> Result<()> {
    let [nx, ny, nz] = c.volume;
    let rois = roi_volumes(c.volume, st.subject);
    let brain: Vec<bool> = rois[0].1.iter().map(|&v| v >= 0).collect();
    let mut r = rng(c.seed, STREAM_SESSION + 1000 * st.subject as u64 + session as u64);
    let path = layout.betas_session(st.subject, session);
    let mut writer =
        NiftiWriter::create::<i16>(&path, &[nx, ny, nz, c.trials_per_session], [1.8; 3], (1.0, 0.0), c.gzip_level)?;
    let scale = 1.0 / (c.n_features as f32).sqrt();
    let to_i16 = |x: f32| (x * c.beta_scale).round().clamp(i16::MIN as f32, i16::MAX as f32) as i16;
    let mut volumes = Vec::new();
    let mut vol = vec![0i16; nx * ny * nz];
    for t in 0..c.trials_per_session {
        let (_, id) = trials[(session - 1) * c.trials_per_session + t];
        let z = truth.features.row(id);
        for (f, v) in vol.iter_mut().enumerate() {
            *v = if brain[f] {
                let e: f32 = StandardNormal.sample(&mut r);
                to_i16(c.noise_sd * e)
            } else {
                0
            };
        }
        for (col, &off) in st.mask.offsets().iter().enumerate() {
            let w = st.weights.column(col);
            let resp: f32 = z.iter().zip(w.iter()).map(|(a, b)| a * b).sum::<f32>() * scale;
            let e: f32 = StandardNormal.sample(&mut r);
            vol[off] = to_i16(resp + c.noise_sd * e);
        }
        writer.write_volume(&vol)?;
        if c.write_hdf5_betas {
            volumes.push(vol.clone());
        }
    }
    writer.finish()?;
    #[cfg(feature = "hdf5")]
    if c.write_hdf5_betas {
        crate::hdf5::write_betas(&layout.betas_session_hdf5(st.subject, session), c.volume, &volumes)?;
    }
    drop(volumes);
    Ok(())
}

const NOUNS: [&str; 8] = ["stripes", "waves", "spots", "rings", "a grid", "clouds", "a field", "a tower"];
const TONES: [&str; 4] = ["a dark", "a dim", "a bright", "a vivid"];

/// Captions: 5 per image, derived from the features; every 7th image has an empty 5th caption,
/// as some curated NSD rows do.
fn captions_of(z: ndarray::ArrayView1<f32>, id: usize) -> Vec<String> {
    let top = z.iter().enumerate().fold(0, |b, (k, &v)| if v > z[b] { k } else { b });
    let tone = TONES[((z[0].clamp(-1.99, 1.99) + 2.0) as usize).min(3)];
    let noun = NOUNS[top % NOUNS.len()];
    (0..5)
        .map(
            |j| if j == 4 && id % 7 == 0 { String::new() } else { format!("{tone} picture of {noun}, view {}", j + 1) },
        )
        .collect()
}

fn write_captions(layout: &NsdLayout, c: &SynthConfig, truth: &GroundTruth) -> Result<()> {
    let rows: Vec<Vec<String>> = (0..c.n_images).map(|id| captions_of(truth.features.row(id), id)).collect();
    CaptionTable { rows: rows.clone() }.write_npy(&layout.captions)?;
    // The COCO alternative: stim info CSV (nsdId -> cocoId) and a captions JSON without '' entries.
    let csv_path = layout.stim_info_csv();
    write_atomic(&csv_path, |w| {
        writeln!(w, ",cocoId,cocoSplit,cropBox,loss,nsdId,flagged,BOLD5000,shared1000").map_err(werr(&csv_path))?;
        let shared: std::collections::HashSet<usize> = truth.design.sharedix.iter().map(|&i| i - 1).collect();
        for id in 0..c.n_images {
            let shared = if shared.contains(&id) { "True" } else { "False" };
            writeln!(w, "{id},{},train2017,\"(0, 0, 0.125, 0.125)\",0.0,{id},False,False,{shared}", coco_id(id))
                .map_err(werr(&csv_path))?;
        }
        Ok(())
    })?;
    let json_path = layout.coco_captions("train");
    let annotations: Vec<serde_json::Value> = rows
        .iter()
        .enumerate()
        .flat_map(|(id, caps)| caps.iter().filter(|s| !s.is_empty()).map(move |s| (id, s.clone())))
        .enumerate()
        .map(|(k, (id, caption))| serde_json::json!({"image_id": coco_id(id), "id": k, "caption": caption}))
        .collect();
    let doc = serde_json::json!({"annotations": annotations});
    write_atomic(&json_path, |w| {
        serde_json::to_writer(w, &doc).map_err(|e| NsdError::format(&json_path, e.to_string()))
    })
}

/// The synthetic COCO id of stimulus `nsd_id`.
pub fn coco_id(nsd_id: usize) -> u64 {
    100_000 + 7 * nsd_id as u64
}

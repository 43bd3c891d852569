//! Synthetic data at NSD subject-1 size for measuring the `brain-diffuser` steps that need no
//! models (`fit`, `predict`, `weights-roi`, `average`): writes into a folder what `prepare` and
//! `extract` would have written for subject 1, without NSD files and without models.
//!
//! ```text
//! cargo run --release -p brain-diffuser --example fullsize_steps -- /tmp/bd-fullsize
//! brain-diffuser --run /tmp/bd-fullsize/run --config /tmp/bd-fullsize/config.toml --subjects 1 --device cpu fit
//! ```
//!
//! It writes (about 14.3 GB, resumable: whatever is already there is kept):
//! - `<out>/config.toml` and `<out>/run/config.toml`: the paper's configuration with `subjects = [1]`;
//! - `<out>/run/subj01/fmri/`: nsd-io's subject cache (`SubjectData::save`): train 8,859 x 15,724 and
//!   test 982 x 15,724 f32, z-scored with training statistics as `prepare` does, NSD ids, no
//!   captions; the `settings.toml` that `prepare` records; `roi_patterns.npy` (13 x 15,724, binary);
//! - `<out>/run/subj01/features/<group>/<split>/`: 64-row feature chunks for vdvae (91,168 columns),
//!   clip-vision (257 x 768 = 197,376) and clip-text (77 x 768 = 59,136), train and test, written by
//!   the library's own `extract_rows` (so chunk names and `settings.toml` are exactly `extract`'s),
//!   with a synthetic encoder named `synthetic-full-size`, one chunk at a time.
//!
//! The data follow a seeded linear model, so that the regressions have something to find:
//! every stimulus `i` has `K = 16` latent values `z_i ~ U(-sqrt 3, sqrt 3)` (unit variance). The
//! voxels are cut into `K` contiguous bands; voxel `v` of band `j` is `0.8 z_ij + 0.6 e` (unit
//! variance before z-scoring), `e` unit-variance uniform noise. Each feature group reads a band of
//! latents (vdvae `0..10`, clip-vision `6..16`, clip-text `10..16`) through a fixed random matrix
//! `B` (`features = z B + e`, signal and noise of unit variance each). The ROI patterns are 13
//! overlapping contiguous voxel ranges. Every random number comes from SplitMix64 seeded by
//! (seed, stream, row), so a row's values do not depend on chunking or resumption.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use brain_diffuser::shard::Shard;
use brain_diffuser::workflow::extract::extract_rows;
use brain_diffuser::workflow::{DataSplit, RunDir, check_settings, save_npy, write_text};
use brain_diffuser::{Config, Encoder, StageError, TargetGroup};
use ndarray::Array2;
use nsd_io::{CaptionTable, SubjectData};

const TRAIN: usize = 8_859;
const TEST: usize = 982;
const VOXELS: usize = 15_724;
const LATENTS: usize = 16;
const ROIS: usize = 13;
const SEED: u64 = 2023;
const ENCODER: &str = "synthetic-full-size";

/// SplitMix64: small, fast, and good enough for synthetic data.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64, row: u64) -> Self {
        let mut r = Rng(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ row.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next();
        r
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform on (-sqrt 3, sqrt 3): mean 0, variance 1.
    fn unit(&mut self) -> f32 {
        let u = (self.next() >> 40) as f32 / (1u64 << 24) as f32;
        (u * 2.0 - 1.0) * 3f32.sqrt()
    }
}

/// Random-number streams.
const STREAM_LATENT_TRAIN: u64 = 1;
const STREAM_LATENT_TEST: u64 = 2;
const STREAM_FMRI_TRAIN: u64 = 3;
const STREAM_FMRI_TEST: u64 = 4;
const STREAM_LOADINGS: u64 = 10;
const STREAM_NOISE: u64 = 20;

fn latents(rows: usize, stream: u64) -> Array2<f32> {
    let mut out = Array2::zeros((rows, LATENTS));
    for (i, mut row) in out.rows_mut().into_iter().enumerate() {
        let mut rng = Rng::new(SEED, stream, i as u64);
        row.iter_mut().for_each(|v| *v = rng.unit());
    }
    out
}

fn fmri(z: &Array2<f32>, stream: u64) -> Array2<f32> {
    let mut out = Array2::zeros((z.nrows(), VOXELS));
    for (i, mut row) in out.rows_mut().into_iter().enumerate() {
        let mut rng = Rng::new(SEED, stream, i as u64);
        for (v, x) in row.iter_mut().enumerate() {
            *x = 0.8 * z[[i, v * LATENTS / VOXELS]] + 0.6 * rng.unit();
        }
    }
    out
}

/// The latent band each group reads.
/// The latent band each group reads (the example's groups are the paper's three: the last arm is
/// CLIP-Text's).
fn band(group: &TargetGroup) -> Range<usize> {
    match *group {
        TargetGroup::VDVAE => 0..10,
        TargetGroup::CLIP_VISION => 6..16,
        _ => 10..16,
    }
}

fn stream_id(group: &TargetGroup) -> u64 {
    match *group {
        TargetGroup::VDVAE => 0,
        TargetGroup::CLIP_VISION => 1,
        _ => 2,
    }
}

/// A stand-in for a feature encoder: row `i` of a split is `z_i B + e_i`.
struct SyntheticEncoder {
    shape: Vec<usize>,
    /// `LATENTS x d`, zero outside the group's band.
    loadings: Array2<f32>,
    /// The split's latents.
    z: Array2<f32>,
    noise_stream: u64,
    label: String,
    started: Instant,
}

impl SyntheticEncoder {
    fn new(group: TargetGroup, split: DataSplit, z: &Array2<f32>) -> Self {
        let shape = match group {
            TargetGroup::VDVAE => vec![91_168],
            TargetGroup::CLIP_VISION => vec![257, 768],
            _ => vec![77, 768],
        };
        let d: usize = shape.iter().product();
        let b = band(&group);
        let scale = 1.0 / (b.len() as f32).sqrt();
        let mut loadings = Array2::zeros((LATENTS, d));
        for j in b {
            let mut rng = Rng::new(SEED, STREAM_LOADINGS + stream_id(&group), j as u64);
            loadings.row_mut(j).iter_mut().for_each(|v| *v = scale * rng.unit());
        }
        let split_id = if split == DataSplit::Train { 0 } else { 1 };
        Self {
            shape,
            loadings,
            z: z.clone(),
            noise_stream: STREAM_NOISE + 2 * stream_id(&group) + split_id,
            label: format!("{} {}", group.name(), split.name()),
            started: Instant::now(),
        }
    }
}

impl Encoder for SyntheticEncoder {
    type Input = usize;

    fn name(&self) -> &str {
        ENCODER
    }

    fn feature_shape(&self) -> &[usize] {
        &self.shape
    }

    fn encode(&self, batch: &[usize]) -> Result<Array2<f32>, StageError> {
        let first = batch.first().copied().unwrap_or(0);
        self.encode_at(first, batch)
    }

    fn encode_at(&self, _first: usize, batch: &[usize]) -> Result<Array2<f32>, StageError> {
        let rows: Vec<usize> = batch.to_vec();
        let z = self.z.select(ndarray::Axis(0), &rows);
        let mut out = z.dot(&self.loadings);
        for (mut row, &i) in out.rows_mut().into_iter().zip(&rows) {
            let mut rng = Rng::new(SEED, self.noise_stream, i as u64);
            row.iter_mut().for_each(|v| *v += rng.unit());
        }
        let end = rows.last().map_or(0, |&i| i + 1);
        if end % (64 * 16) == 0 || end == self.z.nrows() {
            eprintln!(
                "  {:<18} rows {:>5}/{:<5} {:>7.1} s ({} columns)",
                self.label,
                end,
                self.z.nrows(),
                self.started.elapsed().as_secs_f64(),
                out.ncols()
            );
        }
        Ok(out)
    }
}

fn run(out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let mut config = Config::default();
    config.data.subjects = vec![1];
    std::fs::create_dir_all(out)?;
    write_text(&out.join("config.toml"), &config.to_toml())?;
    let run = RunDir::new(out.join("run"));
    write_text(&run.config_file(), &config.to_toml())?;
    let dir = run.subject(1);

    // The subject cache, as `prepare` writes it (same settings record).
    let d = &config.data;
    let settings = format!(
        "subject = {}\nsessions = {}\ntrials_per_session = {}\ntest_threshold = {}\nn_images = {}\n\
         fmri_divisor = {}\nzscore = \"train statistics\"\n",
        dir.subject, d.sessions, d.trials_per_session, d.test_threshold, d.n_images, d.fmri_divisor
    );
    check_settings(&dir.fmri(), &settings)?;
    let z_train = latents(TRAIN, STREAM_LATENT_TRAIN);
    let z_test = latents(TEST, STREAM_LATENT_TEST);
    if SubjectData::cache_paths(&dir.fmri(), 1)[..4].iter().all(|p| p.exists()) {
        eprintln!("subject cache present in {}", dir.fmri().display());
    } else {
        eprintln!("subject cache: train {TRAIN} x {VOXELS}, test {TEST} x {VOXELS} f32");
        // Test images: NSD ids below 1,000 (the shared images); training images: the next ids.
        let mut subject = SubjectData {
            subject: 1,
            train_fmri: fmri(&z_train, STREAM_FMRI_TRAIN),
            test_fmri: fmri(&z_test, STREAM_FMRI_TEST),
            train_ids: (1_000..1_000 + TRAIN).collect(),
            test_ids: (0..TEST).collect(),
            train_captions: CaptionTable::default(),
            test_captions: CaptionTable::default(),
        };
        subject.zscore_with_train_stats()?;
        subject.save(&dir.fmri())?;
        eprintln!("  written in {:.1} s", started.elapsed().as_secs_f64());
    }
    if !dir.roi_patterns().exists() {
        let patterns = Array2::from_shape_fn((ROIS, VOXELS), |(r, v)| {
            let start = r * VOXELS / ROIS;
            f32::from(u8::from(v >= start && v < start + VOXELS / 8))
        });
        save_npy(&dir.roi_patterns(), &patterns)?;
    }

    // The features, as `extract` writes them.
    for group in &TargetGroup::PAPER {
        for (split, z) in [(DataSplit::Train, &z_train), (DataSplit::Test, &z_test)] {
            let encoder = SyntheticEncoder::new(group.clone(), split, z);
            let label = format!("subj01 {} {}", group.name(), split.name());
            let done = extract_rows(
                &dir.features(group, split),
                &encoder,
                z.nrows(),
                Shard::WHOLE,
                &|range| Ok(range.collect()),
                &label,
            )?;
            eprintln!(
                "{label}: {} chunks written, {} already there ({:.1} s in all)",
                done.computed,
                done.reused,
                started.elapsed().as_secs_f64()
            );
        }
    }
    println!("run folder {} and configuration {} ready", run.root().display(), out.join("config.toml").display());
    Ok(())
}

fn main() -> ExitCode {
    // Logging, and threads that share the CPUs well (docs/ARCHITECTURE.md, "Threads").
    if let Err(e) = brain_diffuser::runtime::init_program("info") {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let out = std::env::args_os().nth(1).map_or_else(|| PathBuf::from("/tmp/bd-fullsize"), PathBuf::from);
    match run(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

//! The pipeline's configuration: every constant of the paper and every faithful/improved option, in
//! one TOML file.
//!
//! [`Config::default`] reproduces the paper (and the reference code where the paper is silent);
//! `configs/paper.toml` spells the same values out. Each reference quirk is a named option whose
//! default is the faithful behaviour, except where the quirk is a plain bug (the ROI V1-V4 masks).
//! Unknown keys and invalid values are errors that name the key.
//!
//! Every key is read by a step, and every key that changes a step's outputs is in that step's
//! settings record, so that outputs made with another value are refused (`tests/config_keys.rs`
//! changes each key of `configs/paper.toml` and checks it). Keys that state a fixed property of the
//! data or the models (`data.stimulus_size`, `vdvae.image_size`, `clip.vision_tokens`,
//! `clip.text_tokens`, `clip.embedding_dim`) are checked against the files, and a disagreement is
//! refused naming the key. Where a stage crate has a type for a setting, the section uses it:
//! [`vdvae::PosteriorDraw`], [`vdvae::OutputDraw`], [`versatile_diffusion::Img2ImgSettings`] (with
//! its [`versatile_diffusion::NoiseTimestep`]) and [`metrics::protocol::SsimVariant`]. The sections
//! are named `*Section` so that they are never mistaken for the crates' model configurations
//! (`vdvae::VdvaeConfig`, `clip::ClipConfig`).

use std::path::Path;

use metrics::protocol::SsimVariant;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use vdvae::{DecodeOptions, EncodeOptions, OutputDraw, PosteriorDraw};
use versatile_diffusion::{Img2ImgSettings, NoiseTimestep};

/// A configuration value that cannot be used, or a file that is not a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key or a value of the wrong type.
    #[error("configuration {origin}: {message}")]
    Parse { origin: String, message: String },
    /// A value is of the right type but outside what the method accepts.
    #[error("configuration key '{key}': {message}")]
    Invalid { key: &'static str, message: String },
}

/// The whole configuration. Sections mirror the pipeline's steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data: DataSection,
    pub vdvae: VdvaeSection,
    pub clip: ClipSection,
    pub regression: RegressionSection,
    pub diffusion: DiffusionSection,
    pub evaluation: EvaluationSection,
    pub roi: RoiSection,
    pub seeds: SeedSection,
}

/// `[data]`: which NSD data feeds the regressions, and how fMRI is scaled. Every key but
/// `subjects` and `stimulus_size` is in the subject cache's record (`fmri/settings.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    /// NSD subjects (1-based) the steps run for unless `--subjects` says otherwise. The paper uses
    /// the four who finished all sessions.
    pub subjects: Vec<u8>,
    /// Sessions read per subject (37 publicly released, 750 trials each).
    pub sessions: usize,
    /// Betas are divided by this before z-scoring (NSD stores percent signal change x 300).
    pub fmri_divisor: f32,
    /// Side of the stimuli in `nsd_stimuli.hdf5` (NSD's 425): `prepare` and `extract` refuse a
    /// stimulus file of another size; recorded with the ground-truth images.
    pub stimulus_size: u32,
    /// Trials per scan session (750 in NSD).
    pub trials_per_session: usize,
    /// Images whose `masterordering` index is at most this form the shared test set (1000 in NSD).
    pub test_threshold: usize,
    /// Images in the stimulus set (73,000 in NSD), for range checks of image ids and the caption
    /// array's length.
    pub n_images: usize,
    /// Training rows: `"averaged"` (one per image, its trials averaged: the paper) or `"single"`
    /// (one per trial: MindEye2's regime, `configs/mindeye2-regime.toml`). Test repetitions are
    /// averaged either way. In the subject cache's record.
    pub train_trials: nsd_io::TrainTrials,
}

impl DataSection {
    /// The counts of a synthetic NSD (`nsd_io::synth`) in place of NSD's: its subjects, sessions,
    /// trials, shared images, stimulus set and stimulus side; the other keys keep their defaults.
    pub fn of_synthetic(synth: &nsd_io::synth::SynthConfig) -> Self {
        Self {
            subjects: synth.subjects.clone(),
            sessions: synth.sessions,
            trials_per_session: synth.trials_per_session,
            test_threshold: synth.n_shared,
            n_images: synth.n_images,
            stimulus_size: synth.image_size as u32,
            ..Self::default()
        }
    }
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            subjects: vec![1, 2, 5, 7],
            sessions: 37,
            fmri_divisor: 300.0,
            stimulus_size: 425,
            trials_per_session: 750,
            test_threshold: 1000,
            n_images: 73_000,
            train_trials: nsd_io::TrainTrials::Averaged,
        }
    }
}

impl DataSection {
    /// The subjects a step runs for: `requested` (the command line's `--subjects`) unless it is
    /// empty, else `data.subjects`.
    pub fn subjects_or(&self, requested: &[u8]) -> Vec<u8> {
        if requested.is_empty() { self.subjects.clone() } else { requested.to_vec() }
    }
}

/// `[vdvae]`: stage 1. `layers`, `target`, `batch_size` (and `seeds.vdvae_targets`) are in the
/// features' record;
/// `layers`, `temperature`, `pixel_sampling` and `upscale_size` (and `seeds.vdvae_decode`) in the
/// stage-1 images' record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VdvaeSection {
    /// Decoder blocks whose latents are regressed (31 -> 91,168 values); at most the checkpoint's
    /// decoder blocks.
    pub layers: usize,
    /// The regression targets: `"posterior-sample"` (faithful) or `"posterior-mean"` (deterministic).
    pub target: PosteriorDraw,
    /// Prior temperature for the blocks after `layers`.
    pub temperature: f64,
    /// How the output distribution becomes pixels: `"sample"` (faithful) or `"mode"` (deterministic).
    pub pixel_sampling: OutputDraw,
    /// Side of the VDVAE image (64): a property of the checkpoint, which the loader checks.
    pub image_size: u32,
    /// Side the 64x64 guess is upscaled to (bicubic) before stage 2.
    pub upscale_size: u32,
    /// Images per VDVAE forward pass: memory, and the features' last bits (libtorch picks its
    /// kernels by batch size), so it is in the features' record. Stage-1 images are decoded one
    /// at a time in the workflow.
    pub batch_size: usize,
}

impl Default for VdvaeSection {
    fn default() -> Self {
        Self {
            layers: 31,
            target: PosteriorDraw::Sample,
            temperature: 1.0,
            pixel_sampling: OutputDraw::Sample,
            image_size: 64,
            upscale_size: 512,
            batch_size: 30,
        }
    }
}

/// `[clip]`: stage-2 features, CLIP ViT-L/14. The token counts and the width are properties of the
/// checkpoints, which the loader checks; they are in the stage-2 images' record. CLIP-Text always
/// embeds every non-empty caption of an image and averages the embeddings, as the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClipSection {
    /// Tokens of the vision sequence (CLS + 16x16 patches).
    pub vision_tokens: usize,
    /// Tokens of the text sequence.
    pub text_tokens: usize,
    /// Width of each embedded token.
    pub embedding_dim: usize,
    /// Side images are resized to before CLIP-Vision (the reference goes 425 -> 512 -> 224); in
    /// the CLIP-Vision features' record.
    pub vision_resize: u32,
    /// Precision of both CLIP towers on CUDA (the CPU always runs f32): f32 by default, f16 or
    /// bf16 to halve their memory and time; in both CLIP features' records.
    pub cuda_precision: Precision,
}

impl Default for ClipSection {
    fn default() -> Self {
        Self {
            vision_tokens: 257,
            text_tokens: 77,
            embedding_dim: 768,
            vision_resize: 512,
            cuda_precision: Precision::F32,
        }
    }
}

/// How predicted features are brought back to the scale of the training features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Renormalisation {
    /// z-score predictions over the whole test set, then rescale to train statistics (faithful;
    /// transductive: each output depends on the whole test batch).
    TestSet,
    /// Rescale with statistics of the training predictions only: per-sample inference (improvement).
    TrainOnly,
    /// Use the regression's output as is.
    None,
}

/// `[regression]`: the three ridge regressions. Every key is in each regression's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegressionSection {
    pub vdvae_alpha: f64,
    pub clip_vision_alpha: f64,
    pub clip_text_alpha: f64,
    /// Fit an intercept by centering, as scikit-learn's `Ridge(fit_intercept=True)`.
    pub fit_intercept: bool,
    pub renormalisation: Renormalisation,
}

impl RegressionSection {
    /// The configured alpha of one of the paper's groups (`None` for a downstream group, whose
    /// alpha the regressor is given in code: `RidgeRegressor::with_alpha`).
    pub fn alpha(&self, group: &crate::TargetGroup) -> Option<f64> {
        [
            (crate::TargetGroup::VDVAE, self.vdvae_alpha),
            (crate::TargetGroup::CLIP_VISION, self.clip_vision_alpha),
            (crate::TargetGroup::CLIP_TEXT, self.clip_text_alpha),
        ]
        .into_iter()
        .find_map(|(g, alpha)| (g == *group).then_some(alpha))
    }
}

impl Default for RegressionSection {
    fn default() -> Self {
        Self {
            vdvae_alpha: 50_000.0,
            clip_vision_alpha: 60_000.0,
            clip_text_alpha: 100_000.0,
            fit_intercept: true,
            renormalisation: Renormalisation::TestSet,
        }
    }
}

/// Numeric precision of the diffusion models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    F32,
    F16,
    Bf16,
}

impl Precision {
    /// The libtorch kind a model runs in on `device`: this precision on CUDA, f32 on the CPU.
    pub fn kind_on(self, device: tch::Device) -> tch::Kind {
        match (device, self) {
            (tch::Device::Cpu, _) | (_, Precision::F32) => tch::Kind::Float,
            (_, Precision::F16) => tch::Kind::Half,
            (_, Precision::Bf16) => tch::Kind::BFloat16,
        }
    }
}

/// `[diffusion]`: stage 2, Versatile Diffusion's dual-guided img2img. Its keys are the
/// versatile-diffusion crate's own [`Img2ImgSettings`] (`steps`, `strength`, `guidance_scale`,
/// `text_weight`, `eta`, `noise_start`), handed to the pipeline as they are, and the adapter's
/// `resolution` and `cuda_precision`. Every key is in the stage-2 images' record.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffusionSection {
    /// The img2img settings (`noise_start`: `"reference"`, the reference's off-by-one, faithful; or
    /// `"consistent"`, as diffusers).
    pub img2img: Img2ImgSettings,
    /// Output side in pixels: the initial guesses are resized (bicubic) to it.
    pub resolution: u32,
    /// Precision on CUDA (the CPU always runs f32).
    pub cuda_precision: Precision,
}

impl Default for DiffusionSection {
    fn default() -> Self {
        Self { img2img: Img2ImgSettings::default(), resolution: 512, cuda_precision: Precision::F16 }
    }
}

/// The `[diffusion]` keys as one flat table: the img2img settings' keys, then the adapter's.
#[derive(Serialize)]
struct DiffusionKeys<'a> {
    #[serde(flatten)]
    img2img: &'a Img2ImgSettings,
    resolution: u32,
    cuda_precision: Precision,
}

impl Serialize for DiffusionSection {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        DiffusionKeys { img2img: &self.img2img, resolution: self.resolution, cuda_precision: self.cuda_precision }
            .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for DiffusionSection {
    /// Takes the adapter's keys out of the table and gives the rest to [`Img2ImgSettings`]. An
    /// unknown key is an error listing every `[diffusion]` key; a value of the wrong type is an
    /// error naming its key (`diffusion.steps: ...`).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(deserializer)?;
        let mut section = DiffusionSection::default();
        let known: Vec<String> =
            toml::Table::try_from(&section).map(|t| t.keys().cloned().collect()).map_err(D::Error::custom)?;
        if let Some(unknown) = table.keys().find(|k| !known.contains(k)) {
            let expected: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
            return Err(D::Error::custom(format!(
                "unknown field `{unknown}` in [diffusion], expected one of {}",
                expected.join(", ")
            )));
        }
        let wrong = |key: &str, e: toml::de::Error| D::Error::custom(format!("diffusion.{key}: {}", e.message()));
        if let Some(value) = table.remove("resolution") {
            section.resolution = value.try_into().map_err(|e| wrong("resolution", e))?;
        }
        if let Some(value) = table.remove("cuda_precision") {
            section.cuda_precision = value.try_into().map_err(|e| wrong("cuda_precision", e))?;
        }
        // Key by key first, so that an error names its key.
        for (key, value) in &table {
            let single = toml::Table::from_iter([(key.clone(), value.clone())]);
            Img2ImgSettings::deserialize(toml::Value::Table(single)).map_err(|e| wrong(key, e))?;
        }
        section.img2img = Img2ImgSettings::deserialize(toml::Value::Table(table)).map_err(D::Error::custom)?;
        Ok(section)
    }
}

/// `[evaluation]`: what `evaluate` scores. Read by `evaluate` (and `report`) every time: the
/// metrics are recomputed, not cached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluationSection {
    /// Protocols reported unless `evaluate --protocols` says otherwise: `brain-diffuser` and/or
    /// `mindeye` (see the metrics crate's [`metrics::Protocol`]).
    pub protocols: Vec<String>,
    /// The SSIM of the `brain-diffuser` protocol: `"columns1d"` (also `"columns"`; scikit-image
    /// 0.17's column-wise 1-D SSIM, what Brain-Diffuser reported: faithful) or `"gaussian2d"`
    /// (also `"two-d"`; the standard 2-D SSIM). The `mindeye` protocol always uses the 2-D SSIM,
    /// as MindEye does. Each report names the SSIM it used.
    pub ssim: SsimVariant,
    /// Candidates per draw of MindEye's image and brain retrieval (300; at most the test images:
    /// a smaller test set is scored with all of its images and a warning).
    pub retrieval_candidates: usize,
    /// Draws of the retrieval metrics, averaged (30). The draws' seed is `seeds.retrieval`.
    pub retrieval_repeats: usize,
}

impl Default for EvaluationSection {
    fn default() -> Self {
        Self {
            protocols: vec!["brain-diffuser".to_owned(), "mindeye".to_owned()],
            ssim: SsimVariant::Columns1d,
            retrieval_candidates: metrics::high_level::retrieval::RetrievalOptions::MINDEYE.candidates,
            retrieval_repeats: metrics::high_level::retrieval::RetrievalOptions::MINDEYE.repeats,
        }
    }
}

impl EvaluationSection {
    /// The retrieval options for `items` test images with the draws' `seed`: the configured
    /// candidates, or every test image when there are fewer (`None` below 2 images).
    pub fn retrieval(&self, items: usize, seed: u64) -> Option<metrics::high_level::retrieval::RetrievalOptions> {
        let candidates = self.retrieval_candidates.min(items);
        (candidates >= 2).then_some(metrics::high_level::retrieval::RetrievalOptions {
            candidates,
            repeats: self.retrieval_repeats,
            seed,
        })
    }

    /// The protocols `evaluate` runs: `requested` (the command line's `--protocols`) unless it is
    /// empty, else `evaluation.protocols`.
    pub fn protocols_or(&self, requested: &[String]) -> Vec<String> {
        if requested.is_empty() { self.protocols.clone() } else { requested.to_vec() }
    }

    /// The metrics crate's protocol `name` as this configuration runs it: `brain-diffuser` with
    /// the SSIM of `evaluation.ssim`, `mindeye` as published.
    pub fn protocol(&self, name: &str) -> Result<metrics::Protocol, metrics::MetricsError> {
        let mut protocol = metrics::Protocol::by_name(name)?;
        if protocol.name == metrics::Protocol::brain_diffuser().name {
            protocol.ssim = self.ssim;
        }
        Ok(protocol)
    }
}

/// Which NSD volume the V1-V4 masks are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VisualRoiSource {
    /// `prf-visualrois.nii.gz`, as the paper describes (default: the reference's choice is a bug).
    PrfVisualrois,
    /// `floc-faces.nii.gz` with the prf label scheme: the reference's bug, for reproducing it.
    FlocFaces,
}

/// `[roi]`: ROI-optimal images and their heuristic scales (reference constants). `visual_rois` is
/// in the ROI patterns' record, the scales in the ROI features' record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoiSection {
    pub visual_rois: VisualRoiSource,
    /// VDVAE: the unit pattern response is scaled by this before adding the bias.
    pub vdvae_scale: f64,
    /// VDVAE: the final latent is rescaled to this L2 norm.
    pub vdvae_norm: f64,
    pub clip_text_scale: f64,
    pub clip_vision_scale: f64,
}

impl Default for RoiSection {
    fn default() -> Self {
        Self {
            visual_rois: VisualRoiSource::PrfVisualrois,
            vdvae_scale: 50.0,
            vdvae_norm: 80.0,
            clip_text_scale: 9.0,
            clip_vision_scale: 15.0,
        }
    }
}

/// `[seeds]`: seeds of every random draw, in the records of what they make. The reference sets only
/// the diffusion seed (0); the others are unseeded there. Image `i` of a folder draws from
/// [`crate::seeds::item_seed`]`(seed, i)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SeedSection {
    /// VDVAE posterior samples used as regression targets (the features' record).
    pub vdvae_targets: u64,
    /// VDVAE prior samples for the blocks after `layers`, and the pixel sampling (the stage-1
    /// images' record).
    pub vdvae_decode: u64,
    /// AutoencoderKL posterior sample and the img2img noise (the stage-2 images' record).
    pub diffusion: u64,
    /// The candidate draws of the retrieval metrics (in every metrics report that has them).
    pub retrieval: u64,
}

/// The largest values [`Config::validate`] accepts for counts and sizes: far above what the method
/// uses (the paper's values in brackets), low enough that nothing sized from them overflows or asks
/// for absurd amounts of memory.
pub mod limits {
    /// Any image side: stimuli, VDVAE output and upscale, CLIP resize, diffusion output (425, 64, 512, 512).
    pub const MAX_SIDE: u32 = 4096;
    /// Trials per scan session (750).
    pub const MAX_TRIALS_PER_SESSION: usize = 100_000;
    /// Images in the stimulus set (73,000).
    pub const MAX_IMAGES: usize = 10_000_000;
    /// Images per network call (30).
    pub const MAX_BATCH: usize = 4096;
    /// Draws of the retrieval metrics (30).
    pub const MAX_RETRIEVAL_REPEATS: usize = 100_000;
    /// Tokens of a CLIP sequence (257 and 77).
    pub const MAX_TOKENS: usize = 4096;
    /// Width of a CLIP token embedding (768).
    pub const MAX_EMBEDDING_DIM: usize = 16_384;
    /// DDIM steps: the schedule's training timesteps (50 of 1000).
    pub const MAX_DIFFUSION_STEPS: usize = 1000;
    /// Classifier-free guidance scale (7.5).
    pub const MAX_GUIDANCE: f64 = 100.0;
}

impl Config {
    /// Parses and validates TOML text; `origin` names it in errors (a path, or `"<string>"`).
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { origin: origin.to_owned(), message: e.to_string() })?;
        config.validate().map_err(|e| match e {
            ConfigError::Invalid { key, message } => {
                ConfigError::Invalid { key, message: format!("{message} (in {origin})") }
            }
            other => other,
        })?;
        Ok(config)
    }

    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_owned(), source })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// The configuration as TOML, every key written out.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot serialise the configuration: {e}\n"))
    }

    /// Checks every value against what the method accepts: counts and sizes within the ranges the
    /// pipeline can run (see [`limits`]), fractions in [0, 1], weights and scales finite and positive,
    /// subjects distinct NSD subjects, seeds that TOML can record. Each error names the key, the
    /// value and the range expected.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, message: String) -> ConfigError {
            ConfigError::Invalid { key, message }
        }
        fn positive(key: &'static str, value: f64) -> Result<(), ConfigError> {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(invalid(key, format!("must be a finite number > 0, got {value}")))
            }
        }
        fn fraction(key: &'static str, value: f64) -> Result<(), ConfigError> {
            if (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(invalid(key, format!("must lie in [0, 1], got {value}")))
            }
        }
        fn count(key: &'static str, value: usize, range: std::ops::RangeInclusive<usize>) -> Result<(), ConfigError> {
            if range.contains(&value) {
                Ok(())
            } else {
                Err(invalid(key, format!("must lie in {}..={}, got {value}", range.start(), range.end())))
            }
        }
        fn side(key: &'static str, value: u32) -> Result<(), ConfigError> {
            count(key, value as usize, 1..=limits::MAX_SIDE as usize).map_err(|_| {
                invalid(key, format!("must be an image side of 1..={} pixels, got {value}", limits::MAX_SIDE))
            })
        }
        let d = &self.data;
        if d.subjects.is_empty() {
            return Err(invalid(
                "data.subjects",
                "names no subject; expected NSD subjects 1 to 8, e.g. [1, 2, 5, 7]".into(),
            ));
        }
        if let Some(bad) = d.subjects.iter().find(|s| !(1..=8).contains(*s)) {
            return Err(invalid("data.subjects", format!("NSD has subjects 1 to 8, got {bad}")));
        }
        if let Some((i, s)) = d.subjects.iter().enumerate().find(|(i, s)| d.subjects[..*i].contains(s)) {
            return Err(invalid(
                "data.subjects",
                format!("subject {s} is listed twice (position {}); expected distinct subjects", i + 1),
            ));
        }
        if !(1..=40).contains(&d.sessions) {
            return Err(invalid("data.sessions", format!("NSD subjects have 1 to 40 sessions, got {}", d.sessions)));
        }
        positive("data.fmri_divisor", f64::from(d.fmri_divisor))?;
        side("data.stimulus_size", d.stimulus_size)?;
        count("data.trials_per_session", d.trials_per_session, 1..=limits::MAX_TRIALS_PER_SESSION)?;
        count("data.n_images", d.n_images, 1..=limits::MAX_IMAGES)?;
        count("data.test_threshold", d.test_threshold, 1..=d.n_images).map_err(|_| {
            invalid(
                "data.test_threshold",
                format!("must lie in 1..=data.n_images ({}), got {}", d.n_images, d.test_threshold),
            )
        })?;

        let v = &self.vdvae;
        if !(1..=75).contains(&v.layers) {
            return Err(invalid(
                "vdvae.layers",
                format!("the ImageNet-64 decoder has 75 blocks: expected 1..=75, got {}", v.layers),
            ));
        }
        positive("vdvae.temperature", v.temperature)?;
        side("vdvae.image_size", v.image_size)?;
        side("vdvae.upscale_size", v.upscale_size)?;
        count("vdvae.batch_size", v.batch_size, 1..=limits::MAX_BATCH)?;

        let c = &self.clip;
        count("clip.vision_tokens", c.vision_tokens, 1..=limits::MAX_TOKENS)?;
        count("clip.text_tokens", c.text_tokens, 1..=limits::MAX_TOKENS)?;
        count("clip.embedding_dim", c.embedding_dim, 1..=limits::MAX_EMBEDDING_DIM)?;
        side("clip.vision_resize", c.vision_resize)?;

        let r = &self.regression;
        positive("regression.vdvae_alpha", r.vdvae_alpha)?;
        positive("regression.clip_vision_alpha", r.clip_vision_alpha)?;
        positive("regression.clip_text_alpha", r.clip_text_alpha)?;

        let g = &self.diffusion.img2img;
        count("diffusion.steps", g.steps, 1..=limits::MAX_DIFFUSION_STEPS).map_err(|_| {
            invalid(
                "diffusion.steps",
                format!(
                    "the schedule has {} training timesteps: expected 1..={}, got {}",
                    limits::MAX_DIFFUSION_STEPS,
                    limits::MAX_DIFFUSION_STEPS,
                    g.steps
                ),
            )
        })?;
        fraction("diffusion.strength", g.strength)?;
        let denoised = self.denoising_steps();
        if denoised == 0 {
            return Err(invalid(
                "diffusion.strength",
                format!(
                    "{} with diffusion.steps = {} denoises nothing (floor(strength * steps) = 0); expected at least \
                     1 / diffusion.steps = {}",
                    g.strength,
                    g.steps,
                    1.0 / g.steps as f64
                ),
            ));
        }
        if g.noise_timestep == NoiseTimestep::BrainDiffuser && denoised >= g.steps {
            return Err(invalid(
                "diffusion.strength",
                format!(
                    "{} runs all diffusion.steps = {}, but diffusion.noise_start = \"reference\" noises one step \
                     above the first: expected floor(strength * steps) < steps, or noise_start = \"consistent\"",
                    g.strength, g.steps
                ),
            ));
        }
        fraction("diffusion.text_weight", g.text_weight)?;
        fraction("diffusion.eta", g.eta).map_err(|_| {
            invalid(
                "diffusion.eta",
                format!("DDIM eta must lie in [0, 1] (0: deterministic, 1: DDPM-like), got {}", g.eta),
            )
        })?;
        if !(g.guidance_scale.is_finite() && (1.0..=limits::MAX_GUIDANCE).contains(&g.guidance_scale)) {
            return Err(invalid(
                "diffusion.guidance_scale",
                format!("must lie in [1, {}] (1 disables guidance), got {}", limits::MAX_GUIDANCE, g.guidance_scale),
            ));
        }
        let resolution = self.diffusion.resolution;
        if resolution == 0 || resolution % 8 != 0 || resolution > limits::MAX_SIDE {
            return Err(invalid(
                "diffusion.resolution",
                format!(
                    "must be a multiple of 8 (the autoencoder's factor) in 8..={}, got {}",
                    limits::MAX_SIDE,
                    resolution
                ),
            ));
        }

        let e = &self.evaluation;
        if e.protocols.is_empty() {
            return Err(invalid(
                "evaluation.protocols",
                "names no protocol; expected brain-diffuser and/or mindeye".into(),
            ));
        }
        if let Some(bad) = e.protocols.iter().find(|p| !matches!(p.as_str(), "brain-diffuser" | "mindeye")) {
            return Err(invalid(
                "evaluation.protocols",
                format!("unknown protocol '{bad}': expected brain-diffuser or mindeye"),
            ));
        }
        if let Some((_, p)) = e.protocols.iter().enumerate().find(|(i, p)| e.protocols[..*i].contains(p)) {
            return Err(invalid("evaluation.protocols", format!("'{p}' is listed twice; expected distinct protocols")));
        }
        count("evaluation.retrieval_candidates", e.retrieval_candidates, 2..=limits::MAX_IMAGES)?;
        count("evaluation.retrieval_repeats", e.retrieval_repeats, 1..=limits::MAX_RETRIEVAL_REPEATS)?;

        let o = &self.roi;
        positive("roi.vdvae_scale", o.vdvae_scale)?;
        positive("roi.vdvae_norm", o.vdvae_norm)?;
        positive("roi.clip_text_scale", o.clip_text_scale)?;
        positive("roi.clip_vision_scale", o.clip_vision_scale)?;

        let s = &self.seeds;
        for (key, seed) in [
            ("seeds.vdvae_targets", s.vdvae_targets),
            ("seeds.vdvae_decode", s.vdvae_decode),
            ("seeds.diffusion", s.diffusion),
            ("seeds.retrieval", s.retrieval),
        ] {
            if i64::try_from(seed).is_err() {
                return Err(invalid(key, format!("must lie in 0..={} (a TOML integer), got {seed}", i64::MAX)));
            }
        }
        Ok(())
    }

    /// DDIM steps actually run from the noised initial guess: `floor(strength * steps)` (37 of 50).
    pub fn denoising_steps(&self) -> usize {
        let g = &self.diffusion.img2img;
        (g.strength * g.steps as f64) as usize
    }

    /// The VDVAE encoder's options: latents of the first `vdvae.layers` blocks, `vdvae.target`,
    /// seeded by `seeds.vdvae_targets`, in batches of `vdvae.batch_size`.
    pub fn vdvae_encode_options(&self) -> EncodeOptions {
        let v = &self.vdvae;
        EncodeOptions {
            n_blocks: v.layers,
            posterior: v.target,
            seed: self.seeds.vdvae_targets,
            batch_size: v.batch_size,
        }
    }

    /// The VDVAE decoder's options: `vdvae.temperature`, `vdvae.pixel_sampling`, seeded by
    /// `seeds.vdvae_decode`, in batches of `vdvae.batch_size`.
    pub fn vdvae_decode_options(&self) -> DecodeOptions {
        let v = &self.vdvae;
        DecodeOptions {
            temperature: v.temperature,
            output: v.pixel_sampling,
            seed: self.seeds.vdvae_decode,
            batch_size: v.batch_size,
        }
    }

    /// Values of one VDVAE latent vector for `vdvae.layers` blocks of the ImageNet-64 decoder
    /// (91,168 for 31): blocks run 2 at 1x1, 4 at 4x4, 8 at 8x8, 16 at 16x16, 31 at 32x32 and
    /// 14 at 64x64, each with 16 channels.
    pub fn vdvae_latent_len(&self) -> usize {
        const BLOCKS: [(usize, usize); 6] = [(2, 1), (4, 4), (8, 8), (16, 16), (31, 32), (14, 64)];
        let mut left = self.vdvae.layers;
        let mut total = 0;
        for (count, side) in BLOCKS {
            let taken = left.min(count);
            total += taken * 16 * side * side;
            left -= taken;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn precisions_apply_on_cuda_and_the_cpu_runs_f32() {
        use tch::{Device, Kind};
        let cuda = Device::Cuda(0);
        assert_eq!(
            [Precision::F32, Precision::F16, Precision::Bf16].map(|p| p.kind_on(cuda)),
            [Kind::Float, Kind::Half, Kind::BFloat16]
        );
        assert!(
            [Precision::F32, Precision::F16, Precision::Bf16].iter().all(|p| p.kind_on(Device::Cpu) == Kind::Float)
        );
        assert_eq!(Config::default().clip.cuda_precision, Precision::F32);
    }

    use super::*;

    /// The constants the paper and the reference code state (reference-pipeline.md §7).
    #[test]
    fn defaults_are_the_papers_constants() {
        let c = Config::default();
        assert_eq!(c.data.subjects, vec![1, 2, 5, 7]);
        assert_eq!((c.data.sessions, c.data.fmri_divisor), (37, 300.0));
        assert_eq!(c.vdvae.layers, 31);
        assert_eq!(c.vdvae_latent_len(), 91_168);
        assert_eq!(
            (c.regression.vdvae_alpha, c.regression.clip_vision_alpha, c.regression.clip_text_alpha),
            (50e3, 60e3, 100e3)
        );
        let g = &c.diffusion.img2img;
        assert_eq!((g.steps, g.strength, g.guidance_scale, g.text_weight), (50, 0.75, 7.5, 0.4));
        assert_eq!(c.denoising_steps(), 37);
        assert_eq!((c.clip.vision_tokens, c.clip.text_tokens, c.clip.embedding_dim), (257, 77, 768));
        assert_eq!(
            (c.roi.vdvae_scale, c.roi.vdvae_norm, c.roi.clip_text_scale, c.roi.clip_vision_scale),
            (50.0, 80.0, 9.0, 15.0)
        );
        // Faithful defaults for every quirk except the V1-V4 mask bug.
        assert_eq!(c.vdvae.target, PosteriorDraw::Sample);
        assert_eq!(c.vdvae.pixel_sampling, OutputDraw::Sample);
        assert_eq!(c.regression.renormalisation, Renormalisation::TestSet);
        assert_eq!(c.diffusion.img2img.noise_timestep, NoiseTimestep::BrainDiffuser);
        assert_eq!(c.evaluation.ssim, SsimVariant::Columns1d);
        assert_eq!(c.roi.visual_rois, VisualRoiSource::PrfVisualrois);
    }

    #[test]
    fn the_committed_paper_file_is_the_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/paper.toml");
        assert_eq!(Config::load(&path).expect("configs/paper.toml loads"), Config::default());
    }

    /// The MindEye2 preset is the paper's configuration with exactly MindEye2's data regime:
    /// 40 sessions, single training trials, the MindEye protocol.
    #[test]
    fn the_mindeye2_preset_differs_from_the_paper_only_in_its_data_regime() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/mindeye2-regime.toml");
        let preset = Config::load(&path).expect("configs/mindeye2-regime.toml loads");
        let mut expected = Config::default();
        expected.data.sessions = 40;
        expected.data.train_trials = nsd_io::TrainTrials::Single;
        expected.evaluation.protocols = vec!["mindeye".to_owned()];
        assert_eq!(preset, expected);
        assert_eq!(expected.data.test_threshold, 1000, "all 1,000 shared images");
    }

    #[test]
    fn round_trips_through_toml() {
        let mut c = Config::default();
        c.diffusion.img2img.noise_timestep = NoiseTimestep::Consistent;
        c.diffusion.cuda_precision = Precision::Bf16;
        c.vdvae.target = PosteriorDraw::Mean;
        c.vdvae.pixel_sampling = OutputDraw::Mode;
        c.evaluation.ssim = SsimVariant::Gaussian2d;
        c.regression.renormalisation = Renormalisation::TrainOnly;
        assert_eq!(Config::from_toml_str(&c.to_toml(), "<round trip>").expect("parses"), c);
    }

    #[test]
    fn partial_files_keep_defaults() {
        let c = Config::from_toml_str("[diffusion]\nstrength = 0.5\n", "<string>").expect("parses");
        assert_eq!(c.diffusion.img2img.strength, 0.5);
        assert_eq!(c.diffusion.img2img.steps, 50);
        assert_eq!(c.denoising_steps(), 25);
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let err = Config::from_toml_str("[diffusion]\nstrenght = 0.5\n", "<string>").unwrap_err();
        assert!(err.to_string().contains("strenght"), "{err}");
        let err = Config::from_toml_str("[difusion]\n", "<string>").unwrap_err();
        assert!(err.to_string().contains("difusion"), "{err}");
        // The [diffusion] section lists its keys, the crate's and the adapter's.
        let err = Config::from_toml_str("[diffusion]\nstrenght = 0.5\n", "<string>").unwrap_err().to_string();
        for key in ["strenght", "`strength`", "`noise_start`", "`resolution`", "`cuda_precision`"] {
            assert!(err.contains(key), "{key}: {err}");
        }
        // Keys that were dropped because nothing read them are unknown now.
        for (text, key) in [
            ("[evaluation]\ntest_images = 982\n", "test_images"),
            ("[evaluation]\nnetwork_input_size = 224\n", "network_input_size"),
            ("[clip]\naverage_captions = true\n", "average_captions"),
            ("[seeds]\nsynthetic = 0\n", "synthetic"),
        ] {
            let err = Config::from_toml_str(text, "<string>").unwrap_err();
            assert!(matches!(err, ConfigError::Parse { .. }) && err.to_string().contains(key), "{text:?} gave {err}");
        }
    }

    #[test]
    fn sections_take_the_crates_own_values() {
        let c = Config::from_toml_str(
            "[vdvae]\ntarget = \"posterior-mean\"\npixel_sampling = \"mode\"\n[diffusion]\nnoise_start = \
             \"consistent\"\n[evaluation]\nssim = \"two-d\"\n",
            "<string>",
        )
        .expect("parses");
        assert_eq!((c.vdvae.target, c.vdvae.pixel_sampling), (PosteriorDraw::Mean, OutputDraw::Mode));
        assert_eq!(c.diffusion.img2img.noise_timestep, NoiseTimestep::Consistent);
        assert_eq!(c.evaluation.ssim, SsimVariant::Gaussian2d);
        // The metrics crate's own names work too, and are what the configuration is written with.
        let named = Config::from_toml_str("[evaluation]\nssim = \"gaussian2d\"\n", "<string>").expect("parses");
        assert_eq!(named.evaluation.ssim, SsimVariant::Gaussian2d);
        assert!(c.to_toml().contains("ssim = \"gaussian2d\""), "{}", c.to_toml());
        // The img2img settings go to Versatile Diffusion as they are: the paper's are the crate's defaults.
        assert_eq!(Config::default().diffusion.img2img, Img2ImgSettings::default());
        let options = c.vdvae_encode_options();
        assert_eq!((options.n_blocks, options.posterior, options.batch_size), (31, PosteriorDraw::Mean, 30));
        assert_eq!(c.vdvae_decode_options().output, OutputDraw::Mode);
    }

    #[test]
    fn ssim_is_the_brain_diffuser_protocols_and_mindeye_keeps_its_own() {
        let mut e = EvaluationSection::default();
        assert_eq!(e.protocol("brain-diffuser").unwrap(), metrics::Protocol::brain_diffuser());
        assert_eq!(e.protocol("mindeye").unwrap(), metrics::Protocol::mindeye());
        e.ssim = SsimVariant::Gaussian2d;
        let bd = e.protocol("brain-diffuser").unwrap();
        assert_eq!(bd.ssim, SsimVariant::Gaussian2d);
        assert_eq!(metrics::Protocol { ssim: SsimVariant::Columns1d, ..bd }, metrics::Protocol::brain_diffuser());
        assert_eq!(e.protocol("mindeye").unwrap(), metrics::Protocol::mindeye());
        assert!(e.protocol("tk").is_err());
        assert_eq!(e.protocols_or(&[]), vec!["brain-diffuser".to_owned(), "mindeye".to_owned()]);
        assert_eq!(e.protocols_or(&["mindeye".to_owned()]), vec!["mindeye".to_owned()]);
        assert_eq!(DataSection::default().subjects_or(&[]), vec![1, 2, 5, 7]);
        assert_eq!(DataSection::default().subjects_or(&[3]), vec![3]);
    }

    #[test]
    fn invalid_values_are_errors_naming_the_key() {
        for (text, key) in [
            ("[diffusion]\nstrength = 1.5\n", "diffusion.strength"),
            ("[diffusion]\ntext_weight = -0.1\n", "diffusion.text_weight"),
            ("[diffusion]\nresolution = 500\n", "diffusion.resolution"),
            ("[regression]\nvdvae_alpha = 0.0\n", "regression.vdvae_alpha"),
            ("[data]\nsubjects = [9]\n", "data.subjects"),
            ("[vdvae]\nlayers = 76\n", "vdvae.layers"),
            ("[evaluation]\nprotocols = [\"tk\"]\n", "evaluation.protocols"),
            ("[data]\nsubjects = [1, 1]\n", "data.subjects"),
            ("[data]\nsubjects = [2, 5, 2]\n", "data.subjects"),
            ("[data]\nsubjects = []\n", "data.subjects"),
            ("[data]\nsubjects = [0]\n", "data.subjects"),
            ("[data]\nstimulus_size = 0\n", "data.stimulus_size"),
            ("[data]\nstimulus_size = 100000\n", "data.stimulus_size"),
            ("[data]\nfmri_divisor = nan\n", "data.fmri_divisor"),
            ("[data]\nfmri_divisor = -300.0\n", "data.fmri_divisor"),
            ("[data]\ntrials_per_session = 0\n", "data.trials_per_session"),
            ("[data]\nn_images = 0\n", "data.n_images"),
            ("[data]\ntest_threshold = 80000\n", "data.test_threshold"),
            ("[vdvae]\nimage_size = 0\n", "vdvae.image_size"),
            ("[vdvae]\nupscale_size = 1000000\n", "vdvae.upscale_size"),
            ("[vdvae]\nbatch_size = 0\n", "vdvae.batch_size"),
            ("[vdvae]\nbatch_size = 1000000000\n", "vdvae.batch_size"),
            ("[vdvae]\ntemperature = inf\n", "vdvae.temperature"),
            ("[clip]\nvision_tokens = 0\n", "clip.vision_tokens"),
            ("[clip]\ntext_tokens = 9999999\n", "clip.text_tokens"),
            ("[clip]\nembedding_dim = 100000000\n", "clip.embedding_dim"),
            ("[clip]\nvision_resize = 0\n", "clip.vision_resize"),
            ("[regression]\nclip_text_alpha = nan\n", "regression.clip_text_alpha"),
            ("[regression]\nclip_vision_alpha = -inf\n", "regression.clip_vision_alpha"),
            ("[diffusion]\nsteps = 0\n", "diffusion.steps"),
            ("[diffusion]\nsteps = 1001\n", "diffusion.steps"),
            ("[diffusion]\nstrength = nan\n", "diffusion.strength"),
            ("[diffusion]\nstrength = 0.01\n", "diffusion.strength"),
            ("[diffusion]\nstrength = 1.0\n", "diffusion.strength"),
            ("[diffusion]\neta = 1.5\n", "diffusion.eta"),
            ("[diffusion]\neta = nan\n", "diffusion.eta"),
            ("[diffusion]\nguidance_scale = 0.5\n", "diffusion.guidance_scale"),
            ("[diffusion]\nguidance_scale = 1e300\n", "diffusion.guidance_scale"),
            ("[diffusion]\nresolution = 0\n", "diffusion.resolution"),
            ("[diffusion]\nresolution = 65536\n", "diffusion.resolution"),
            ("[evaluation]\nprotocols = []\n", "evaluation.protocols"),
            ("[evaluation]\nprotocols = [\"mindeye\", \"mindeye\"]\n", "evaluation.protocols"),
            ("[roi]\nvdvae_norm = 0.0\n", "roi.vdvae_norm"),
            ("[roi]\nclip_text_scale = nan\n", "roi.clip_text_scale"),
        ] {
            let err = Config::from_toml_str(text, "<string>").unwrap_err();
            assert!(err.to_string().contains(key), "{text:?} gave {err}");
        }
        let err = Config::from_toml_str("[vdvae]\ntarget = \"posterior-median\"\n", "<string>").unwrap_err();
        assert!(err.to_string().contains("posterior-median"), "{err}");
    }

    #[test]
    fn boundary_values_are_accepted() {
        for text in [
            "[data]\nsubjects = [8, 1]\nstimulus_size = 4096\n",
            "[data]\ntest_threshold = 73000\n",
            "[diffusion]\nsteps = 1000\nstrength = 0.001\n",
            "[diffusion]\nstrength = 1.0\nnoise_start = \"consistent\"\n",
            "[diffusion]\neta = 1.0\nguidance_scale = 1.0\nresolution = 8\n",
            "[evaluation]\nprotocols = [\"mindeye\"]\nssim = \"columns\"\n",
            "[seeds]\ndiffusion = 9223372036854775807\n",
        ] {
            let config = Config::from_toml_str(text, "<string>").unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(Config::from_toml_str(&config.to_toml(), "<round trip>").expect("round trip"), config);
        }
    }

    #[test]
    fn seeds_that_toml_cannot_hold_are_refused() {
        let mut config = Config::default();
        config.seeds.diffusion = u64::MAX;
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("seeds.diffusion"), "{err}");
        // Values that do not fit the key's type are parse errors that show the key's line.
        for (text, key) in [
            ("[data]\nsessions = -1\n", "sessions"),
            ("[data]\nstimulus_size = 5000000000\n", "stimulus_size"),
            ("[seeds]\ndiffusion = -5\n", "diffusion"),
            ("[diffusion]\nsteps = 2.5\n", "steps"),
            ("[diffusion]\nresolution = -8\n", "resolution"),
            ("[diffusion]\ncuda_precision = \"f8\"\n", "cuda_precision"),
            ("[diffusion]\nnoise_start = \"late\"\n", "noise_start"),
        ] {
            let err = Config::from_toml_str(text, "<string>").unwrap_err();
            assert!(err.to_string().contains(key), "{text:?} gave {err}");
        }
    }
}

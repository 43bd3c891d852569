//! The pipeline's configuration: every constant of the paper and every faithful/improved option, in
//! one TOML file.
//!
//! [`Config::default`] reproduces the paper (and the reference code where the paper is silent);
//! `configs/paper.toml` spells the same values out. Each reference quirk is a named option whose
//! default is the faithful behaviour, except where the quirk is a plain bug (the ROI V1-V4 masks).
//! Unknown keys and invalid values are errors that name the key.

use std::path::Path;

use serde::{Deserialize, Serialize};

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
    pub data: DataConfig,
    pub vdvae: VdvaeConfig,
    pub clip: ClipConfig,
    pub regression: RegressionConfig,
    pub diffusion: DiffusionConfig,
    pub evaluation: EvaluationConfig,
    pub roi: RoiConfig,
    pub seeds: SeedConfig,
}

/// Which NSD data feeds the regressions, and how fMRI is scaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// NSD subjects (1-based). The paper uses the four who finished all sessions.
    pub subjects: Vec<u8>,
    /// Sessions read per subject (37 publicly released, 750 trials each).
    pub sessions: usize,
    /// Betas are divided by this before z-scoring (NSD stores percent signal change x 300).
    pub fmri_divisor: f32,
    /// Stimulus side in pixels (NSD's 425).
    pub stimulus_size: u32,
    /// Trials per scan session (750 in NSD).
    pub trials_per_session: usize,
    /// Images whose `masterordering` index is at most this form the shared test set (1000 in NSD).
    pub test_threshold: usize,
    /// Images in the stimulus set (73,000 in NSD), for range checks of image ids.
    pub n_images: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            subjects: vec![1, 2, 5, 7],
            sessions: 37,
            fmri_divisor: 300.0,
            stimulus_size: 425,
            trials_per_session: 750,
            test_threshold: 1000,
            n_images: 73_000,
        }
    }
}

/// What the VDVAE regression targets are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LatentTarget {
    /// A sample of each block's posterior, as the reference (faithful).
    PosteriorSample,
    /// The posterior mean: deterministic, less noisy targets (improvement).
    PosteriorMean,
}

/// How VDVAE's output distribution becomes pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PixelSampling {
    /// Sample the discretised mixture of logistics, as the reference (faithful).
    Sample,
    /// Take the most likely component's location: deterministic (improvement).
    Mode,
}

/// Stage 1: VDVAE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VdvaeConfig {
    /// Decoder blocks whose latents are regressed (31 -> 91,168 values).
    pub layers: usize,
    pub target: LatentTarget,
    /// Prior temperature for the blocks after `layers`.
    pub temperature: f32,
    pub pixel_sampling: PixelSampling,
    /// Side of the VDVAE image (64).
    pub image_size: u32,
    /// Side the 64x64 guess is upscaled to (bicubic) before stage 2.
    pub upscale_size: u32,
    pub batch_size: usize,
}

impl Default for VdvaeConfig {
    fn default() -> Self {
        Self {
            layers: 31,
            target: LatentTarget::PosteriorSample,
            temperature: 1.0,
            pixel_sampling: PixelSampling::Sample,
            image_size: 64,
            upscale_size: 512,
            batch_size: 30,
        }
    }
}

/// Stage 2 features: CLIP ViT-L/14.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClipConfig {
    /// Tokens of the vision sequence (CLS + 16x16 patches).
    pub vision_tokens: usize,
    /// Tokens of the text sequence.
    pub text_tokens: usize,
    /// Width of each embedded token.
    pub embedding_dim: usize,
    /// Side images are resized to before CLIP-Vision (the reference goes 425 -> 512 -> 224).
    pub vision_resize: u32,
    /// Use every non-empty caption of an image and average their embeddings (the reference).
    pub average_captions: bool,
}

impl Default for ClipConfig {
    fn default() -> Self {
        Self { vision_tokens: 257, text_tokens: 77, embedding_dim: 768, vision_resize: 512, average_captions: true }
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

/// The three ridge regressions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegressionConfig {
    pub vdvae_alpha: f64,
    pub clip_vision_alpha: f64,
    pub clip_text_alpha: f64,
    /// Fit an intercept by centering, as scikit-learn's `Ridge(fit_intercept=True)`.
    pub fit_intercept: bool,
    pub renormalisation: Renormalisation,
}

impl Default for RegressionConfig {
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

/// Where img2img noising and denoising start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoiseStart {
    /// Noise to DDIM index `t_enc` (timestep 741), first denoising step at index `t_enc - 1`
    /// (timestep 721): the reference's off-by-one (faithful).
    Reference,
    /// Noise and denoise from the same index, as diffusers does (improvement).
    Consistent,
}

/// Numeric precision of the diffusion models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    F32,
    F16,
    Bf16,
}

/// Stage 2: Versatile Diffusion dual-guided img2img.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiffusionConfig {
    pub steps: usize,
    /// Fraction of the steps run from the noised initial guess (0.75 -> 37 of 50).
    pub strength: f64,
    pub guidance_scale: f64,
    /// Weight of the text-guided transformer; the vision one gets `1 - text_weight`.
    pub text_weight: f64,
    /// DDIM eta (0: deterministic after the initial noise).
    pub eta: f64,
    pub noise_start: NoiseStart,
    /// Output side in pixels.
    pub resolution: u32,
    /// Precision on CUDA (the CPU always runs f32).
    pub cuda_precision: Precision,
}

impl Default for DiffusionConfig {
    fn default() -> Self {
        Self {
            steps: 50,
            strength: 0.75,
            guidance_scale: 7.5,
            text_weight: 0.4,
            eta: 0.0,
            noise_start: NoiseStart::Reference,
            resolution: 512,
            cuda_precision: Precision::F16,
        }
    }
}

/// The SSIM variant reported as "SSIM".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SsimVariant {
    /// scikit-image 0.17 with `multichannel=True` on a gray image: 1-D SSIM per column, averaged
    /// (what Brain-Diffuser reported; faithful).
    Columns,
    /// The standard 2-D Gaussian SSIM.
    TwoD,
}

/// Evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluationConfig {
    /// Protocols reported: `brain-diffuser` and/or `mindeye`.
    pub protocols: Vec<String>,
    /// The SSIM in the main table; both are always computed.
    pub ssim: SsimVariant,
    /// Test images scored (NSD's shared images seen by all four subjects).
    pub test_images: usize,
    /// Side of the feature networks' input.
    pub network_input_size: u32,
}

impl Default for EvaluationConfig {
    fn default() -> Self {
        Self {
            protocols: vec!["brain-diffuser".to_owned(), "mindeye".to_owned()],
            ssim: SsimVariant::Columns,
            test_images: 982,
            network_input_size: 224,
        }
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

/// ROI-optimal images and their heuristic scales (reference constants).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoiConfig {
    pub visual_rois: VisualRoiSource,
    /// VDVAE: the unit pattern response is scaled by this before adding the bias.
    pub vdvae_scale: f64,
    /// VDVAE: the final latent is rescaled to this L2 norm.
    pub vdvae_norm: f64,
    pub clip_text_scale: f64,
    pub clip_vision_scale: f64,
}

impl Default for RoiConfig {
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

/// Seeds of every random draw; recorded with the outputs. The reference sets only the diffusion
/// seed (0); the others are unseeded there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SeedConfig {
    /// VDVAE posterior samples used as regression targets.
    pub vdvae_targets: u64,
    /// VDVAE prior samples for the blocks after `layers`, and the pixel sampling.
    pub vdvae_decode: u64,
    /// AutoencoderKL posterior sample and the img2img noise.
    pub diffusion: u64,
    /// Synthetic data (quickstart, tests).
    pub synthetic: u64,
}

/// The largest values [`Config::validate`] accepts for counts and sizes: far above what the method
/// uses (the paper's values in brackets), low enough that nothing sized from them overflows or asks
/// for absurd amounts of memory.
pub mod limits {
    /// Any image side: stimuli, VDVAE output and upscale, CLIP resize, diffusion output, metric input (425, 64, 512, 224).
    pub const MAX_SIDE: u32 = 4096;
    /// Trials per scan session (750).
    pub const MAX_TRIALS_PER_SESSION: usize = 100_000;
    /// Images in the stimulus set (73,000).
    pub const MAX_IMAGES: usize = 10_000_000;
    /// Images per network call (30).
    pub const MAX_BATCH: usize = 4096;
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
        positive("vdvae.temperature", f64::from(v.temperature))?;
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

        let g = &self.diffusion;
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
        if g.noise_start == NoiseStart::Reference && denoised >= g.steps {
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
        if g.resolution == 0 || g.resolution % 8 != 0 || g.resolution > limits::MAX_SIDE {
            return Err(invalid(
                "diffusion.resolution",
                format!(
                    "must be a multiple of 8 (the autoencoder's factor) in 8..={}, got {}",
                    limits::MAX_SIDE,
                    g.resolution
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
        count("evaluation.test_images", e.test_images, 1..=d.n_images).map_err(|_| {
            invalid(
                "evaluation.test_images",
                format!("must lie in 1..=data.n_images ({}), got {}", d.n_images, e.test_images),
            )
        })?;
        side("evaluation.network_input_size", e.network_input_size)?;

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
            ("seeds.synthetic", s.synthetic),
        ] {
            if i64::try_from(seed).is_err() {
                return Err(invalid(key, format!("must lie in 0..={} (a TOML integer), got {seed}", i64::MAX)));
            }
        }
        Ok(())
    }

    /// DDIM steps actually run from the noised initial guess: `floor(strength * steps)` (37 of 50).
    pub fn denoising_steps(&self) -> usize {
        (self.diffusion.strength * self.diffusion.steps as f64) as usize
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
        assert_eq!(
            (c.diffusion.steps, c.diffusion.strength, c.diffusion.guidance_scale, c.diffusion.text_weight),
            (50, 0.75, 7.5, 0.4)
        );
        assert_eq!(c.denoising_steps(), 37);
        assert_eq!((c.clip.vision_tokens, c.clip.text_tokens, c.clip.embedding_dim), (257, 77, 768));
        assert_eq!(c.evaluation.test_images, 982);
        assert_eq!(
            (c.roi.vdvae_scale, c.roi.vdvae_norm, c.roi.clip_text_scale, c.roi.clip_vision_scale),
            (50.0, 80.0, 9.0, 15.0)
        );
        // Faithful defaults for every quirk except the V1-V4 mask bug.
        assert_eq!(c.vdvae.target, LatentTarget::PosteriorSample);
        assert_eq!(c.regression.renormalisation, Renormalisation::TestSet);
        assert_eq!(c.diffusion.noise_start, NoiseStart::Reference);
        assert_eq!(c.evaluation.ssim, SsimVariant::Columns);
        assert_eq!(c.roi.visual_rois, VisualRoiSource::PrfVisualrois);
    }

    #[test]
    fn the_committed_paper_file_is_the_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/paper.toml");
        assert_eq!(Config::load(&path).expect("configs/paper.toml loads"), Config::default());
    }

    #[test]
    fn round_trips_through_toml() {
        let mut c = Config::default();
        c.diffusion.noise_start = NoiseStart::Consistent;
        c.vdvae.target = LatentTarget::PosteriorMean;
        c.regression.renormalisation = Renormalisation::TrainOnly;
        assert_eq!(Config::from_toml_str(&c.to_toml(), "<round trip>").expect("parses"), c);
    }

    #[test]
    fn partial_files_keep_defaults() {
        let c = Config::from_toml_str("[diffusion]\nstrength = 0.5\n", "<string>").expect("parses");
        assert_eq!(c.diffusion.strength, 0.5);
        assert_eq!(c.diffusion.steps, 50);
        assert_eq!(c.denoising_steps(), 25);
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let err = Config::from_toml_str("[diffusion]\nstrenght = 0.5\n", "<string>").unwrap_err();
        assert!(err.to_string().contains("strenght"), "{err}");
        let err = Config::from_toml_str("[difusion]\n", "<string>").unwrap_err();
        assert!(err.to_string().contains("difusion"), "{err}");
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
            ("[evaluation]\ntest_images = 0\n", "evaluation.test_images"),
            ("[evaluation]\ntest_images = 100000\n", "evaluation.test_images"),
            ("[evaluation]\nnetwork_input_size = 0\n", "evaluation.network_input_size"),
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
            "[evaluation]\nprotocols = [\"mindeye\"]\ntest_images = 73000\n",
            "[seeds]\ndiffusion = 9223372036854775807\n",
        ] {
            let config = Config::from_toml_str(text, "<string>").unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(Config::from_toml_str(&config.to_toml(), "<round trip>").expect("round trip"), config);
        }
    }

    #[test]
    fn seeds_that_toml_cannot_hold_are_refused() {
        let mut config = Config::default();
        config.seeds.synthetic = u64::MAX;
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("seeds.synthetic"), "{err}");
        // Values that do not fit the key's type are parse errors that show the key's line.
        for (text, key) in [
            ("[data]\nsessions = -1\n", "sessions"),
            ("[data]\nstimulus_size = 5000000000\n", "stimulus_size"),
            ("[seeds]\ndiffusion = -5\n", "diffusion"),
            ("[diffusion]\nsteps = 2.5\n", "steps"),
        ] {
            let err = Config::from_toml_str(text, "<string>").unwrap_err();
            assert!(err.to_string().contains(key), "{text:?} gave {err}");
        }
    }
}

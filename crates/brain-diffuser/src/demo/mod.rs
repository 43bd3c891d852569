//! A synthetic NSD and tiny random-weight models, written in the real file formats, with a matching
//! configuration: `brain-diffuser demo --out DIR` lets anyone run every step of the command line in
//! minutes on a CPU, and the end-to-end tests run the same files.
//!
//! The data come from `nsd_io::synth` (a known linear encoding model); the models from
//! [`tiny_models::write_tiny_models`]. Neither says anything about real reconstructions.

use std::fmt;
use std::path::{Path, PathBuf};

use nsd_io::synth::{SynthConfig, write_synthetic_nsd};

use crate::config::Config;
use crate::workflow::{WorkflowError, write_text};

pub mod tiny_models;

use tiny_models::{TinyModels, write_tiny_models};

/// Side of the synthetic stimuli, of the stage-1 upscale and of the tiny diffusion model's images.
pub const DEMO_SIDE: u32 = 64;

/// The synthetic dataset of the demo: two subjects, 4 sessions of 150 trials, 600 stimuli of
/// 64x64, of which 40 are shared test images.
pub fn demo_synth_config(seed: u64) -> SynthConfig {
    SynthConfig {
        seed,
        subjects: vec![1, 2],
        sessions: 4,
        trials_per_session: 150,
        volume: [14, 14, 10],
        n_images: 600,
        images_per_subject: 200,
        n_shared: 40,
        image_size: DEMO_SIDE as usize,
        n_features: 16,
        noise_sd: 0.5,
        write_stimuli: true,
        ..SynthConfig::default()
    }
}

/// The paper's configuration adapted to the demo's data and tiny models: the same options and
/// seeds, smaller shapes (the tiny VDVAE's first latent blocks, the tiny CLIP's tokens and width,
/// 64x64 diffusion with 10 steps), alphas suited to a few hundred voxels, and VDVAE posterior means
/// as regression targets.
pub fn demo_config(synth: &SynthConfig, tiny: &TinyModels) -> Config {
    let mut c = Config::default();
    c.data.subjects = synth.subjects.clone();
    c.data.sessions = synth.sessions;
    c.data.trials_per_session = synth.trials_per_session;
    c.data.test_threshold = synth.n_shared;
    c.data.n_images = synth.n_images;
    c.data.stimulus_size = DEMO_SIDE;
    c.vdvae.layers = tiny.vdvae_latent_blocks;
    // A random VDVAE's posterior is almost its prior (means near 4e-4, unit spread): its samples,
    // the faithful targets, carry no trace of the image. The posterior means do.
    c.vdvae.target = vdvae::PosteriorDraw::Mean;
    c.vdvae.image_size = tiny.vdvae.image_size as u32;
    c.vdvae.upscale_size = DEMO_SIDE;
    c.clip.vision_tokens = tiny.vision_tokens;
    c.clip.text_tokens = tiny.text_tokens;
    c.clip.embedding_dim = tiny.context_width;
    c.clip.vision_resize = DEMO_SIDE;
    c.regression.vdvae_alpha = 100.0;
    c.regression.clip_vision_alpha = 100.0;
    c.regression.clip_text_alpha = 100.0;
    c.diffusion.img2img.steps = 10;
    // Retrieval among half of the 40 test images, so that the draws matter (MindEye: 300 of 1,000).
    c.evaluation.retrieval_candidates = synth.n_shared / 2;
    c.diffusion.resolution = tiny.image_side;
    c
}

/// Where [`write_demo`] put things.
#[derive(Debug, Clone)]
pub struct Demo {
    pub nsd: PathBuf,
    pub models: PathBuf,
    pub config: PathBuf,
    pub run: PathBuf,
}

/// Writes `out/nsd` (synthetic NSD), `out/models` (tiny random models) and `out/config.toml`.
/// The seed is recorded in the TOML config, so it must lie in `0..=i64::MAX`.
pub fn write_demo(out: &Path, seed: u64) -> Result<Demo, WorkflowError> {
    if i64::try_from(seed).is_err() {
        return Err(WorkflowError::Invalid(format!(
            "demo seed {seed}: must lie in 0..={} (it is recorded as a TOML integer)",
            i64::MAX
        )));
    }
    let synth = demo_synth_config(seed);
    let nsd = out.join("nsd");
    write_synthetic_nsd(&nsd, &synth)?;
    let models = out.join("models");
    let tiny = write_tiny_models(&models, seed)?;
    let config = out.join("config.toml");
    let text = format!(
        "# brain-diffuser demo: SYNTHETIC data and TINY RANDOM models (seed {seed}).\n\
         # The paper's options with shapes that fit them; see configs/paper.toml for the real ones.\n\n{}",
        demo_config(&synth, &tiny).to_toml()
    );
    write_text(&config, &text)?;
    Ok(Demo { nsd, models, config, run: out.join("run") })
}

impl fmt::Display for Demo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Wrote a SYNTHETIC NSD ({}) and TINY RANDOM models ({}):",
            self.nsd.display(),
            self.models.display()
        )?;
        writeln!(f, "their images show that every step runs, not what real reconstructions look like.\n")?;
        writeln!(f, "Run every step with:")?;
        writeln!(
            f,
            "  export BRAIN_DIFFUSER_RUN={} BRAIN_DIFFUSER_NSD={} BRAIN_DIFFUSER_MODELS={}",
            self.run.display(),
            self.nsd.display(),
            self.models.display()
        )?;
        let c = self.config.display();
        for step in [
            "prepare",
            "extract",
            "fit",
            "predict",
            "reconstruct",
            "ablate",
            "average",
            "roi",
            "weights-roi",
            "evaluate",
            "report",
        ] {
            writeln!(f, "  brain-diffuser --config {c} {step}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_that_toml_cannot_record_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("demo");
        let err = write_demo(&out, i64::MAX as u64 + 1).unwrap_err().to_string();
        assert!(err.contains("demo seed 9223372036854775808") && err.contains("0..=9223372036854775807"), "{err}");
        assert!(!out.exists());
    }
}

//! A synthetic NSD and tiny random-weight models, written in the real file formats, with a matching
//! configuration: `brain-diffuser demo --out DIR` lets anyone run every step of the command line in
//! minutes on a CPU, and the end-to-end tests run the same files.
//!
//! The data come from `nsd_io::synth` (a known linear encoding model), the models from
//! [`tiny_models::write_tiny_models`]. By default ([`DemoWorld::VdvaeLatents`]) the stimuli are
//! decoded by the demo's own VDVAE from the seeded features, so stage 1 has a known answer: the
//! latents predicted from the fMRI, decoded by the same model, must resemble the stimuli. Stage 2
//! (tiny random Versatile Diffusion) says nothing about real reconstructions.

use std::fmt;
use std::path::{Path, PathBuf};

use image::RgbImage;
use image::imageops::{FilterType, resize};
use ndarray::{Array2, Array3, s};
use nsd_io::synth::{GroundTruth, SynthConfig, ground_truth, write_synthetic_nsd_from};
use tch::{Device, Kind};
use vdvae::{DecodeOptions, Latents, OutputDraw};

use crate::config::{Config, DataSection};
use crate::models::{ModelError, ModelsDir, VDVAE_SAFETENSORS};
use crate::workflow::{WorkflowError, write_text};

pub mod mosaic_vdvae;
pub mod tiny_models;

use tiny_models::{TinyModels, VDVAE_LATENT_BLOCKS, VDVAE_LATENT_DIM, write_tiny_models};

/// What the demo's stimuli are and what its fMRI encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DemoWorld {
    /// Stimuli decoded by the demo's VDVAE from seeded latents (`N(0, 1)` in its
    /// [`VDVAE_LATENT_BLOCKS`] latent blocks: 4x4 colour mosaics, upscaled); the fMRI a seeded
    /// linear map of those latents and of [`CLIP_FEATURES`] seeded projections of the stimuli's
    /// CLIP-Vision embeddings, plus noise. Stage 1 has a known answer.
    #[default]
    VdvaeLatents,
    /// `nsd_io::synth`'s colour gratings of 16 seeded features (the fMRI linear in those): every
    /// step runs, but no model here can reproduce a grating.
    Gratings,
}

impl DemoWorld {
    /// The name of the `--world` option and of the config header.
    pub fn name(self) -> &'static str {
        match self {
            DemoWorld::VdvaeLatents => "vdvae-latents",
            DemoWorld::Gratings => "gratings",
        }
    }
}

/// Stimulus features of [`DemoWorld::VdvaeLatents`] that come from CLIP-Vision (after the
/// [`VDVAE_LATENT_DIM`] latents): enough that the CLIP-Vision regression has a signal to find,
/// few enough that the latents keep most of each voxel's variance (136 of 152 features).
pub const CLIP_FEATURES: usize = 16;

/// Side of the synthetic stimuli, of the stage-1 upscale and of the tiny diffusion model's images.
pub const DEMO_SIDE: u32 = 64;

/// The synthetic dataset of the demo: two subjects, 4 sessions of 150 trials, 600 stimuli of
/// 64x64, of which 40 are shared test images; the features of `world`.
pub fn demo_synth_config(seed: u64, world: DemoWorld) -> SynthConfig {
    let n_features = match world {
        DemoWorld::VdvaeLatents => VDVAE_LATENT_DIM + CLIP_FEATURES,
        DemoWorld::Gratings => 16,
    };
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
        n_features,
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
    let mut c = Config { data: DataSection::of_synthetic(synth), ..Config::default() };
    c.vdvae.layers = tiny.vdvae_latent_blocks;
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

/// Writes `out/models` (tiny models), `out/nsd` (synthetic NSD of [`DemoWorld::VdvaeLatents`])
/// and `out/config.toml`. The seed is recorded in the TOML config, so it must lie in `0..=i64::MAX`.
pub fn write_demo(out: &Path, seed: u64) -> Result<Demo, WorkflowError> {
    write_demo_world(out, seed, DemoWorld::default())
}

/// [`write_demo`] with the stimuli and fMRI of `world`.
pub fn write_demo_world(out: &Path, seed: u64, world: DemoWorld) -> Result<Demo, WorkflowError> {
    if i64::try_from(seed).is_err() {
        return Err(WorkflowError::Invalid(format!(
            "demo seed {seed}: must lie in 0..={} (it is recorded as a TOML integer)",
            i64::MAX
        )));
    }
    let synth = demo_synth_config(seed, world);
    let models = out.join("models");
    let tiny = write_tiny_models(&models, seed)?;
    let drawn = ground_truth(&synth)?;
    let truth = match world {
        DemoWorld::VdvaeLatents => vdvae_world(drawn, &synth, &ModelsDir::new(&models))?,
        DemoWorld::Gratings => drawn,
    };
    let nsd = out.join("nsd");
    write_synthetic_nsd_from(&nsd, &synth, truth)?;
    let config = out.join("config.toml");
    let text = format!(
        "# brain-diffuser demo: SYNTHETIC data and TINY models (seed {seed}, world {}).\n\
         # The paper's options with shapes that fit them; see configs/paper.toml for the real ones.\n\n{}",
        world.name(),
        demo_config(&synth, &tiny).to_toml()
    );
    write_text(&config, &text)?;
    Ok(Demo { nsd, models, config, run: out.join("run"), world })
}

/// The truth of [`DemoWorld::VdvaeLatents`] from the drawn one (its design, encoding weights and
/// `N(0, 1)` features): the first [`VDVAE_LATENT_DIM`] features are the latents of the
/// [`VDVAE_LATENT_BLOCKS`] latent blocks, decoded deterministically (prior mean elsewhere, the
/// output's mode) and upscaled to the stimulus size by pixel repetition; the last
/// [`CLIP_FEATURES`] are replaced by seeded random projections of the stimuli's CLIP-Vision
/// embeddings (the demo's tower), standardised over the stimuli.
fn vdvae_world(drawn: GroundTruth, synth: &SynthConfig, models: &ModelsDir) -> Result<GroundTruth, WorkflowError> {
    let n = synth.n_images;
    let vdvae = models.load_vdvae(Device::Cpu)?;
    let vdvae_error = |error| ModelError::Vdvae { path: models.root().join(VDVAE_SAFETENSORS), error: Box::new(error) };
    let latents = Latents {
        n_blocks: VDVAE_LATENT_BLOCKS,
        dim: VDVAE_LATENT_DIM,
        values: drawn.features.slice(s![.., ..VDVAE_LATENT_DIM]).iter().copied().collect(),
    };
    let deterministic = DecodeOptions { temperature: 0.0, output: OutputDraw::Mode, seed: 0, batch_size: 100 };
    let side = synth.image_size as u32;
    let stimuli: Vec<RgbImage> = vdvae
        .decode(&latents, &deterministic)
        .map_err(vdvae_error)?
        .iter()
        .map(|small| resize(small, side, side, FilterType::Nearest))
        .collect();
    drop(vdvae);

    let vision = models.load_clip_vision(Device::Cpu, Kind::Float)?;
    let clip_error = |error| ModelError::Clip {
        path: models.root().join("versatile-diffusion/image_encoder"),
        error: Box::new(error),
    };
    let embeddings = clip::encode_images_vd(&vision, &stimuli, 100).map_err(clip_error)?;
    let width = embeddings.data.len() / n.max(1);
    let projection = tiny_models::seeded_uniform(synth.seed, "demo.clip-vision-projection", CLIP_FEATURES * width);
    let mut projected = Array2::<f64>::zeros((n, CLIP_FEATURES));
    for (i, row) in embeddings.data.chunks_exact(width).enumerate() {
        for (k, direction) in projection.chunks_exact(width).enumerate() {
            projected[[i, k]] = row.iter().zip(direction).map(|(&e, &d)| f64::from(e) * d).sum();
        }
    }
    let mut features = drawn.features.clone();
    for k in 0..CLIP_FEATURES {
        let column = projected.column(k);
        let mean = column.sum() / n as f64;
        let sd = (column.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64).sqrt().max(1e-12);
        for i in 0..n {
            features[[i, VDVAE_LATENT_DIM + k]] = ((projected[[i, k]] - mean) / sd) as f32;
        }
    }
    let images = stimuli
        .into_iter()
        .map(|image| {
            Array3::from_shape_vec((side as usize, side as usize, 3), image.into_raw())
                .map_err(|e| WorkflowError::Invalid(format!("demo stimulus: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(drawn.with_stimuli(features, images)?)
}

/// Where [`write_demo`] put things.
#[derive(Debug, Clone)]
pub struct Demo {
    pub nsd: PathBuf,
    pub models: PathBuf,
    pub config: PathBuf,
    pub run: PathBuf,
    /// What its stimuli are.
    pub world: DemoWorld,
}

impl fmt::Display for Demo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Wrote a SYNTHETIC NSD ({}) and TINY models ({}).", self.nsd.display(), self.models.display())?;
        match self.world {
            DemoWorld::VdvaeLatents => writeln!(
                f,
                "Its stimuli are decoded by the tiny VDVAE from latents that the fMRI encode, so stage 1 has a\n\
                 known answer (its images should resemble the ground truth); stage 2's tiny RANDOM Versatile\n\
                 Diffusion only shows that the step runs, not what real reconstructions look like.\n"
            )?,
            DemoWorld::Gratings => writeln!(
                f,
                "Its stimuli are colour gratings no tiny model can reproduce: the images show that every step\n\
                 runs, not what real reconstructions look like.\n"
            )?,
        }
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

    /// The default world's stimuli are the VDVAE's 4x4 mosaics (16x16-pixel cells at 64x64); the
    /// gratings world, still available, writes smooth gratings instead.
    #[test]
    fn both_worlds_write_their_stimuli() {
        let dir = tempfile::tempdir().unwrap();
        for world in [DemoWorld::VdvaeLatents, DemoWorld::Gratings] {
            let demo = write_demo_world(&dir.path().join(world.name()), 5, world).unwrap();
            let header = std::fs::read_to_string(&demo.config).unwrap();
            assert!(header.contains(&format!("world {}", world.name())), "{header}");
            let layout = nsd_io::NsdLayout::new(&demo.nsd);
            let images = nsd_io::hdf5::StimulusBrick::open(&layout.stimuli()).unwrap().read(&[0, 1, 2]).unwrap();
            let cells = 16;
            let flat_cells = images.outer_iter().all(|image| {
                image.indexed_iter().all(|((y, x, c), &v)| v == image[[y / cells * cells, x / cells * cells, c]])
            });
            assert_eq!(flat_cells, world == DemoWorld::VdvaeLatents, "{world:?}");
            let spread = images.iter().map(|&v| i32::from(v)).max().unwrap()
                - images.iter().map(|&v| i32::from(v)).min().unwrap();
            assert!(spread > 60, "{world:?}: pixel values span only {spread}");
        }
    }

    #[test]
    fn world_names_are_the_command_line_values() {
        use clap::ValueEnum;
        for world in DemoWorld::value_variants() {
            assert_eq!(world.to_possible_value().map(|v| v.get_name().to_owned()), Some(world.name().to_owned()));
        }
    }

    #[test]
    fn a_seed_that_toml_cannot_record_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("demo");
        let err = write_demo(&out, i64::MAX as u64 + 1).unwrap_err().to_string();
        assert!(err.contains("demo seed 9223372036854775808") && err.contains("0..=9223372036854775807"), "{err}");
        assert!(!out.exists());
    }
}

//! A downstream stage swapped into the pipeline: a k-nearest-neighbour regressor, written here
//! outside the `brain-diffuser` crate, replaces the ridge regressions through the [`Regressor`]
//! trait, and both are scored on the same synthetic data.
//!
//! The regressor predicts, for each test fMRI pattern, the mean features of the `k` training
//! patterns it correlates with best. Nothing in the pipeline knows about it: it is handed over as a
//! factory (`Pipeline::regressor`), exactly as another project's encoder or generator would be.
//!
//! Run with `cargo run --example custom_stage` (after `scripts/ensure-libtorch.sh`). The data and
//! models are the synthetic demo's (`brain_diffuser::demo`): tiny random models, known encoding model.

use std::process::ExitCode;

use brain_diffuser::demo::write_demo;
use brain_diffuser::pipeline::{Predictions, Stimuli};
use brain_diffuser::workflow::RunDir;
use brain_diffuser::workflow::fit::load_subject;
use brain_diffuser::workflow::loaders::StageLoader;
use brain_diffuser::workflow::prepare::StimulusSource;
use brain_diffuser::workflow::steps::Session;
use brain_diffuser::{Config, Pipeline, Regressor, StageError};
use metrics::high_level::two_way_identification;
use ndarray::{Array2, ArrayView1, ArrayView2, Axis, s};

/// k-nearest-neighbour regression on the correlation of fMRI patterns.
struct NearestNeighbours {
    k: usize,
    train: Option<(Array2<f32>, Array2<f32>)>,
}

/// Pearson correlation of two patterns.
fn correlation(a: ArrayView1<f32>, b: ArrayView1<f32>) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().map(|&x| f64::from(x)).sum::<f64>() / n, b.iter().map(|&x| f64::from(x)).sum::<f64>() / n);
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x) - ma, f64::from(y) - mb);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt().max(f64::MIN_POSITIVE)
}

impl Regressor for NearestNeighbours {
    fn name(&self) -> &str {
        "knn-correlation"
    }

    fn fit(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>) -> Result<(), StageError> {
        if x.nrows() != y.nrows() || x.nrows() < self.k {
            return Err(StageError::new(
                self.name(),
                format!("{} fMRI rows, {} feature rows, k = {}", x.nrows(), y.nrows(), self.k),
            ));
        }
        self.train = Some((x.to_owned(), y.to_owned()));
        Ok(())
    }

    fn predict(&self, x: ArrayView2<f32>) -> Result<Array2<f32>, StageError> {
        let (train_x, train_y) =
            self.train.as_ref().ok_or_else(|| StageError::new(self.name(), "predict before fit"))?;
        let mut out = Array2::<f32>::zeros((x.nrows(), train_y.ncols()));
        for (row, mut target) in x.axis_iter(Axis(0)).zip(out.axis_iter_mut(Axis(0))) {
            let mut scored: Vec<(f64, usize)> =
                train_x.axis_iter(Axis(0)).enumerate().map(|(i, t)| (correlation(row, t), i)).collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            for &(_, i) in &scored[..self.k] {
                target.zip_mut_with(&train_y.row(i), |t, &y| *t += y / self.k as f32);
            }
        }
        Ok(out)
    }
}

fn main() -> ExitCode {
    // Logging, and threads that share the CPUs well (docs/ARCHITECTURE.md, "Threads").
    if let Err(e) = brain_diffuser::runtime::init_program("warn") {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn identification(label: &str, truth: &brain_diffuser::pipeline::Features, p: &Predictions) {
    let score = |t: &Array2<f32>, p: &Array2<f32>| two_way_identification(t.view(), p.view()).unwrap_or(f64::NAN);
    println!(
        "  {label:<30} VDVAE {:5.1}%   CLIP-Vision {:5.1}%   CLIP-Text {:5.1}%",
        100.0 * score(&truth.vdvae.test, &p.vdvae),
        100.0 * score(&truth.clip_vision.test, &p.clip_vision),
        100.0 * score(&truth.clip_text.test, &p.clip_text)
    );
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::Path::new("out/custom_stage");
    let demo = write_demo(out, 2023)?;
    let config = Config::load(&demo.config)?;
    let session = Session {
        run: RunDir::new(&demo.run),
        config: config.clone(),
        nsd: nsd_io::NsdLayout::new(&demo.nsd),
        models: brain_diffuser::models::ModelsDir::new(&demo.models),
        subjects: vec![1],
        device: tch::Device::Cpu,
    };
    session.prepare()?;
    let subject = load_subject(&session.run.subject(1))?;
    let brick = nsd_io::hdf5::StimulusBrick::open(&session.nsd.stimuli())?;
    let (train_images, test_images) = (brick.images(&subject.train_ids)?, brick.images(&subject.test_ids)?);
    let stimuli = Stimuli {
        train_images: &train_images,
        test_images: &test_images,
        train_captions: &subject.train_captions.rows,
        test_captions: &subject.test_captions.rows,
    };
    let loader = StageLoader { models: &session.models, config: &config, device: session.device };
    let ridge: Pipeline = loader.pipeline()?;
    let features = ridge.extract(&stimuli)?;

    // The same pipeline with the downstream regressor: only the factory changes.
    let mut knn = loader.pipeline()?;
    knn.regressor = Box::new(|_, _| -> Box<dyn Regressor> { Box::new(NearestNeighbours { k: 5, train: None }) });

    println!("SYNTHETIC DATA AND TINY RANDOM MODELS. Two-way identification of predicted test features (chance 50%):");
    for (label, pipeline) in [("ridge (the paper's)", &ridge), ("k-nearest neighbours (custom)", &knn)] {
        let predictions = pipeline.fit_predict(subject.train_fmri.view(), subject.test_fmri.view(), &features)?;
        identification(label, &features, &predictions);
    }
    let all = knn.fit_predict(subject.train_fmri.view(), subject.test_fmri.view(), &features)?;
    let first = |m: &Array2<f32>| m.slice(s![..4, ..]).to_owned();
    let predictions = Predictions {
        vdvae: first(&all.vdvae),
        clip_vision: first(&all.clip_vision),
        clip_text: first(&all.clip_text),
    };
    let stage1 = knn.initial_guesses(&predictions, config.seeds.vdvae_decode)?;
    let images = knn.refine(stage1, &predictions, config.seeds.diffusion)?;
    for (i, img) in images.iter().enumerate() {
        brain_diffuser::workflow::save_png(&out.join(format!("knn-{i}.png")), img)?;
    }
    println!("wrote {} reconstructions from the custom regressor's predictions to {}", images.len(), out.display());
    Ok(())
}

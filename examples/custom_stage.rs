//! Downstream stages swapped into the workflow the command line runs: a MindEye-style MLP
//! regressor and a test-time-augmented CLIP-Vision encoder, both written here, outside the
//! `brain-diffuser` crate, run through every step (prepare, extract, fit, predict, reconstruct,
//! evaluate) on the synthetic demo, and are scored next to the paper's ridge regressions.
//!
//! - [`MlpRegressor`] implements [`Regressor`]: a few GELU hidden layers in tch, AdamW,
//!   mini-batches drawn from the targets that `fit` streams from the feature files in column
//!   blocks, every draw seeded. It is handed to the workflow with `Session::with_regressor`.
//! - [`FlipAveraged`] implements [`Encoder`]: the mean of the default CLIP-Vision embedding of an
//!   image and of its mirror image, handed over with `Session::with_image_encoder`. Its name keys
//!   its features, so they never mix with the default encoder's.
//!
//! Every step resumes: run the example, interrupt it (Ctrl-C) and run it again; the outputs equal
//! those of an uninterrupted run. Run with `cargo run --example custom_stage` (after
//! `scripts/ensure-libtorch.sh`); outputs go to `out/custom_stage/`. The data and models are the
//! synthetic demo's (`brain_diffuser::demo`): tiny random models and a known encoding model.

use std::path::Path;
use std::process::ExitCode;

use brain_diffuser::demo::write_demo;
use brain_diffuser::models::ModelsDir;
use brain_diffuser::shard::Shard;
use brain_diffuser::workflow::features::FeatureFiles;
use brain_diffuser::workflow::fit::load_predicted;
use brain_diffuser::workflow::loaders::StageLoader;
use brain_diffuser::workflow::steps::Session;
use brain_diffuser::workflow::{DataSplit, RunDir};
use brain_diffuser::{Config, Encoder, PreparedRegressor, Regressor, StageError, TargetGroup, TargetSource};
use image::RgbImage;
use metrics::high_level::two_way_identification;
use ndarray::{Array2, ArrayView2};
use tch::nn::{Module, OptimizerConfig};
use tch::{Device, Kind, Tensor, nn};

/// A MindEye-style MLP from fMRI to one target group: `layers` hidden layers of `hidden` units
/// (GELU), trained with AdamW on z-scored targets for `epochs` epochs of shuffled mini-batches.
#[derive(Debug, Clone)]
struct MlpRegressor {
    hidden: i64,
    layers: usize,
    epochs: usize,
    batch_size: i64,
    learning_rate: f64,
    weight_decay: f64,
    seed: i64,
}

impl Default for MlpRegressor {
    fn default() -> Self {
        Self { hidden: 256, layers: 2, epochs: 60, batch_size: 32, learning_rate: 1e-3, weight_decay: 1e-2, seed: 7 }
    }
}

/// A tch error as the stage error of the MLP.
fn mlp_error(e: tch::TchError) -> StageError {
    StageError::new("mlp", e)
}

/// Column-wise mean and standard deviation of `t` (rows x columns), the deviation floored.
fn column_stats(t: &Tensor) -> (Tensor, Tensor) {
    let mean = t.mean_dim(0, true, Kind::Float);
    let std = t.std_dim(0, false, true).clamp_min(1e-6);
    (mean, std)
}

/// `m` as a `[rows, cols]` f32 tensor.
fn to_tensor(m: ArrayView2<f32>) -> Result<Tensor, StageError> {
    let values: Vec<f32> = m.iter().copied().collect();
    Tensor::from_slice(&values).f_reshape([m.nrows() as i64, m.ncols() as i64]).map_err(mlp_error)
}

impl Regressor for MlpRegressor {
    fn name(&self) -> &str {
        "mlp"
    }

    fn settings(&self, _group: TargetGroup) -> String {
        format!(
            "hidden = {}\nlayers = {}\nepochs = {}\nbatch_size = {}\nlearning_rate = {}\nweight_decay = {}\nseed = {}\n",
            self.hidden, self.layers, self.epochs, self.batch_size, self.learning_rate, self.weight_decay, self.seed
        )
    }

    /// Z-scores the voxels with the training statistics (the evaluation sets too).
    fn prepare(
        &self,
        train_fmri: ArrayView2<f32>,
        evaluation: &[ArrayView2<f32>],
    ) -> Result<Box<dyn PreparedRegressor>, StageError> {
        let x = to_tensor(train_fmri)?;
        let (mean, std) = column_stats(&x);
        let z = |t: Tensor| (t - &mean) / &std;
        let evaluation = evaluation.iter().map(|e| to_tensor(*e).map(z)).collect::<Result<Vec<_>, _>>()?;
        Ok(Box::new(PreparedMlp { x: z(x), evaluation, settings: self.clone() }))
    }
}

/// The z-scored training and evaluation fMRI of one subject.
struct PreparedMlp {
    x: Tensor,
    evaluation: Vec<Tensor>,
    settings: MlpRegressor,
}

/// Reads every target column from `targets`, 4,096 columns at a time, as a `[rows, cols]` tensor.
fn read_targets(targets: &mut dyn TargetSource) -> Result<Tensor, StageError> {
    let (n, d) = (targets.n_rows(), targets.n_cols());
    let mut blocks = Vec::new();
    for start in (0..d).step_by(4096) {
        let cols = start..(start + 4096).min(d);
        let mut block = vec![0f32; n * cols.len()];
        targets.read_columns(cols.clone(), &mut block).map_err(|e| StageError::new("mlp", e))?;
        // Column-major: one row of `block` per target column.
        blocks.push(Tensor::from_slice(&block).f_reshape([cols.len() as i64, n as i64]).map_err(mlp_error)?);
    }
    Tensor::f_cat(&blocks, 0).and_then(|t| t.f_transpose(0, 1)).and_then(|t| t.f_contiguous()).map_err(mlp_error)
}

impl PreparedRegressor for PreparedMlp {
    fn fit_predict(
        &mut self,
        group: TargetGroup,
        targets: &mut dyn TargetSource,
    ) -> Result<Vec<Array2<f32>>, StageError> {
        let s = &self.settings;
        let y = read_targets(targets)?;
        let (mean, std) = column_stats(&y);
        let y = (&y - &mean) / &std;
        let (n, voxels, d) = (self.x.size()[0], self.x.size()[1], y.size()[1]);
        // Seeded per group: the weights' initialisation and every mini-batch permutation.
        let group_index = TargetGroup::ALL.iter().position(|&g| g == group).unwrap_or(0) as i64;
        tch::manual_seed(s.seed * 1_000 + group_index);
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let mut net =
            nn::seq().add(nn::linear(&root / "in", voxels, s.hidden, Default::default())).add_fn(|t| t.gelu("none"));
        for layer in 1..s.layers {
            net = net
                .add(nn::linear(&root / format!("hidden{layer}"), s.hidden, s.hidden, Default::default()))
                .add_fn(|t| t.gelu("none"));
        }
        let net = net.add(nn::linear(&root / "out", s.hidden, d, Default::default()));
        let mut optimizer = nn::AdamW::default().wd(s.weight_decay).build(&vs, s.learning_rate).map_err(mlp_error)?;
        for _ in 0..s.epochs {
            let order = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
            for start in (0..n).step_by(s.batch_size as usize) {
                let batch = order.narrow(0, start, s.batch_size.min(n - start));
                let loss = net
                    .forward(&self.x.index_select(0, &batch))
                    .mse_loss(&y.index_select(0, &batch), tch::Reduction::Mean);
                optimizer.backward_step(&loss);
            }
        }
        tch::no_grad(|| {
            self.evaluation
                .iter()
                .map(|e| {
                    let p = (net.forward(e) * &std + &mean).contiguous();
                    let rows = p.size()[0] as usize;
                    let values = Vec::<f32>::try_from(p.view([-1])).map_err(mlp_error)?;
                    Array2::from_shape_vec((rows, d as usize), values).map_err(|e| StageError::new("mlp", e))
                })
                .collect()
        })
    }
}

/// An encoder's features averaged over each image and its mirror image (test-time augmentation).
struct FlipAveraged<E> {
    inner: E,
    name: String,
}

impl<E: Encoder<Input = RgbImage>> FlipAveraged<E> {
    fn new(inner: E) -> Self {
        let name = format!("flip-averaged({})", inner.name());
        Self { inner, name }
    }
}

impl<E: Encoder<Input = RgbImage>> Encoder for FlipAveraged<E> {
    type Input = RgbImage;

    fn name(&self) -> &str {
        &self.name
    }

    fn feature_shape(&self) -> &[usize] {
        self.inner.feature_shape()
    }

    fn encode(&self, batch: &[RgbImage]) -> Result<Array2<f32>, StageError> {
        let mirrored: Vec<RgbImage> = batch.iter().map(image::imageops::flip_horizontal).collect();
        Ok((self.inner.encode(batch)? + self.inner.encode(&mirrored)?) / 2.0)
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

/// Every step of the command line, in order, on subject 1 of `session`'s run folder; prints the
/// identification of the predicted test features and the metrics of the reconstructions.
fn run_workflow(label: &str, session: &Session) -> Result<(), Box<dyn std::error::Error>> {
    session.prepare()?;
    session.extract(Shard::WHOLE, &TargetGroup::ALL)?;
    session.fit(&TargetGroup::ALL)?;
    session.predict()?;
    session.reconstruct(Shard::WHOLE)?;
    let reports = session.evaluate(&["brain-diffuser".to_owned()], 8)?;
    let subject = session.run.subject(1);
    let predicted = load_predicted(&subject.outputs)?;
    let mut scores = Vec::new();
    for (group, p) in [
        (TargetGroup::Vdvae, &predicted.vdvae),
        (TargetGroup::ClipVision, &predicted.clip_vision),
        (TargetGroup::ClipText, &predicted.clip_text),
    ] {
        let truth = FeatureFiles::open(&subject.features(group, DataSplit::Test), p.nrows())?.read_all()?;
        scores.push(format!("{} {:5.1}%", group.name(), 100.0 * two_way_identification(truth.view(), p.view())?));
    }
    println!("\n{label}\n  identification of predicted test features (chance 50%): {}", scores.join("   "));
    for (_, variant, report) in reports {
        println!("  {} images:\n{}", variant.name(), report.summary());
    }
    Ok(())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let out = Path::new("out/custom_stage");
    let demo = write_demo(&out.join("demo"), 2023)?;
    let config = Config::load(&demo.config)?;
    let session = |run: &str| {
        Session::new(
            RunDir::new(out.join(run)),
            config.clone(),
            nsd_io::NsdLayout::new(&demo.nsd),
            ModelsDir::new(&demo.models),
            vec![1],
            Device::Cpu,
        )
    };
    println!("SYNTHETIC DATA AND TINY RANDOM MODELS: the scores show the stages work, not the method's quality.");
    run_workflow("ridge (the paper's regressions)", &session("ridge"))?;
    run_workflow("MLP regressor (downstream)", &session("mlp").with_regressor(MlpRegressor::default()))?;
    let models = ModelsDir::new(&demo.models);
    let loader = StageLoader { models: &models, config: &config, device: Device::Cpu };
    let flipped = session("mlp-flip-averaged")
        .with_regressor(MlpRegressor::default())
        .with_image_encoder(TargetGroup::ClipVision, FlipAveraged::new(loader.clip_vision()?));
    run_workflow("MLP regressor + flip-averaged CLIP-Vision encoder (both downstream)", &flipped)?;
    println!("\noutputs in {}", out.display());
    Ok(())
}

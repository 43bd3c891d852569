//! Downstream stages swapped into the workflow the command line runs: a MindEye-style MLP
//! regressor and a test-time-augmented CLIP-Vision encoder, both written here, outside the
//! `brain-diffuser` crate, run through every step (prepare, extract, fit, predict, reconstruct,
//! evaluate) on the synthetic demo, and are scored next to the paper's ridge regressions.
//!
//! - [`MlpRegressor`] implements [`Regressor`]: a few GELU hidden layers in tch, AdamW,
//!   mini-batches of training rows, the targets streamed from the feature files one column block
//!   at a time (never all in memory), every draw seeded per group (`seeds::group_seed`). It is handed to the workflow with `Session::with_regressor`.
//! - [`FlipAveraged`] implements [`Encoder`]: the mean of the default CLIP-Vision embedding of an
//!   image and of its mirror image, handed over with `Session::with_image_encoder`. Its name keys
//!   its features, so they never mix with the default encoder's.
//! - [`ColourHistogram`] implements [`Encoder`] for a fourth target group that no generator
//!   consumes (`colour-histogram`: 4 bins per channel): every run extracts, fits and predicts it
//!   next to the paper's three groups, and scores its predictions.
//!
//! Every step resumes: run the example, interrupt it (Ctrl-C) and run it again; the outputs equal
//! those of an uninterrupted run. Run with `cargo run --example custom_stage` (after
//! `scripts/ensure-libtorch.sh`); outputs go to `out/custom_stage/`. The data and models are the
//! synthetic demo's (`brain_diffuser::demo`): tiny random models and a known encoding model.

use std::ops::Range;
use std::path::Path;
use std::process::ExitCode;

use brain_diffuser::demo::write_demo;
use brain_diffuser::models::ModelsDir;
use brain_diffuser::seeds::group_seed;
use brain_diffuser::shard::Shard;
use brain_diffuser::stages::ridge::RidgeRegressor;
use brain_diffuser::workflow::features::FeatureFiles;
use brain_diffuser::workflow::fit::load_subject_predicted;
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

    fn settings(&self, _group: &TargetGroup) -> Result<String, StageError> {
        Ok(format!(
            "hidden = {}\nlayers = {}\nepochs = {}\nbatch_size = {}\nlearning_rate = {}\nweight_decay = {}\nseed = {}\n",
            self.hidden, self.layers, self.epochs, self.batch_size, self.learning_rate, self.weight_decay, self.seed
        ))
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

/// Target columns per block: the MLP holds one block of targets in memory at a time.
const TARGET_BLOCK: usize = 4096;

/// Reads the target columns `cols` from `targets` as a `[rows, cols]` tensor.
fn read_block(targets: &mut dyn TargetSource, cols: Range<usize>) -> Result<Tensor, StageError> {
    let n = targets.n_rows();
    let mut block = vec![0f32; n * cols.len()];
    targets.read_columns(cols.clone(), &mut block).map_err(|e| StageError::new("mlp", e))?;
    // Column-major: one row of `block` per target column.
    let t = Tensor::from_slice(&block).f_reshape([cols.len() as i64, n as i64]).map_err(mlp_error)?;
    t.f_transpose(0, 1).and_then(|t| t.f_contiguous()).map_err(mlp_error)
}

impl PreparedRegressor for PreparedMlp {
    /// Trains the trunk and the output layer on mini-batches of training rows, the targets
    /// streamed from `targets` one block of [`TARGET_BLOCK`] columns at a time (each epoch reads
    /// every block once; a block's loss trains the trunk and that block's output units).
    fn fit_predict(
        &mut self,
        group: &TargetGroup,
        targets: &mut dyn TargetSource,
    ) -> Result<Vec<Array2<f32>>, StageError> {
        let s = &self.settings;
        let (n, voxels, d) = (self.x.size()[0], self.x.size()[1], targets.n_cols());
        let blocks: Vec<Range<usize>> = (0..d).step_by(TARGET_BLOCK).map(|a| a..(a + TARGET_BLOCK).min(d)).collect();
        // Seeded per group (the crate's rule): the weights' initialisation and every mini-batch
        // permutation.
        tch::manual_seed(group_seed(s.seed as u64, group) as i64);
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let mut trunk =
            nn::seq().add(nn::linear(&root / "in", voxels, s.hidden, Default::default())).add_fn(|t| t.gelu("none"));
        for layer in 1..s.layers {
            trunk = trunk
                .add(nn::linear(&root / format!("hidden{layer}"), s.hidden, s.hidden, Default::default()))
                .add_fn(|t| t.gelu("none"));
        }
        let head = nn::linear(&root / "out", s.hidden, d as i64, Default::default());
        let head_of = |cols: &Range<usize>| -> (Tensor, Option<Tensor>) {
            let (start, len) = (cols.start as i64, cols.len() as i64);
            (head.ws.narrow(0, start, len), head.bs.as_ref().map(|b| b.narrow(0, start, len)))
        };
        let mut optimizer = nn::AdamW::default().wd(s.weight_decay).build(&vs, s.learning_rate).map_err(mlp_error)?;
        // Each block's column statistics (z-scored targets are learnt, predictions rescaled).
        let mut stats = Vec::with_capacity(blocks.len());
        for epoch in 0..s.epochs {
            for cols in &blocks {
                let y = read_block(targets, cols.clone())?;
                let (mean, std) = column_stats(&y);
                let y = (&y - &mean) / &std;
                if epoch == 0 {
                    stats.push((mean, std));
                }
                let (w, b) = head_of(cols);
                let order = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
                for start in (0..n).step_by(s.batch_size as usize) {
                    let batch = order.narrow(0, start, s.batch_size.min(n - start));
                    let hidden = trunk.forward(&self.x.index_select(0, &batch));
                    let loss = hidden.linear(&w, b.as_ref()).mse_loss(&y.index_select(0, &batch), tch::Reduction::Mean);
                    optimizer.backward_step(&loss);
                }
            }
        }
        tch::no_grad(|| {
            self.evaluation
                .iter()
                .map(|e| {
                    let hidden = trunk.forward(e);
                    let parts: Vec<Tensor> = blocks
                        .iter()
                        .zip(&stats)
                        .map(|(cols, (mean, std))| {
                            let (w, b) = head_of(cols);
                            hidden.linear(&w, b.as_ref()) * std + mean
                        })
                        .collect();
                    let p = Tensor::f_cat(&parts, 1).and_then(|p| p.f_contiguous()).map_err(mlp_error)?;
                    let rows = p.size()[0] as usize;
                    let values = Vec::<f32>::try_from(p.view([-1])).map_err(mlp_error)?;
                    Array2::from_shape_vec((rows, d), values).map_err(|e| StageError::new("mlp", e))
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

/// A fourth target group: the share of each image's pixels in 4 intensity bins per channel.
struct ColourHistogram;

impl ColourHistogram {
    fn group() -> TargetGroup {
        TargetGroup::new("colour-histogram").expect("a valid group name")
    }
}

impl Encoder for ColourHistogram {
    type Input = RgbImage;

    fn name(&self) -> &str {
        "colour-histogram-4"
    }

    fn feature_shape(&self) -> &[usize] {
        &[3, 4]
    }

    fn encode(&self, batch: &[RgbImage]) -> Result<Array2<f32>, StageError> {
        let mut rows = Array2::zeros((batch.len(), 12));
        for (mut row, image) in rows.rows_mut().into_iter().zip(batch) {
            let share = 1.0 / (image.width() * image.height()) as f32;
            for pixel in image.pixels() {
                for (channel, &value) in pixel.0.iter().enumerate() {
                    row[channel * 4 + usize::from(value / 64)] += share;
                }
            }
        }
        Ok(rows)
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
    let groups = session.groups();
    session.prepare()?;
    session.extract(Shard::WHOLE, &groups)?;
    session.fit(&groups)?;
    session.predict()?;
    session.reconstruct(Shard::WHOLE)?;
    let reports = session.evaluate(&["brain-diffuser".to_owned()], 8)?;
    let subject = session.run.subject(1);
    let predicted = load_subject_predicted(&subject, &groups)?;
    let mut scores = Vec::new();
    for group in &groups {
        let p = predicted.rows(group)?;
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
    // Every run has the fourth group; ridge needs its alpha (the MLP needs nothing more).
    let session = |run: &str| {
        Session::new(
            RunDir::new(out.join(run)),
            config.clone(),
            nsd_io::NsdLayout::new(&demo.nsd),
            ModelsDir::new(&demo.models),
            vec![1],
            Device::Cpu,
        )
        .with_image_encoder(ColourHistogram::group(), ColourHistogram)
    };
    let ridge = RidgeRegressor::from_config(&config.regression)
        .with_alpha(ColourHistogram::group(), ridge::AlphaPolicy::Fixed(config.regression.vdvae_alpha));
    println!("SYNTHETIC DATA AND TINY RANDOM MODELS: the scores show the stages work, not the method's quality.");
    run_workflow("ridge (the paper's regressions)", &session("ridge").with_regressor(ridge))?;
    run_workflow("MLP regressor (downstream)", &session("mlp").with_regressor(MlpRegressor::default()))?;
    let models = ModelsDir::new(&demo.models);
    let loader = StageLoader { models: &models, config: &config, device: Device::Cpu };
    let flipped = session("mlp-flip-averaged")
        .with_regressor(MlpRegressor::default())
        .with_image_encoder(TargetGroup::CLIP_VISION, FlipAveraged::new(loader.clip_vision()?));
    run_workflow("MLP regressor + flip-averaged CLIP-Vision encoder (both downstream)", &flipped)?;
    println!("\noutputs in {}", out.display());
    Ok(())
}

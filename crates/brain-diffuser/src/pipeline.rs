//! The Brain-Diffuser method composed from swappable stages.
//!
//! [`Pipeline`] holds trait objects for every stage: the VDVAE, CLIP-Vision and CLIP-Text
//! [`Encoder`]s, the [`Regressor`] (the same trait the workflow's `fit` calls), the
//! stage-1 [`Generator`] (latents -> initial guesses) and the stage-2 [`Generator`] (initial guesses
//! + embeddings -> reconstructions). Any of them can be a downstream crate's type.
//!
//! The steps are methods so that the command line can cache each one's output: [`Pipeline::extract`],
//! [`Pipeline::fit_predict`], [`Pipeline::initial_guesses`], [`Pipeline::refine`].

use image::RgbImage;
use ndarray::{Array2, Array3, ArrayView2};

use crate::config::Config;
use crate::renormalise::{ColumnStats, renormalise};
use crate::seeds::item_seed;
use crate::stage::single_image;
use crate::{
    Encoder, ExpectedPredictions, Generator, GuidedCondition, LatentCondition, PipelineError, Regressor, StageError,
    check_predictions,
};

/// The three groups of regression targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetGroup {
    /// VDVAE latents of the first decoder blocks.
    Vdvae,
    /// CLIP-Vision token embeddings.
    ClipVision,
    /// CLIP-Text token embeddings.
    ClipText,
}

impl TargetGroup {
    /// All groups, in the reference's order.
    pub const ALL: [TargetGroup; 3] = [TargetGroup::Vdvae, TargetGroup::ClipVision, TargetGroup::ClipText];

    /// The ridge alpha of this group in `config` (50,000 / 60,000 / 100,000 in the paper).
    pub fn alpha(self, config: &Config) -> f64 {
        match self {
            TargetGroup::Vdvae => config.regression.vdvae_alpha,
            TargetGroup::ClipVision => config.regression.clip_vision_alpha,
            TargetGroup::ClipText => config.regression.clip_text_alpha,
        }
    }

    /// A short name for files and reports.
    pub fn name(self) -> &'static str {
        match self {
            TargetGroup::Vdvae => "vdvae",
            TargetGroup::ClipVision => "clip-vision",
            TargetGroup::ClipText => "clip-text",
        }
    }
}

/// Features of the training and test stimuli for the three target groups.
#[derive(Debug, Clone)]
pub struct Features {
    pub vdvae: Split,
    pub clip_vision: Split,
    pub clip_text: Split,
}

/// One feature matrix for the training stimuli and one for the test stimuli.
#[derive(Debug, Clone)]
pub struct Split {
    pub train: Array2<f32>,
    pub test: Array2<f32>,
}

impl Features {
    fn group(&self, group: TargetGroup) -> &Split {
        match group {
            TargetGroup::Vdvae => &self.vdvae,
            TargetGroup::ClipVision => &self.clip_vision,
            TargetGroup::ClipText => &self.clip_text,
        }
    }
}

/// Predicted test features of the three groups, renormalised as the configuration says.
#[derive(Debug, Clone)]
pub struct Predictions {
    pub vdvae: Array2<f32>,
    pub clip_vision: Array2<f32>,
    pub clip_text: Array2<f32>,
}

/// The stimuli of one subject: images and their captions, training and test.
pub struct Stimuli<'a> {
    pub train_images: &'a [RgbImage],
    pub test_images: &'a [RgbImage],
    pub train_captions: &'a [Vec<String>],
    pub test_captions: &'a [Vec<String>],
}

/// Brain-Diffuser composed from trait objects.
pub struct Pipeline {
    pub config: Config,
    pub vdvae: Box<dyn Encoder<Input = RgbImage>>,
    pub clip_vision: Box<dyn Encoder<Input = RgbImage>>,
    pub clip_text: Box<dyn Encoder<Input = Vec<String>>>,
    /// Fits the three groups (prepared once on the training fMRI, as the workflow's `fit`).
    pub regressor: Box<dyn Regressor>,
    pub initial_guess: Box<dyn Generator<Condition = LatentCondition>>,
    pub refiner: Box<dyn Generator<Condition = GuidedCondition>>,
}

/// Encodes `items` in batches of `batch_size`, checking every row's width.
fn encode_all<I>(
    encoder: &dyn Encoder<Input = I>,
    items: &[I],
    batch_size: usize,
) -> Result<Array2<f32>, PipelineError> {
    let width: usize = encoder.feature_shape().iter().product();
    let mut out = Array2::<f32>::zeros((items.len(), width));
    let mut start = 0;
    for chunk in items.chunks(batch_size.max(1)) {
        let rows = encoder.encode_at(start, chunk)?;
        if rows.dim() != (chunk.len(), width) {
            return Err(PipelineError::Shape(format!(
                "encoder '{}' returned {:?} for {} items of {width} values",
                encoder.name(),
                rows.dim(),
                chunk.len()
            )));
        }
        out.slice_mut(ndarray::s![start..start + chunk.len(), ..]).assign(&rows);
        start += chunk.len();
    }
    Ok(out)
}

impl Pipeline {
    /// Extracts the features of every stimulus with the three encoders.
    pub fn extract(&self, stimuli: &Stimuli<'_>) -> Result<Features, PipelineError> {
        let batch = self.config.vdvae.batch_size;
        let split = |encoder: &dyn Encoder<Input = RgbImage>| -> Result<Split, PipelineError> {
            Ok(Split {
                train: encode_all(encoder, stimuli.train_images, batch)?,
                test: encode_all(encoder, stimuli.test_images, batch)?,
            })
        };
        Ok(Features {
            vdvae: split(self.vdvae.as_ref())?,
            clip_vision: split(self.clip_vision.as_ref())?,
            clip_text: Split {
                train: encode_all(self.clip_text.as_ref(), stimuli.train_captions, batch)?,
                test: encode_all(self.clip_text.as_ref(), stimuli.test_captions, batch)?,
            },
        })
    }

    /// Fits the regressor on the training fMRI (prepared once for the three groups) and predicts
    /// the test features, renormalised per [`crate::config::RegressionSection::renormalisation`].
    pub fn fit_predict(
        &self,
        train_fmri: ArrayView2<f32>,
        test_fmri: ArrayView2<f32>,
        features: &Features,
    ) -> Result<Predictions, PipelineError> {
        let train_only = self.config.regression.renormalisation == crate::config::Renormalisation::TrainOnly;
        let mut evaluation = vec![test_fmri];
        let mut expected = vec![ExpectedPredictions { what: "test fMRI", rows: test_fmri.nrows() }];
        if train_only {
            evaluation.push(train_fmri);
            expected.push(ExpectedPredictions { what: "training fMRI", rows: train_fmri.nrows() });
        }
        let mut prepared = self.regressor.prepare(train_fmri, &evaluation)?;
        let mut predict = |group: TargetGroup| -> Result<Array2<f32>, PipelineError> {
            let split = features.group(group);
            if split.train.nrows() != train_fmri.nrows() {
                return Err(PipelineError::Shape(format!(
                    "{}: {} training feature rows for {} training fMRI rows",
                    group.name(),
                    split.train.nrows(),
                    train_fmri.nrows()
                )));
            }
            let name = self.regressor.name();
            let predictions = prepared.fit_predict(group, &mut split.train.view())?;
            let mut sets = check_predictions(name, group, predictions, &expected, split.train.ncols())?.into_iter();
            let test = sets.next().ok_or_else(|| StageError::new(name, "no test predictions"))?;
            let train_prediction_stats = sets.next().map(|train| ColumnStats::of(train.view()));
            let stats = ColumnStats::of(split.train.view());
            renormalise(test.view(), &stats, train_prediction_stats.as_ref(), self.config.regression.renormalisation)
                .map_err(|message| StageError::new(name, message).into())
        };
        Ok(Predictions {
            vdvae: predict(TargetGroup::Vdvae)?,
            clip_vision: predict(TargetGroup::ClipVision)?,
            clip_text: predict(TargetGroup::ClipText)?,
        })
    }

    /// Stage 1: decodes the predicted VDVAE latents into initial guesses, image `i` with the
    /// seed [`crate::seeds::item_seed`]`(seed, i)`, one image per call as the workflow does (a
    /// convolution can round differently at another batch size), so that both give the same bytes.
    pub fn initial_guesses(&self, predictions: &Predictions, seed: u64) -> Result<Vec<RgbImage>, PipelineError> {
        let latents = &predictions.vdvae;
        (0..latents.nrows())
            .map(|i| {
                let condition = LatentCondition { latents: latents.slice(ndarray::s![i..i + 1, ..]).to_owned() };
                Ok(single_image(
                    self.initial_guess.name(),
                    self.initial_guess.generate(&condition, &[item_seed(seed, i)])?,
                )?)
            })
            .collect()
    }

    /// Stage 2: refines the initial guesses under the predicted CLIP embeddings, image `i` with
    /// the seed [`crate::seeds::item_seed`]`(seed, i)`, one image per call (as the workflow).
    pub fn refine(
        &self,
        initial: Vec<RgbImage>,
        predictions: &Predictions,
        seed: u64,
    ) -> Result<Vec<RgbImage>, PipelineError> {
        let tokens = |encoder: &dyn Encoder<Input = RgbImage>| encoder.feature_shape().to_vec();
        let vision = to_tokens(&predictions.clip_vision, &tokens(self.clip_vision.as_ref()))?;
        let text = to_tokens(&predictions.clip_text, self.clip_text.feature_shape())?;
        if vision.dim().0 != initial.len() || text.dim().0 != initial.len() {
            return Err(PipelineError::Shape(format!(
                "{} initial images for {} CLIP-Vision and {} CLIP-Text predictions",
                initial.len(),
                vision.dim().0,
                text.dim().0
            )));
        }
        initial
            .into_iter()
            .enumerate()
            .map(|(i, init)| {
                let row = |m: &Array3<f32>| m.slice(ndarray::s![i..i + 1, .., ..]).to_owned();
                let condition = GuidedCondition { init_images: vec![init], vision: row(&vision), text: row(&text) };
                Ok(single_image(self.refiner.name(), self.refiner.generate(&condition, &[item_seed(seed, i)])?)?)
            })
            .collect()
    }
}

/// Reshapes feature rows into `[n, tokens, width]` with the encoder's feature shape.
fn to_tokens(rows: &Array2<f32>, shape: &[usize]) -> Result<Array3<f32>, PipelineError> {
    let &[tokens, width] = shape else {
        return Err(PipelineError::Shape(format!("a token encoder must have a 2-D feature shape, got {shape:?}")));
    };
    rows.to_shape((rows.nrows(), tokens, width)).map(|view| view.to_owned()).map_err(|e| {
        PipelineError::Shape(format!(
            "{} rows of {} values as {tokens}x{width} tokens: {e}",
            rows.nrows(),
            rows.ncols()
        ))
    })
}

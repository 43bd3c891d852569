//! The three interfaces through which the pipeline composes its stages.
//!
//! Data crosses a stage border in plain, model-independent types: images as [`RgbImage`], features
//! as `f32` rows of an [`Array2`] (one row per item, the item's feature shape flattened in row-major
//! order). Tensors, devices and precisions stay inside the stage that owns them.

use image::RgbImage;
use ndarray::{Array2, Array3, ArrayView2};

use crate::{ConditionInputs, StageError, TargetGroup};
pub use ridge::TargetSource;

/// Turns a batch of inputs (images, or the captions of images) into features.
///
/// Implemented by the VDVAE encoder (images -> 91,168 latent values), CLIP-Vision
/// (images -> 257x768) and CLIP-Text (captions -> 77x768). The pipeline caches features under
/// [`Encoder::name`], so the name must change whenever the features would.
pub trait Encoder {
    /// What one item of a batch is: an [`RgbImage`], or the captions (`Vec<String>`) of one image.
    type Input;

    /// A stable name identifying the model and its settings, used to key caches.
    fn name(&self) -> &str;

    /// The shape of one item's features; a row of [`Encoder::encode`]'s output holds their product.
    fn feature_shape(&self) -> &[usize];

    /// Encodes `batch`, returning one row of `feature_shape().iter().product()` values per item.
    fn encode(&self, batch: &[Self::Input]) -> Result<Array2<f32>, StageError>;

    /// Encodes items `first..first + batch.len()` of a longer sequence. Encoders that draw random
    /// numbers per item (VDVAE's posterior samples) override this so that an item's features do
    /// not depend on how the sequence was cut into batches, shards or resumed runs; the default
    /// ignores `first`.
    fn encode_at(&self, first: usize, batch: &[Self::Input]) -> Result<Array2<f32>, StageError> {
        let _ = first;
        self.encode(batch)
    }
}

/// Learns maps from fMRI rows to the feature rows of each target group, at NSD scale.
///
/// The workflow's `fit` step calls it: [`Regressor::prepare`] once per subject with the training fMRI and the fMRI to predict (the
/// test trials, the ROI patterns, ...), then [`PreparedRegressor::fit_predict`] once per target
/// group, whose targets stream from a [`TargetSource`] in blocks of rows or columns (the CLIP-Vision targets
/// of one subject are 7 GB). Fitting returns the predictions, so nothing can be predicted before
/// it is fitted. Implemented by the `ridge` adapter, which computes one Gram matrix in `prepare`
/// and shares it between the groups.
///
/// ```
/// use brain_diffuser::{PreparedRegressor, Regressor, StageError, TargetGroup, TargetSource};
/// use ndarray::{Array2, ArrayView2};
///
/// /// A downstream regressor: always predicts the mean training target.
/// struct MeanRegressor;
///
/// /// The row counts of the evaluation sets to predict.
/// struct PreparedMean(Vec<usize>);
///
/// impl Regressor for MeanRegressor {
///     fn name(&self) -> &str {
///         "mean"
///     }
///     fn settings(&self, _group: &TargetGroup) -> Result<String, StageError> {
///         Ok(String::new())
///     }
///     fn prepare(&self, _x: ArrayView2<f32>, evaluation: &[ArrayView2<f32>]) -> Result<Box<dyn PreparedRegressor>, StageError> {
///         Ok(Box::new(PreparedMean(evaluation.iter().map(|e| e.nrows()).collect())))
///     }
/// }
///
/// impl PreparedRegressor for PreparedMean {
///     fn fit_predict(&mut self, _group: &TargetGroup, targets: &mut dyn TargetSource) -> Result<Vec<Array2<f32>>, StageError> {
///         let (n, d) = (targets.n_rows(), targets.n_cols());
///         let mut columns = vec![0f32; n * d];
///         targets.read_columns(0..d, &mut columns).map_err(|e| StageError::new("mean", e))?;
///         let mean: Vec<f32> = columns.chunks(n).map(|c| c.iter().sum::<f32>() / n as f32).collect();
///         Ok(self.0.iter().map(|&rows| Array2::from_shape_fn((rows, d), |(_, j)| mean[j])).collect())
///     }
/// }
///
/// let x = Array2::<f32>::zeros((4, 10));
/// let y = ndarray::array![[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]];
/// let mut prepared = MeanRegressor.prepare(x.view(), &[x.view()])?;
/// let predicted = prepared.fit_predict(&TargetGroup::VDVAE, &mut y.view())?;
/// assert_eq!(predicted[0].row(2).to_vec(), vec![4.0, 5.0]);
/// # Ok::<(), StageError>(())
/// ```
pub trait Regressor {
    /// A stable name identifying the method (e.g. `ridge`), recorded with its outputs.
    fn name(&self) -> &str;

    /// The settings the fitted outputs of `group` depend on (ridge: its alpha and intercept), as
    /// TOML lines for the regression's settings record: other settings make the workflow refuse
    /// outputs fitted before. A group the regressor has no settings for (ridge without an alpha
    /// for a downstream group) is an error naming it.
    fn settings(&self, group: &TargetGroup) -> Result<String, StageError>;

    /// Prepares fitting on `train_fmri` (training rows x voxels), to predict the rows of each of
    /// `evaluation` (rows x voxels) once a group is fitted.
    fn prepare(
        &self,
        train_fmri: ArrayView2<f32>,
        evaluation: &[ArrayView2<f32>],
    ) -> Result<Box<dyn PreparedRegressor>, StageError>;
}

/// A [`Regressor`] prepared on one subject's training fMRI and evaluation sets.
pub trait PreparedRegressor {
    /// Fits the targets of `group` (training rows x features, streamed from `targets`) and
    /// returns the predictions of every evaluation set given to [`Regressor::prepare`], in that
    /// order, each rows x features.
    fn fit_predict(
        &mut self,
        group: &TargetGroup,
        targets: &mut dyn TargetSource,
    ) -> Result<Vec<Array2<f32>>, StageError>;
}

/// What one evaluation set's predictions must be: its name (for messages) and row count.
pub struct ExpectedPredictions<'a> {
    pub what: &'a str,
    pub rows: usize,
}

/// Checks the predictions a regressor returned for `group` against what was asked: one matrix
/// per evaluation set, each `rows x targets`. An empty or mis-shaped result is an error naming
/// the regressor, the group and the set, never an output that marks the fit complete.
pub fn check_predictions(
    regressor: &str,
    group: &TargetGroup,
    predictions: Vec<Array2<f32>>,
    expected: &[ExpectedPredictions<'_>],
    targets: usize,
) -> Result<Vec<Array2<f32>>, StageError> {
    if predictions.len() != expected.len() {
        return Err(StageError::new(
            regressor,
            format!(
                "{}: {} prediction matrices for {} evaluation sets ({})",
                group.name(),
                predictions.len(),
                expected.len(),
                expected.iter().map(|e| e.what).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    for (p, e) in predictions.iter().zip(expected) {
        if p.dim() != (e.rows, targets) {
            return Err(StageError::new(
                regressor,
                format!(
                    "{}: predicted {:?} for the {}, expected [{}, {targets}] (rows x targets)",
                    group.name(),
                    p.dim(),
                    e.what,
                    e.rows
                ),
            ));
        }
    }
    Ok(predictions)
}

/// Produces images from predicted features and one seed per item.
///
/// Implemented by the VDVAE decoder ([`LatentCondition`] from the `vdvae` group -> 64x64 images)
/// and by Versatile Diffusion's dual-guided img2img ([`GuidedCondition`] from start images and the
/// `clip-vision` and `clip-text` groups -> 512x512 images). A generator declares the groups it
/// consumes and builds its own condition from their predicted rows, so a downstream generator may
/// consume other groups (a fourth one) or other shapes without changes to the workflow, which holds
/// it as an [`AnyGenerator`]. The caller derives the seeds from the run seed ([`crate::seeds`]);
/// the same condition and seeds always give the same images on the same device and precision.
pub trait Generator {
    /// What the images are generated from.
    type Condition;

    /// A stable name identifying the model and its settings, used to key outputs and reports.
    fn name(&self) -> &str;

    /// The predicted groups this generator is conditioned on: the caller supplies their rows (with
    /// the feature shapes their encoders declared) in [`ConditionInputs::features`], in this order.
    fn consumes(&self) -> Vec<TargetGroup>;

    /// Builds the condition of a batch from the consumed groups' predicted rows and the start
    /// images; rows of another shape than the generator's model takes are an error naming both.
    fn condition(&self, inputs: &ConditionInputs<'_>) -> Result<Self::Condition, StageError>;

    /// Generates one image per item of `condition`, item `k` drawing every random number from
    /// `seeds[k]` alone (so that an item's image does not depend on the other items of the
    /// batch). `seeds` has one entry per item; a generator refuses another count.
    fn generate(&self, condition: &Self::Condition, seeds: &[u64]) -> Result<Vec<RgbImage>, StageError>;
}

/// A [`Generator`] whatever its condition type: what the workflow holds for stage 1 and stage 2,
/// so that either can be any project's generator. Implemented for every [`Generator`].
pub trait AnyGenerator {
    /// [`Generator::name`].
    fn name(&self) -> &str;
    /// [`Generator::consumes`].
    fn consumes(&self) -> Vec<TargetGroup>;
    /// [`Generator::condition`], then [`Generator::generate`].
    fn generate_from(&self, inputs: &ConditionInputs<'_>, seeds: &[u64]) -> Result<Vec<RgbImage>, StageError>;
    /// [`Generator::condition`] alone: the workflow checks the inputs of a folder's first image
    /// before it writes anything there.
    fn check_inputs(&self, inputs: &ConditionInputs<'_>) -> Result<(), StageError>;
}

impl<G: Generator + ?Sized> AnyGenerator for G {
    fn name(&self) -> &str {
        Generator::name(self)
    }
    fn consumes(&self) -> Vec<TargetGroup> {
        Generator::consumes(self)
    }
    fn generate_from(&self, inputs: &ConditionInputs<'_>, seeds: &[u64]) -> Result<Vec<RgbImage>, StageError> {
        self.generate(&self.condition(inputs)?, seeds)
    }
    fn check_inputs(&self, inputs: &ConditionInputs<'_>) -> Result<(), StageError> {
        self.condition(inputs).map(drop)
    }
}

/// The images a generator returned for `items` items; another count is an error naming the
/// generator.
pub(crate) fn checked_images(
    generator: &str,
    images: Vec<RgbImage>,
    items: usize,
) -> Result<Vec<RgbImage>, StageError> {
    match images.len() == items {
        true => Ok(images),
        false => Err(StageError::new(generator, format!("returned {} images for {items} items", images.len()))),
    }
}

/// Checks that `seeds` has one entry per item: generators call it first.
pub fn check_seed_count(generator: &str, items: usize, seeds: &[u64]) -> Result<(), StageError> {
    if seeds.len() == items {
        Ok(())
    } else {
        Err(StageError::new(generator, format!("{} seeds for {items} items: one seed per item expected", seeds.len())))
    }
}

/// Predicted VDVAE latents: one row per image, the first decoder blocks' latents flattened in the
/// reference layout (91,168 values for 31 blocks).
#[derive(Debug, Clone)]
pub struct LatentCondition {
    pub latents: Array2<f32>,
}

impl LatentCondition {
    /// The rows of `group` in `inputs` (the VDVAE decoder's: [`TargetGroup::VDVAE`]).
    pub fn from_inputs(generator: &str, inputs: &ConditionInputs<'_>, group: &TargetGroup) -> Result<Self, StageError> {
        Ok(Self { latents: inputs.group(generator, group)?.rows.to_owned() })
    }
}

/// The condition of the second stage: an initial image per item and the predicted CLIP embeddings
/// that guide its refinement.
#[derive(Debug, Clone)]
pub struct GuidedCondition {
    /// The initial guesses (stage-1 output), any size: the generator resizes them.
    pub init_images: Vec<RgbImage>,
    /// CLIP-Vision token embeddings, `[n, 257, 768]` for ViT-L/14.
    pub vision: Array3<f32>,
    /// CLIP-Text token embeddings, `[n, 77, 768]` for ViT-L/14.
    pub text: Array3<f32>,
}

impl GuidedCondition {
    /// The start images of `inputs` and the rows of the `vision` and `text` groups as token
    /// embeddings in their encoders' `[tokens, width]` shapes (Versatile Diffusion's:
    /// [`TargetGroup::CLIP_VISION`] and [`TargetGroup::CLIP_TEXT`]); one start image per row.
    pub fn from_inputs(
        generator: &str,
        inputs: &ConditionInputs<'_>,
        vision: &TargetGroup,
        text: &TargetGroup,
    ) -> Result<Self, StageError> {
        let (vision, text) =
            (inputs.group(generator, vision)?.tokens(generator)?, inputs.group(generator, text)?.tokens(generator)?);
        let n = inputs.init_images.len();
        if vision.dim().0 != n || text.dim().0 != n {
            return Err(StageError::new(
                generator,
                format!("{n} start images for {} CLIP-Vision and {} CLIP-Text rows", vision.dim().0, text.dim().0),
            ));
        }
        Ok(Self { init_images: inputs.init_images.clone(), vision, text })
    }
}

//! The three interfaces through which the pipeline composes its stages.
//!
//! Data crosses a stage border in plain, model-independent types: images as [`RgbImage`], features
//! as `f32` rows of an [`Array2`] (one row per item, the item's feature shape flattened in row-major
//! order). Tensors, devices and precisions stay inside the stage that owns them.

use image::RgbImage;
use ndarray::{Array2, Array3, ArrayView2};

use crate::StageError;

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

/// Learns a linear map from fMRI rows to feature rows and applies it to new fMRI.
///
/// Implemented by the `ridge` crate. `x` rows are samples (trials or images), columns voxels;
/// `y` rows are the matching feature rows.
///
/// ```
/// use brain_diffuser::{Regressor, StageError};
/// use ndarray::{Array1, Array2, ArrayView2, Axis};
///
/// /// A downstream regressor: always predicts the mean training target.
/// struct MeanRegressor {
///     mean: Option<Array1<f32>>,
/// }
///
/// impl Regressor for MeanRegressor {
///     fn name(&self) -> &str {
///         "mean"
///     }
///     fn fit(&mut self, _x: ArrayView2<f32>, y: ArrayView2<f32>) -> Result<(), StageError> {
///         self.mean = y.mean_axis(Axis(0));
///         self.mean.as_ref().map(|_| ()).ok_or_else(|| StageError::new("mean", "no training rows"))
///     }
///     fn predict(&self, x: ArrayView2<f32>) -> Result<Array2<f32>, StageError> {
///         let mean = self.mean.as_ref().ok_or_else(|| StageError::new("mean", "predict before fit"))?;
///         Ok(mean.broadcast((x.nrows(), mean.len())).expect("a row broadcasts to any row count").to_owned())
///     }
/// }
///
/// let x = Array2::<f32>::zeros((4, 10));
/// let y = ndarray::array![[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]];
/// let mut regressor: Box<dyn Regressor> = Box::new(MeanRegressor { mean: None });
/// regressor.fit(x.view(), y.view())?;
/// let predicted = regressor.predict(x.view())?;
/// assert_eq!(predicted.row(2).to_vec(), vec![4.0, 5.0]);
/// # Ok::<(), StageError>(())
/// ```
pub trait Regressor {
    /// A stable name identifying the method and its settings, used to key caches and reports.
    fn name(&self) -> &str;

    /// Fits the map from `x` (n x voxels) to `y` (n x features).
    fn fit(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>) -> Result<(), StageError>;

    /// Predicts feature rows for the fMRI rows in `x`; fails if called before [`Regressor::fit`].
    fn predict(&self, x: ArrayView2<f32>) -> Result<Array2<f32>, StageError>;
}

/// Produces images from a condition and one seed per item.
///
/// Implemented by the VDVAE decoder ([`LatentCondition`] -> 64x64 images) and by Versatile
/// Diffusion's dual-guided img2img ([`GuidedCondition`] -> 512x512 images). The caller derives
/// the seeds from the run seed ([`crate::seeds`]); the same condition and seeds always give the
/// same images on the same device and precision.
pub trait Generator {
    /// What the images are generated from.
    type Condition;

    /// A stable name identifying the model and its settings, used to key outputs and reports.
    fn name(&self) -> &str;

    /// Generates one image per item of `condition`, item `k` drawing every random number from
    /// `seeds[k]` alone (so that an item's image does not depend on the other items of the
    /// batch). `seeds` has one entry per item; a generator refuses another count.
    fn generate(&self, condition: &Self::Condition, seeds: &[u64]) -> Result<Vec<RgbImage>, StageError>;
}

/// The one image a generator returned for a one-item condition; another count is an error
/// naming the generator.
pub(crate) fn single_image(generator: &str, images: Vec<RgbImage>) -> Result<RgbImage, StageError> {
    let count = images.len();
    match <[RgbImage; 1]>::try_from(images) {
        Ok([image]) => Ok(image),
        Err(_) => Err(StageError::new(generator, format!("returned {count} images for one item"))),
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

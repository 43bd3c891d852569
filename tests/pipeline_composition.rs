//! The pipeline composes any stages: here downstream types (a feature "encoder" that looks up the
//! synthetic ground truth, and generators that paint their conditions) are swapped in for the
//! models, next to the real ridge regressor, and the synthetic NSD's known encoding model says
//! what the predictions must be.

use brain_diffuser::stages::ridge::RidgeRegressor;
use brain_diffuser::{Config, Encoder, Generator, GuidedCondition, LatentCondition, Pipeline, StageError};
use image::{Rgb, RgbImage};
use metrics::high_level::two_way_identification;
use ndarray::{Array2, Axis};

mod common;

/// A downstream encoder: the synthetic truth's features of an image, which it reads from the
/// image's first pixel (the test encodes the NSD id there), tiled `tokens` times.
struct TruthEncoder {
    features: Array2<f32>,
    shape: [usize; 2],
    name: String,
}

impl Encoder for TruthEncoder {
    type Input = RgbImage;
    fn name(&self) -> &str {
        &self.name
    }
    fn feature_shape(&self) -> &[usize] {
        &self.shape
    }
    fn encode(&self, batch: &[RgbImage]) -> Result<Array2<f32>, StageError> {
        let mut out = Array2::zeros((batch.len(), self.shape[0] * self.shape[1]));
        for (row, img) in out.rows_mut().into_iter().zip(batch) {
            let p = img.get_pixel(0, 0);
            let id = usize::from(p[0]) * 256 + usize::from(p[1]);
            let f = self.features.row(id);
            for (k, v) in row.into_iter().enumerate() {
                *v = f[k % f.len()];
            }
        }
        Ok(out)
    }
}

/// Captions carry the id too.
struct TruthTextEncoder(TruthEncoder);

impl Encoder for TruthTextEncoder {
    type Input = Vec<String>;
    fn name(&self) -> &str {
        "truth-text"
    }
    fn feature_shape(&self) -> &[usize] {
        &self.0.shape
    }
    fn encode(&self, batch: &[Vec<String>]) -> Result<Array2<f32>, StageError> {
        let images: Result<Vec<RgbImage>, StageError> = batch
            .iter()
            .map(|caps| {
                let id: usize = caps[0].parse().map_err(|e| StageError::new("truth-text", format!("{e}")))?;
                Ok(id_image(id))
            })
            .collect();
        self.0.encode(&images?)
    }
}

/// Paints each latent row's mean as a grey level.
struct MeanPainter;

impl Generator for MeanPainter {
    type Condition = LatentCondition;
    fn name(&self) -> &str {
        "mean-painter"
    }
    fn generate(&self, c: &LatentCondition, seeds: &[u64]) -> Result<Vec<RgbImage>, StageError> {
        brain_diffuser::check_seed_count(self.name(), c.latents.nrows(), seeds)?;
        Ok(c.latents
            .rows()
            .into_iter()
            .map(|r| {
                let v = (r.mean().unwrap_or(0.0) * 10.0 + 128.0).clamp(0.0, 255.0) as u8;
                RgbImage::from_pixel(8, 8, Rgb([v, v, v]))
            })
            .collect())
    }
}

/// Returns the initial images and checks the embedding shapes it was given.
struct ShapeCheckingRefiner;

impl Generator for ShapeCheckingRefiner {
    type Condition = GuidedCondition;
    fn name(&self) -> &str {
        "identity"
    }
    fn generate(&self, c: &GuidedCondition, _seeds: &[u64]) -> Result<Vec<RgbImage>, StageError> {
        let n = c.init_images.len();
        if c.vision.dim() != (n, 3, 16) || c.text.dim() != (n, 2, 16) {
            return Err(StageError::new("identity", format!("got {:?} and {:?}", c.vision.dim(), c.text.dim())));
        }
        Ok(c.init_images.clone())
    }
}

fn id_image(id: usize) -> RgbImage {
    RgbImage::from_pixel(4, 4, Rgb([(id / 256) as u8, (id % 256) as u8, 0]))
}

#[test]
fn downstream_stages_compose_with_the_ridge_regressions() {
    let (_dir, nsd, subject) = common::synthetic_subject(3);

    let truth = nsd.truth.features.clone();
    let encoder =
        |tokens: usize, name: &str| TruthEncoder { features: truth.clone(), shape: [tokens, 16], name: name.into() };
    let mut config = Config::default();
    config.regression.vdvae_alpha = 100.0;
    config.regression.clip_vision_alpha = 100.0;
    config.regression.clip_text_alpha = 100.0;
    let regressor = Box::new(RidgeRegressor::from_config(&config.regression));
    let pipeline = Pipeline {
        config,
        vdvae: Box::new(encoder(1, "truth-vdvae")),
        clip_vision: Box::new(encoder(3, "truth-vision")),
        clip_text: Box::new(TruthTextEncoder(encoder(2, "truth-text"))),
        regressor,
        initial_guess: Box::new(MeanPainter),
        refiner: Box::new(ShapeCheckingRefiner),
    };

    let images = |ids: &[usize]| ids.iter().map(|&id| id_image(id)).collect::<Vec<_>>();
    let captions = |ids: &[usize]| ids.iter().map(|id| vec![id.to_string()]).collect::<Vec<_>>();
    let (train_images, test_images) = (images(&subject.train_ids), images(&subject.test_ids));
    let (train_captions, test_captions) = (captions(&subject.train_ids), captions(&subject.test_ids));
    let stimuli = brain_diffuser::pipeline::Stimuli {
        train_images: &train_images,
        test_images: &test_images,
        train_captions: &train_captions,
        test_captions: &test_captions,
    };
    let features = pipeline.extract(&stimuli).expect("features");
    assert_eq!(features.clip_vision.train.dim(), (subject.train_ids.len(), 48));
    let predictions =
        pipeline.fit_predict(subject.train_fmri.view(), subject.test_fmri.view(), &features).expect("fit");

    // The renormalised predictions identify their images for every group (chance is 0.5).
    let truth_test = truth.select(Axis(0), &subject.test_ids);
    for (name, predicted) in [("vdvae", &predictions.vdvae), ("clip-text", &predictions.clip_text)] {
        let first = predicted.slice(ndarray::s![.., 0..16]).to_owned();
        let score = two_way_identification(truth_test.view(), first.view()).expect("identification");
        assert!(score > 0.9, "{name}: identification {score:.3}");
    }
    // Faithful renormalisation: every predicted column has the training features' mean and spread.
    let train_std = features.vdvae.train.std_axis(Axis(0), 0.0);
    let pred_std = predictions.vdvae.std_axis(Axis(0), 0.0);
    for (a, b) in train_std.iter().zip(pred_std.iter()) {
        assert!((a - b).abs() < 1e-3 * a.max(1.0), "std {b} vs train {a}");
    }

    let initial = pipeline.initial_guesses(&predictions, 0).expect("stage 1");
    assert_eq!(initial.len(), subject.test_ids.len());
    let final_images = pipeline.refine(initial.clone(), &predictions, 0).expect("stage 2");
    assert_eq!(final_images, initial);
}

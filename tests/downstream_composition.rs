//! Every stage of the workflow swapped for a downstream type, run through the same steps as the
//! command line (`Session`: prepare, extract, fit, predict, reconstruct) on a synthetic NSD whose
//! known encoding model says what the predictions must be. The models folder is empty: nothing of
//! the default stages is needed once every stage is replaced.
//!
//! - the VDVAE and CLIP-Vision groups come from an encoder that looks up the synthetic truth of
//!   each stimulus image (tiled to 3 tokens for CLIP-Vision), the CLIP-Text group from the words
//!   of the captions, and a fourth group, which no generator consumes, from the mean colour;
//! - ridge regresses all four (the fourth with an alpha given in code);
//! - stage 1 paints the mean of each predicted VDVAE row; stage 2 returns its start image and
//!   checks that the token shapes it receives are the encoders' (3x16 and 2x8), not the
//!   configuration's `[clip]` shapes (257x768 and 77x768 by default).

use std::collections::HashMap;

use brain_diffuser::models::ModelsDir;
use brain_diffuser::shard::Shard;
use brain_diffuser::stages::ridge::RidgeRegressor;
use brain_diffuser::workflow::features::FeatureFiles;
use brain_diffuser::workflow::fit::load_subject_predicted;
use brain_diffuser::workflow::steps::Session;
use brain_diffuser::workflow::{DataSplit, RunDir, Variant, load_png};
use brain_diffuser::{
    ConditionInputs, Config, Encoder, Generator, GuidedCondition, LatentCondition, StageError, TargetGroup,
};
use image::{Rgb, RgbImage};
use metrics::high_level::two_way_identification;
use ndarray::{Array2, Axis};
use nsd_io::synth::write_synthetic_nsd;

#[path = "common/synth.rs"]
mod synth;

/// The synthetic truth's features of each stimulus image, found by its pixels, tiled `tokens`
/// times.
struct TruthEncoder {
    ids: HashMap<Vec<u8>, usize>,
    features: Array2<f32>,
    shape: Vec<usize>,
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
        let width: usize = self.shape.iter().product();
        let mut out = Array2::zeros((batch.len(), width));
        for (row, image) in out.rows_mut().into_iter().zip(batch) {
            let id = self.ids.get(image.as_raw()).ok_or_else(|| StageError::new(&self.name, "unknown stimulus"))?;
            let f = self.features.row(*id);
            for (k, v) in row.into_iter().enumerate() {
                *v = f[k % f.len()];
            }
        }
        Ok(out)
    }
}

/// Counts of the synthetic captions' words, as 2 tokens of 8: the tone words, then the nouns.
struct WordCounts;

const WORDS: [[&str; 8]; 2] = [
    ["dark", "dim", "bright", "vivid", "picture", "view", "of", "a"],
    ["stripes", "waves", "spots", "rings", "grid", "clouds", "field", "tower"],
];

impl Encoder for WordCounts {
    type Input = Vec<String>;
    fn name(&self) -> &str {
        "word-counts"
    }
    fn feature_shape(&self) -> &[usize] {
        &[2, 8]
    }
    fn encode(&self, batch: &[Vec<String>]) -> Result<Array2<f32>, StageError> {
        let mut out = Array2::zeros((batch.len(), 16));
        for (mut row, captions) in out.rows_mut().into_iter().zip(batch) {
            for word in captions.iter().flat_map(|c| c.split([' ', ','])) {
                if let Some(k) = WORDS.iter().flatten().position(|w| *w == word) {
                    row[k] += 1.0;
                }
            }
        }
        Ok(out)
    }
}

/// A fourth group that no generator consumes: the mean red, green and blue of each image.
struct MeanColour;

impl Encoder for MeanColour {
    type Input = RgbImage;
    fn name(&self) -> &str {
        "mean-colour"
    }
    fn feature_shape(&self) -> &[usize] {
        &[3]
    }
    fn encode(&self, batch: &[RgbImage]) -> Result<Array2<f32>, StageError> {
        Ok(Array2::from_shape_fn((batch.len(), 3), |(i, c)| {
            let pixels = batch[i].pixels();
            pixels.map(|p| f32::from(p[c])).sum::<f32>() / (batch[i].width() * batch[i].height()) as f32
        }))
    }
}

/// Paints each predicted VDVAE row's mean as a grey level.
struct MeanPainter;

impl Generator for MeanPainter {
    type Condition = LatentCondition;
    fn name(&self) -> &str {
        "mean-painter"
    }
    fn consumes(&self) -> Vec<TargetGroup> {
        vec![TargetGroup::VDVAE]
    }
    fn condition(&self, inputs: &ConditionInputs<'_>) -> Result<LatentCondition, StageError> {
        LatentCondition::from_inputs(self.name(), inputs, &TargetGroup::VDVAE)
    }
    fn generate(&self, c: &LatentCondition, seeds: &[u64]) -> Result<Vec<RgbImage>, StageError> {
        brain_diffuser::check_seed_count(self.name(), c.latents.nrows(), seeds)?;
        Ok(c.latents
            .rows()
            .into_iter()
            .map(|r| RgbImage::from_pixel(8, 8, Rgb([grey(r.mean().unwrap_or(0.0)); 3])))
            .collect())
    }
}

fn grey(mean: f32) -> u8 {
    (mean * 10.0 + 128.0).clamp(0.0, 255.0) as u8
}

/// Returns the start images, after checking the token shapes it was given.
struct ShapeCheckingRefiner;

impl Generator for ShapeCheckingRefiner {
    type Condition = GuidedCondition;
    fn name(&self) -> &str {
        "shape-checking-identity"
    }
    fn consumes(&self) -> Vec<TargetGroup> {
        vec![TargetGroup::CLIP_VISION, TargetGroup::CLIP_TEXT]
    }
    fn condition(&self, inputs: &ConditionInputs<'_>) -> Result<GuidedCondition, StageError> {
        GuidedCondition::from_inputs(self.name(), inputs, &TargetGroup::CLIP_VISION, &TargetGroup::CLIP_TEXT)
    }
    fn generate(&self, c: &GuidedCondition, _seeds: &[u64]) -> Result<Vec<RgbImage>, StageError> {
        let n = c.init_images.len();
        if c.vision.dim() != (n, 3, 16) || c.text.dim() != (n, 2, 8) {
            return Err(StageError::new(self.name(), format!("got {:?} and {:?}", c.vision.dim(), c.text.dim())));
        }
        Ok(c.init_images.clone())
    }
}

#[test]
fn every_stage_swapped_runs_the_workflow_steps_with_a_fourth_target_group() {
    run_swapped(nsd_io::TrainTrials::Averaged);
}

/// MindEye2's regime (one training row per trial) through the same steps: more training rows than
/// training images, every row's features extracted, and the predictions still identify the images.
#[test]
fn single_training_trials_run_the_same_steps() {
    run_swapped(nsd_io::TrainTrials::Single);
}

fn run_swapped(train_trials: nsd_io::TrainTrials) {
    let dir = tempfile::tempdir().unwrap();
    let synth = synth::small_synth_config(3);
    let nsd = write_synthetic_nsd(&dir.path().join("nsd"), &synth).unwrap();
    let truth = &nsd.truth;
    let ids: HashMap<Vec<u8>, usize> =
        (0..synth.n_images).map(|id| (truth.image(id).unwrap().into_raw_vec_and_offset().0, id)).collect();
    assert_eq!(ids.len(), synth.n_images, "every synthetic stimulus is distinct");
    let encoder = |tokens: usize, name: &str| TruthEncoder {
        ids: ids.clone(),
        features: truth.features.clone(),
        shape: if tokens == 1 { vec![16] } else { vec![tokens, 16] },
        name: name.into(),
    };

    let mut config = Config::default();
    config.data.subjects = vec![1];
    config.data.sessions = synth.sessions;
    config.data.trials_per_session = synth.trials_per_session;
    config.data.test_threshold = synth.n_shared;
    config.data.n_images = synth.n_images;
    config.data.stimulus_size = synth.image_size as u32;
    config.data.train_trials = train_trials;
    config.regression.vdvae_alpha = 100.0;
    config.regression.clip_vision_alpha = 100.0;
    config.regression.clip_text_alpha = 100.0;
    let colour = TargetGroup::new("mean-colour").unwrap();
    let ridge =
        RidgeRegressor::from_config(&config.regression).with_alpha(colour.clone(), ridge::AlphaPolicy::Fixed(100.0));
    let empty_models = dir.path().join("no-models");
    let session = Session::new(
        RunDir::new(dir.path().join("run")),
        config.clone(),
        nsd.layout.clone(),
        ModelsDir::new(&empty_models),
        vec![1],
        tch::Device::Cpu,
    )
    .with_regressor(ridge)
    .with_image_encoder(TargetGroup::VDVAE, encoder(1, "truth-vdvae"))
    .with_image_encoder(TargetGroup::CLIP_VISION, encoder(3, "truth-vision"))
    .with_caption_encoder(TargetGroup::CLIP_TEXT, WordCounts)
    .with_image_encoder(colour.clone(), MeanColour)
    .with_decoder(MeanPainter)
    .with_refiner(|_| Ok(Box::new(ShapeCheckingRefiner)));
    let groups = session.groups();
    assert_eq!(groups, [TargetGroup::PAPER.to_vec(), vec![colour.clone()]].concat());

    session.prepare().unwrap();
    session.extract(Shard::WHOLE, &groups).unwrap();
    session.fit(&groups).unwrap();
    session.predict().unwrap();
    session.reconstruct(Shard::WHOLE).unwrap();
    assert!(!empty_models.exists(), "no default stage was loaded");

    let subject = session.run.subject(1);
    let predicted = load_subject_predicted(&subject, &groups).unwrap();
    let n_test = predicted.ids.len();
    assert_eq!(n_test, synth.n_shared);
    // The predictions identify their images for the truth groups (chance is 0.5).
    let truth_test = truth.features.select(Axis(0), &predicted.ids);
    for group in [&TargetGroup::VDVAE, &TargetGroup::CLIP_VISION] {
        let first = predicted.rows(group).unwrap().slice(ndarray::s![.., 0..16]).to_owned();
        let score = two_way_identification(truth_test.view(), first.view()).unwrap();
        assert!(score > 0.9, "{group}: identification {score:.3}");
    }
    // The fourth group went through fit and predict like the others, in its encoder's shape, and
    // its regression's record holds the alpha given in code.
    assert_eq!(predicted.rows(&colour).unwrap().dim(), (n_test, 3));
    let record = std::fs::read_to_string(subject.regression(&colour).join("settings.toml")).unwrap();
    assert!(record.contains("alpha = 100\n") && record.contains("encoder = \"mean-colour\""), "{record}");
    // One training row per image (160 training images), or per trial (each image shown on average
    // (600 trials - 40 x 3 test trials) / 160 = 3 times).
    let (_, train_ids) = brain_diffuser::workflow::fit::cache_ids(&subject, DataSplit::Train).unwrap();
    let rows = match train_trials {
        nsd_io::TrainTrials::Averaged => 160,
        nsd_io::TrainTrials::Single => 480,
    };
    assert_eq!(train_ids.len(), rows);
    // Faithful renormalisation: every predicted column has the training features' spread.
    let train = FeatureFiles::open(&subject.features(&TargetGroup::VDVAE, DataSplit::Train), rows)
        .and_then(|f| f.read_all())
        .unwrap();
    let (train_std, pred_std) =
        (train.std_axis(Axis(0), 0.0), predicted.rows(&TargetGroup::VDVAE).unwrap().std_axis(Axis(0), 0.0));
    for (a, b) in train_std.iter().zip(pred_std.iter()) {
        assert!((a - b).abs() < 1e-3 * a.max(1.0), "std {b} vs train {a}");
    }
    // Stage 1 is the painter's image of each predicted row; stage 2 returned it unchanged.
    for i in 0..n_test {
        let name = format!("{i:04}.png");
        let stage1 = load_png(&subject.outputs.reconstructions(Variant::OnlyVdvae).join(&name)).unwrap();
        let mean = predicted.rows(&TargetGroup::VDVAE).unwrap().row(i).mean().unwrap();
        assert_eq!(stage1, RgbImage::from_pixel(8, 8, Rgb([grey(mean); 3])), "image {i}");
        assert_eq!(load_png(&subject.outputs.reconstructions(Variant::BrainDiffuser).join(&name)).unwrap(), stage1);
    }
    let record =
        std::fs::read_to_string(subject.outputs.reconstructions(Variant::BrainDiffuser).join("settings.toml")).unwrap();
    assert!(record.contains("consumes = [\"clip-vision [3, 16]\", \"clip-text [2, 8]\"]"), "{record}");
}

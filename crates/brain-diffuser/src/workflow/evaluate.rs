//! `evaluate`: scores each variant's reconstructions against the test stimuli under the configured
//! protocols (the metrics crate does the work; networks whose weights are absent are skipped).
//! The protocols are the metrics crate's, as the configuration runs them
//! ([`crate::config::EvaluationSection::protocol`]: `evaluation.ssim` picks the `brain-diffuser`
//! protocol's SSIM). Every report also holds MindEye's image and brain retrieval of the folder's
//! predicted CLIP-Vision embeddings ([`clip_vision_retrieval`]).

use std::path::Path;

use metrics::high_level::retrieval::{RetrievalScores, retrieval};
use metrics::{EvaluationReport, Extractors, Protocol};
use tracing::warn;

use super::features::FeatureFiles;
use super::fit::{load_predicted_ids, read_predicted_rows};
use super::{DataSplit, OutputDir, SubjectDir, Variant, WorkflowError};
use crate::TargetGroup;
use crate::config::Config;

/// What the retrieval metrics compare, as their report rows say.
pub const RETRIEVAL_EMBEDDINGS: &str =
    "predicted clip-vision (predicted/clip-vision.npy) vs extracted clip-vision of the test images";

/// MindEye's image and brain retrieval ([`metrics::high_level::retrieval`]) of the predicted
/// CLIP-Vision embeddings of `outputs` against the CLIP-Vision embeddings extracted from the test
/// images (`order`'s features: the subject whose test order the predicted rows follow), with the
/// configured candidates and draws and `seeds.retrieval`. A test set smaller than
/// `evaluation.retrieval_candidates` is scored with all of its images, with a warning (the scores
/// then have another chance level than MindEye's 1/300).
pub fn clip_vision_retrieval(
    outputs: &OutputDir,
    order: &SubjectDir,
    config: &Config,
) -> Result<Option<RetrievalScores>, WorkflowError> {
    let n = load_predicted_ids(outputs)?.len();
    let Some(options) = config.evaluation.retrieval(n, config.seeds.retrieval) else { return Ok(None) };
    if options.candidates < config.evaluation.retrieval_candidates {
        warn!(
            images = n,
            configured = config.evaluation.retrieval_candidates,
            "fewer test images than retrieval candidates: every image is a candidate (chance 1/{n})"
        );
    }
    let group = TargetGroup::CLIP_VISION;
    let predicted = read_predicted_rows(outputs, &group, n)?;
    let truth = FeatureFiles::open(&order.features(&group, DataSplit::Test), n)?.read_all()?;
    if truth.dim() != predicted.dim() {
        return Err(WorkflowError::Invalid(format!(
            "retrieval: predicted clip-vision rows {:?} of {} and extracted test features {:?} differ in shape",
            predicted.dim(),
            outputs.root().display(),
            truth.dim()
        )));
    }
    Ok(Some(retrieval(truth.view(), predicted.view(), &options)?))
}

/// Scores `variant` of `outputs` against the ground-truth folder under `protocol` and writes
/// `metrics/<variant>/<protocol name>/metrics.{json,csv}` (the report holds the whole protocol,
/// its SSIM variant included, and the `retrieval` scores of the folder's predictions when given).
/// Returns `None` when the variant has no reconstructions.
pub fn evaluate_variant(
    outputs: &OutputDir,
    ground_truth: &Path,
    variant: Variant,
    protocol: &Protocol,
    extractors: &Extractors<'_>,
    batch_size: usize,
    retrieval: Option<&RetrievalScores>,
) -> Result<Option<EvaluationReport>, WorkflowError> {
    let folder = outputs.reconstructions(variant);
    if !folder.is_dir() {
        return Ok(None);
    }
    let mut report = metrics::evaluate_folders(ground_truth, &folder, protocol, extractors, batch_size)?;
    if let Some(scores) = retrieval {
        report = report.with_retrieval(scores.clone(), RETRIEVAL_EMBEDDINGS);
    }
    report.write(&outputs.metrics(variant, &protocol.name))?;
    Ok(Some(report))
}

/// The shuffled pairings of [`shuffled_control`]: ground truth `i` against reconstruction `i + k`,
/// `k` = 1..=5 (those below the number of images), 200 null pairs for 40 test images.
pub const CONTROL_SHIFTS: [usize; 5] = [1, 2, 3, 4, 5];

/// PixCorr and SSIM of `variant`'s reconstructions in `outputs` against the ground truth and
/// against shuffled pairings of the same images ([`CONTROL_SHIFTS`]), under the `brain-diffuser`
/// protocol as configured: how far the images lie above what unrelated images of the same test
/// set score. The quickstart prints it for stage 1 and the end-to-end test asserts it.
pub fn shuffled_control(
    outputs: &OutputDir,
    ground_truth: &Path,
    variant: Variant,
    config: &Config,
) -> Result<metrics::ShuffledControl, WorkflowError> {
    let pairs = metrics::load_pairs(ground_truth, &outputs.reconstructions(variant))?;
    let protocol = config.evaluation.protocol(&metrics::Protocol::brain_diffuser().name)?;
    let shifts: Vec<usize> = CONTROL_SHIFTS.into_iter().filter(|&k| k < pairs.names.len()).collect();
    Ok(metrics::shuffled_control(&pairs.ground_truths, &pairs.reconstructions, &protocol, &shifts)?)
}

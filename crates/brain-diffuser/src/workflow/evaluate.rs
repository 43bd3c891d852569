//! `evaluate`: scores each variant's reconstructions against the test stimuli under the configured
//! protocols (the metrics crate does the work; networks whose weights are absent are skipped).
//! The protocols are the metrics crate's, as the configuration runs them
//! ([`crate::config::EvaluationSection::protocol`]: `evaluation.ssim` picks the `brain-diffuser`
//! protocol's SSIM).

use std::path::Path;

use metrics::{EvaluationReport, Extractors, Protocol};

use super::{OutputDir, Variant, WorkflowError};

/// Scores `variant` of `outputs` against the ground-truth folder under `protocol` and writes
/// `metrics/<variant>/<protocol name>/metrics.{json,csv}` (the report holds the whole protocol,
/// its SSIM variant included). Returns `None` when the variant has no reconstructions.
pub fn evaluate_variant(
    outputs: &OutputDir,
    ground_truth: &Path,
    variant: Variant,
    protocol: &Protocol,
    extractors: &Extractors<'_>,
    batch_size: usize,
) -> Result<Option<EvaluationReport>, WorkflowError> {
    let folder = outputs.reconstructions(variant);
    if !folder.is_dir() {
        return Ok(None);
    }
    let report = metrics::evaluate_folders(ground_truth, &folder, protocol, extractors, batch_size)?;
    report.write(&outputs.metrics(variant, &protocol.name))?;
    Ok(Some(report))
}

//! `evaluate`: scores each variant's reconstructions against the test stimuli under the configured
//! protocols (the metrics crate does the work; networks whose weights are absent are skipped).

use std::path::Path;

use metrics::{EvaluationReport, Extractors, Protocol};

use super::{OutputDir, Variant, WorkflowError};

/// Scores `variant` of `outputs` against the ground-truth folder under `protocol` and writes
/// `metrics/<variant>/<protocol>/metrics.{json,csv}`. Returns `None` when the variant has no
/// reconstructions.
pub fn evaluate_variant(
    outputs: &OutputDir,
    ground_truth: &Path,
    variant: Variant,
    protocol_name: &str,
    extractors: &Extractors<'_>,
    batch_size: usize,
) -> Result<Option<EvaluationReport>, WorkflowError> {
    let folder = outputs.reconstructions(variant);
    if !folder.is_dir() {
        return Ok(None);
    }
    let protocol = Protocol::by_name(protocol_name)?;
    let report = metrics::evaluate_folders(ground_truth, &folder, &protocol, extractors, batch_size)?;
    report.write(&outputs.metrics(variant, protocol_name))?;
    Ok(Some(report))
}

//! `report`: one picture per run — test images down the rows, and across the columns the ground
//! truth, then stage 1 and the final reconstruction of each subject (and of the subject average)
//! — with the metrics table of every variant and protocol below it (also as `metrics.md`), and the
//! self-contained report page `report/index.html` ([`super::report_page`]).

use std::path::{Path, PathBuf};

use image::RgbImage;
use metrics::EvaluationReport;

use super::fit::load_subject_predicted_ids;
use super::prepare::image_name;
use super::report_page::{ReportOutput, write_page};
use super::{OutputDir, RunDir, Variant, WorkflowError, load_png, save_png, write_text};
use crate::report::{MAX_CELL, MIN_CELL, ReportError, check_grid, labelled_grid, stack_vertical, table_image};

/// Reads the metrics a previous `evaluate` wrote, if any.
pub fn read_metrics(
    outputs: &OutputDir,
    variant: Variant,
    protocol: &str,
) -> Result<Option<EvaluationReport>, WorkflowError> {
    let path = outputs.metrics(variant, protocol).join("metrics.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| WorkflowError::io(&path, e))?;
    serde_json::from_str(&text).map(Some).map_err(|e| WorkflowError::File { path, message: e.to_string() })
}

/// The metrics of every output folder, variant and protocol found: a header and rows of cells.
pub fn metrics_table(
    outputs: &[(String, OutputDir)],
    protocols: &[String],
) -> Result<(Vec<String>, Vec<Vec<String>>), WorkflowError> {
    let mut header: Vec<String> = vec!["outputs".into(), "variant".into(), "protocol".into()];
    let mut rows = Vec::new();
    for (label, outputs) in outputs {
        for variant in Variant::ALL {
            for protocol in protocols {
                let Some(report) = read_metrics(outputs, variant, protocol)? else { continue };
                for r in &report.rows {
                    if !header.contains(&r.metric) {
                        header.push(r.metric.clone());
                    }
                }
                // A protocol run with another SSIM than its published one (`evaluation.ssim`) says so.
                let published = metrics::Protocol::by_name(protocol).map(|p| p.ssim).ok();
                let shown = match report.protocol.ssim {
                    ssim if Some(ssim) == published => protocol.clone(),
                    metrics::protocol::SsimVariant::Columns1d => format!("{protocol} (column-wise SSIM)"),
                    metrics::protocol::SsimVariant::Gaussian2d => format!("{protocol} (2-D SSIM)"),
                };
                let mut row = vec![label.clone(), variant.name().to_owned(), shown];
                for metric in &header[3..] {
                    row.push(match report.value(metric) {
                        Some(v) if metric.starts_with("AlexNet") || metric == "Inception" || metric == "CLIP" => {
                            format!("{:.1}%", 100.0 * v)
                        }
                        Some(v) => format!("{v:.3}"),
                        None => "-".into(),
                    });
                }
                rows.push(row);
            }
        }
    }
    for row in &mut rows {
        row.resize(header.len(), "-".into());
    }
    Ok((header, rows))
}

/// The line of `metrics.md` when no output has metrics.
pub const NOT_EVALUATED: &str = "not evaluated yet: run `brain-diffuser evaluate`";

/// White pixels between the cells of the report grid.
const GUTTER: u32 = 4;

fn image_or_blank(path: &Path, side: u32) -> Result<RgbImage, WorkflowError> {
    if path.exists() { load_png(path) } else { Ok(RgbImage::from_pixel(side, side, image::Rgb([255, 255, 255]))) }
}

/// The files `report` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFiles {
    /// `report/grid.png`: the picture for papers.
    pub grid: PathBuf,
    /// `report/metrics.md`: the metrics table.
    pub metrics: PathBuf,
    /// `report/index.html`: the self-contained page (images under `report/images/`).
    pub page: PathBuf,
}

/// Writes `report/grid.png`, `report/metrics.md` and the page `report/index.html` for `subjects`
/// (and the average when present), showing the first `images` test images of the first subject's
/// order (at least 1), in grid cells of `cell` pixels ([`MIN_CELL`]..=[`MAX_CELL`]). A grid too
/// large to draw is refused before any image is read.
pub fn write_report(
    run: &RunDir,
    subjects: &[u8],
    protocols: &[String],
    images: usize,
    cell: u32,
) -> Result<ReportFiles, WorkflowError> {
    let Some(&first) = subjects.first() else {
        return Err(WorkflowError::Invalid("the report needs at least one subject".into()));
    };
    if images == 0 {
        return Err(ReportError::NoImages.into());
    }
    if !(MIN_CELL..=MAX_CELL).contains(&cell) {
        return Err(ReportError::Cell { cell }.into());
    }
    let mut outputs: Vec<(String, OutputDir)> =
        subjects.iter().map(|&s| (format!("subj{s:02}"), run.subject(s).outputs)).collect();
    if run.average().predicted_ids().exists() {
        outputs.push(("average".into(), run.average()));
    }
    // Every output's ids are checked against the subject cache whose ground truths they follow.
    let order = load_subject_predicted_ids(&run.subject(first))?;
    let mut titles = vec!["ground truth".to_owned()];
    let mut columns = Vec::new();
    let mut page_outputs = Vec::new();
    for (k, (label, out)) in outputs.iter().enumerate() {
        let ids = match subjects.get(k) {
            Some(&s) => load_subject_predicted_ids(&run.subject(s))?,
            None => super::average::load_average_ids(run)?.0,
        };
        let position: std::collections::HashMap<usize, usize> =
            ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
        for variant in [Variant::OnlyVdvae, Variant::BrainDiffuser] {
            titles.push(format!("{label} {}", if variant == Variant::OnlyVdvae { "stage 1" } else { "final" }));
            columns.push((out.reconstructions(variant), position.clone()));
        }
        page_outputs.push(ReportOutput { label: label.clone(), out: out.clone(), position });
    }
    // The tiles alone must fit (the labels and the table add little): refuse before reading images.
    check_grid(images.min(order.len()), titles.len(), cell, GUTTER)?;
    let truth = run.subject(first).ground_truth();
    let mut rows = Vec::new();
    for (i, id) in order.iter().take(images).enumerate() {
        let mut row = vec![image_or_blank(&truth.join(image_name(i)), cell)?];
        for (folder, position) in &columns {
            let path = position.get(id).map(|&k| folder.join(image_name(k)));
            row.push(match path {
                Some(p) => image_or_blank(&p, cell)?,
                None => image_or_blank(Path::new(""), cell)?,
            });
        }
        rows.push((format!("nsd {id}"), row));
    }
    let grid = labelled_grid(&titles, &rows, cell, GUTTER)?;
    let (header, table) = metrics_table(&outputs, protocols)?;
    let picture = if table.is_empty() { grid } else { stack_vertical(&[grid, table_image(&header, &table)?], 12)? };
    save_png(&run.report().join("grid.png"), &picture)?;
    let mut md = format!("| {} |\n|{}\n", header.join(" | "), "---|".repeat(header.len()));
    for row in &table {
        md += &format!("| {} |\n", row.join(" | "));
    }
    if table.is_empty() {
        tracing::warn!(run = %run.root().display(), "no metrics in the report: not evaluated yet (run `brain-diffuser evaluate`)");
        md += &format!("\n{NOT_EVALUATED}\n");
    }
    let metrics = run.report().join("metrics.md");
    write_text(&metrics, &md)?;
    let page = write_page(run, &page_outputs, &order, &truth, protocols, images)?;
    Ok(ReportFiles { grid: run.report().join("grid.png"), metrics, page })
}

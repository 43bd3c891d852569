//! `report`'s page: `<run>/report/index.html`, a self-contained folder (the page, `figure7.svg` and the
//! images it shows, copied under `report/images/` and linked by relative paths) that opens from the
//! local disk with no server and no network: inline CSS, one small inline script, no external fonts,
//! scripts or styles. It shows, per subject and for the subject average, the ground truth next to every
//! variant present (stage 1 = `only-vdvae`, final = `brain-diffuser`, then the ablations); the metrics
//! of every protocol next to the published rows ([`crate::report::published`]); the ablation table;
//! the ROI-optimal images; and Figure 7 (a `plotters` SVG chart with SEM error bars) when
//! `weights-roi` has run.
//!
//! Metrics are read from each `metrics.json` generically: every `{metric, value, better}` entry of its
//! `rows` becomes a column, so metrics added to the evaluation later appear without changes here.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::prepare::image_name;
use super::roi::roi_image_names;
use super::{OutputDir, RunDir, Variant, WorkflowError, write_text};
use crate::report::BarSeries;
use crate::report::bar_chart_svg;
use crate::report::published::{PublishedRow, format_value, metric_key, published_rows};
use crate::roi::ROI_NAMES;

/// One output folder of the run: a subject's or the subject average's.
pub struct ReportOutput {
    /// `subj01`, ..., or `average`.
    pub label: String,
    /// The folder.
    pub out: OutputDir,
    /// Position of each NSD id in the output's rows (its image file numbers).
    pub position: HashMap<usize, usize>,
}

/// The column order of a variant on the page: stage 1, the final model, then the ablations.
const PAGE_VARIANTS: [Variant; 5] =
    [Variant::OnlyVdvae, Variant::BrainDiffuser, Variant::NoVdvae, Variant::NoClipText, Variant::NoClipVision];

fn variant_title(variant: Variant) -> String {
    match variant {
        Variant::OnlyVdvae => "stage 1 (only-vdvae)".into(),
        Variant::BrainDiffuser => "final (brain-diffuser)".into(),
        v => format!("final, {}", v.name()),
    }
}

/// Escapes text for HTML content and attribute values. Written here: five replacements, less than
/// a dependency would cost; every string the page shows goes through it.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One metric of a `metrics.json`: name, value, and `"higher"`/`"lower"` when given.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricValue {
    pub metric: String,
    pub value: f64,
    pub better: Option<String>,
}

/// The metrics of one `metrics.json` ([`read_metric_values`]).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsFile {
    /// Every metric, in the file's order.
    pub values: Vec<MetricValue>,
    /// Set when the protocol ran with another SSIM than its published one, e.g. `"Gaussian2d SSIM"`.
    pub note: Option<String>,
}

/// The metrics of one `metrics.json`, read generically: every entry of `rows` with a string `metric`
/// and a numeric `value` (a `null` value, as JSON writes a non-finite number, reads as NaN), and a
/// note when the protocol ran with another SSIM than its published one. `None` when the file is absent.
pub fn read_metric_values(path: &Path) -> Result<Option<MetricsFile>, WorkflowError> {
    if !path.exists() {
        return Ok(None);
    }
    let bad = |message: String| WorkflowError::File { path: path.to_owned(), message };
    let text = std::fs::read_to_string(path).map_err(|e| WorkflowError::io(path, e))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let rows = json.get("rows").and_then(|r| r.as_array()).ok_or_else(|| bad("expected a `rows` array".into()))?;
    let mut values = Vec::with_capacity(rows.len());
    for (k, row) in rows.iter().enumerate() {
        let metric = row.get("metric").and_then(|m| m.as_str());
        let value = row.get("value").map(|v| if v.is_null() { Some(f64::NAN) } else { v.as_f64() });
        let (Some(metric), Some(Some(value))) = (metric, value) else {
            return Err(bad(format!("rows[{k}]: expected a string `metric` and a numeric `value`, found {row}")));
        };
        let better = row.get("better").and_then(|b| b.as_str()).map(str::to_owned);
        values.push(MetricValue { metric: metric.to_owned(), value, better });
    }
    let ssim: Option<metrics::protocol::SsimVariant> =
        json.get("protocol").and_then(|p| p.get("ssim")).and_then(|s| serde_json::from_value(s.clone()).ok());
    let name = json.get("protocol").and_then(|p| p.get("name")).and_then(|n| n.as_str()).unwrap_or("");
    let published = metrics::Protocol::by_name(name).map(|p| p.ssim).ok();
    let note = match ssim {
        Some(s) if published.is_some() && Some(s) != published => Some(format!("{s:?} SSIM")),
        _ => None,
    };
    Ok(Some(MetricsFile { values, note }))
}

/// A row of a metrics table: its label, whether it is published, and its values.
struct TableRow {
    label: String,
    published: bool,
    values: Vec<MetricValue>,
}

impl TableRow {
    fn ours(label: String, values: Vec<MetricValue>) -> Self {
        Self { label, published: false, values }
    }

    fn published(row: &PublishedRow) -> Self {
        let variant =
            if row.variant == Variant::BrainDiffuser.name() { String::new() } else { format!(", {}", row.variant) };
        Self {
            label: format!("published: {}, {}{variant}", row.source, row.what),
            published: true,
            values: row.values.iter().map(|&(m, v)| MetricValue { metric: m.into(), value: v, better: None }).collect(),
        }
    }
}

/// An HTML table of `rows`: one column per metric (by [`metric_key`], in order of first appearance),
/// an arrow for the better direction when a row names it, `-` for a metric a row lacks.
fn metrics_table_html(rows: &[TableRow]) -> String {
    let mut columns: Vec<(String, String, Option<String>)> = Vec::new(); // key, name, better
    for row in rows {
        for m in &row.values {
            let key = metric_key(&m.metric);
            match columns.iter_mut().find(|c| c.0 == key) {
                Some(c) => {
                    if c.2.is_none() {
                        c.2.clone_from(&m.better);
                    }
                }
                None => columns.push((key, m.metric.clone(), m.better.clone())),
            }
        }
    }
    let mut html = String::from("<table class=\"metrics\"><thead><tr><th></th>");
    for (_, name, better) in &columns {
        let arrow = match better.as_deref() {
            Some("higher") => " &uarr;",
            Some("lower") => " &darr;",
            _ => "",
        };
        let _ = write!(html, "<th>{}{arrow}</th>", escape(name));
    }
    html.push_str("</tr></thead><tbody>");
    for row in rows {
        let class = if row.published { " class=\"published\"" } else { "" };
        let _ = write!(html, "<tr{class}><th>{}</th>", escape(&row.label));
        for (key, name, _) in &columns {
            let cell = row.values.iter().find(|m| &metric_key(&m.metric) == key).map(|m| format_value(name, m.value));
            let _ = write!(html, "<td>{}</td>", escape(cell.as_deref().unwrap_or("-")));
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>\n");
    html
}

/// The mean of each metric over `rows` (metrics every row has, in the first row's order).
fn mean_row(rows: &[&Vec<MetricValue>]) -> Vec<MetricValue> {
    let Some(first) = rows.first() else { return Vec::new() };
    first
        .iter()
        .filter_map(|m| {
            let key = metric_key(&m.metric);
            let values: Vec<f64> =
                rows.iter().filter_map(|r| r.iter().find(|x| metric_key(&x.metric) == key).map(|x| x.value)).collect();
            (values.len() == rows.len())
                .then(|| MetricValue { value: values.iter().sum::<f64>() / values.len() as f64, ..m.clone() })
        })
        .collect()
}

/// Copies `from` to `report/<relative>` and returns `relative` (with `/` separators) for the page.
fn copy_into(report: &Path, from: &Path, relative: &str) -> Result<String, WorkflowError> {
    let to = report.join(relative);
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| WorkflowError::io(parent, e))?;
    }
    std::fs::copy(from, &to).map_err(|e| WorkflowError::File {
        path: from.to_owned(),
        message: format!("copying into the report folder ({}): {e}", to.display()),
    })?;
    Ok(relative.to_owned())
}

fn image_cell(report: &Path, from: &Path, relative: &str, alt: &str) -> Result<String, WorkflowError> {
    if !from.is_file() {
        return Ok("<td class=\"missing\">missing</td>".into());
    }
    let src = copy_into(report, from, relative)?;
    Ok(format!("<td><img src=\"{}\" alt=\"{}\"></td>", escape(&src), escape(alt)))
}

/// The Figure 7 rows of `weights-roi/figure7.csv` (over subjects).
#[derive(Debug, Clone, serde::Deserialize)]
struct Figure7Row {
    roi: String,
    subjects: usize,
    clip_vision: f64,
    clip_vision_sem: f64,
    clip_text: f64,
    clip_text_sem: f64,
}

fn read_figure7(path: &Path) -> Result<Vec<Figure7Row>, WorkflowError> {
    let bad = |e: csv::Error| WorkflowError::File { path: path.to_owned(), message: e.to_string() };
    let mut reader = csv::Reader::from_path(path).map_err(bad)?;
    reader.deserialize().collect::<Result<Vec<Figure7Row>, _>>().map_err(bad)
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#111;background:#fff}\
h1{font-size:1.5em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}h3{margin-bottom:.3em}\
table{border-collapse:collapse;margin:.4em 0 1em}th,td{padding:2px 6px;text-align:center}\
table.metrics td{text-align:right;font-variant-numeric:tabular-nums}table.metrics th{text-align:left}\
table.metrics tr:nth-child(even){background:#f2f2f2}tr.published{color:#555;font-style:italic}\
tr.published th{font-weight:normal}table.images img{width:128px;height:128px;image-rendering:auto;display:block}\
td.missing{color:#a00;width:128px}p.note{color:#555}.published-key{font-style:italic;color:#555}";

/// Marks every image that did not load (`class="broken"`, a red outline) and writes the counts into
/// `#image-check` (`data-images`, `data-broken`): a reader sees a broken page at once, and a headless
/// browser's DOM says whether every image loaded.
const SCRIPT: &str = "window.addEventListener('load',function(){var imgs=document.images,broken=0;\
for(var i=0;i<imgs.length;i++){if(!(imgs[i].complete&&imgs[i].naturalWidth>0)){broken++;\
imgs[i].className+=' broken';imgs[i].style.outline='3px solid red';}}\
var p=document.getElementById('image-check');p.setAttribute('data-images',imgs.length);\
p.setAttribute('data-broken',broken);p.textContent=broken?broken+' of '+imgs.length+\
' images did not load':'all '+imgs.length+' images loaded';});";

/// Writes `<run>/report/index.html` and its files (see the module doc) for `outputs`, showing the first
/// `images` test images of `order` (the first subject's test order, whose ground truths are in
/// `truth`). `report/images/` is written afresh. Returns the page's path.
pub fn write_page(
    run: &RunDir,
    outputs: &[ReportOutput],
    order: &[usize],
    truth: &Path,
    protocols: &[String],
    images: usize,
) -> Result<PathBuf, WorkflowError> {
    let report = run.report();
    let assets = report.join("images");
    if assets.exists() {
        std::fs::remove_dir_all(&assets).map_err(|e| WorkflowError::io(&assets, e))?;
    }
    let mut html = String::from("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    let _ = writeln!(
        html,
        "<title>Brain-Diffuser report: {}</title><style>{STYLE}</style></head><body>",
        escape(&run.root().display().to_string())
    );
    let _ = writeln!(
        html,
        "<h1>Brain-Diffuser report</h1><p>Run folder: <code>{}</code></p>",
        escape(&run.root().display().to_string())
    );
    html.push_str("<p id=\"image-check\" class=\"note\">image check: needs JavaScript</p>\n");
    html.push_str(
        "<p class=\"note\">Rows in <span class=\"published-key\">italics</span>, labelled <em>published</em>, are the \
         papers' numbers, typed in; all other rows are this run's.</p>\n",
    );

    // Reconstructions.
    html.push_str("<h2>Reconstructions</h2>\n");
    let shown: Vec<usize> = order.iter().copied().take(images).collect();
    for o in outputs {
        let variants: Vec<Variant> = PAGE_VARIANTS.into_iter().filter(|&v| o.out.reconstructions(v).is_dir()).collect();
        let _ = writeln!(html, "<h3>{}</h3>", escape(&o.label));
        if variants.is_empty() {
            html.push_str("<p class=\"note\">no reconstructions yet: run `brain-diffuser reconstruct`</p>\n");
            continue;
        }
        html.push_str("<table class=\"images\"><thead><tr><th>NSD id</th><th>ground truth</th>");
        for &v in &variants {
            let _ = write!(html, "<th>{}</th>", escape(&variant_title(v)));
        }
        html.push_str("</tr></thead><tbody>");
        for (i, id) in shown.iter().enumerate() {
            let _ = write!(html, "<tr><th>{id}</th>");
            html += &image_cell(
                &report,
                &truth.join(image_name(i)),
                &format!("images/ground_truth/{}", image_name(i)),
                &format!("ground truth {id}"),
            )?;
            for &v in &variants {
                let cell = match o.position.get(id) {
                    Some(&k) => image_cell(
                        &report,
                        &o.out.reconstructions(v).join(image_name(k)),
                        &format!("images/{}/{}/{}", o.label, v.name(), image_name(k)),
                        &format!("{} {} {id}", o.label, v.name()),
                    )?,
                    None => "<td class=\"missing\">not in this output</td>".into(),
                };
                html += &cell;
            }
            html.push_str("</tr>");
        }
        html.push_str("</tbody></table>\n");
    }

    // Metrics, per protocol.
    html.push_str("<h2>Metrics</h2>\n");
    let published = published_rows();
    let mut any = false;
    for protocol in protocols {
        let mut measured: Vec<(&ReportOutput, Variant, MetricsFile)> = Vec::new();
        for o in outputs {
            for v in PAGE_VARIANTS {
                if let Some(file) = read_metric_values(&o.out.metrics(v, protocol).join("metrics.json"))? {
                    measured.push((o, v, file));
                }
            }
        }
        let theirs: Vec<&PublishedRow> = published.iter().filter(|r| r.protocol == protocol.as_str()).collect();
        let _ = writeln!(html, "<h3>Protocol <code>{}</code></h3>", escape(protocol));
        if measured.is_empty() {
            let _ = writeln!(html, "<p class=\"note\">{}</p>", escape(super::report::NOT_EVALUATED));
        }
        any |= !measured.is_empty();
        let label = |o: &ReportOutput, v: Variant, note: &Option<String>| {
            let note = note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default();
            format!("ours: {}, {}{note}", o.label, v.name())
        };
        // The full model: subjects, their mean, the subject average, then the published rows.
        let full: Vec<&(&ReportOutput, Variant, MetricsFile)> =
            measured.iter().filter(|m| m.1 == Variant::BrainDiffuser).collect();
        let mut rows: Vec<TableRow> =
            full.iter().map(|m| TableRow::ours(label(m.0, m.1, &m.2.note), m.2.values.clone())).collect();
        let subjects: Vec<&Vec<MetricValue>> =
            full.iter().filter(|m| m.0.label != "average").map(|m| &m.2.values).collect();
        if subjects.len() > 1 {
            let names: Vec<&str> = full.iter().filter(|m| m.0.label != "average").map(|m| m.0.label.as_str()).collect();
            rows.push(TableRow::ours(
                format!("ours: mean of {}, brain-diffuser", names.join(", ")),
                mean_row(&subjects),
            ));
        }
        rows.extend(
            theirs.iter().filter(|r| r.variant == Variant::BrainDiffuser.name()).map(|r| TableRow::published(r)),
        );
        html.push_str("<p>Full model (subjects, their mean, and the reconstructions from predictions averaged over subjects):</p>\n");
        html += &metrics_table_html(&rows);
        // The ablations: every variant of every output, then the published ablations.
        let mut rows: Vec<TableRow> = Vec::new();
        for o in outputs {
            for m in measured.iter().filter(|m| m.0.label == o.label) {
                rows.push(TableRow::ours(label(m.0, m.1, &m.2.note), m.2.values.clone()));
            }
        }
        rows.extend(theirs.iter().filter(|r| r.what == "subject 1").map(|r| TableRow::published(r)));
        if !rows.is_empty() {
            html.push_str("<p>Ablations (the paper's Table 2: every variant):</p>\n");
            html += &metrics_table_html(&rows);
        }
    }
    if !any {
        tracing::warn!(run = %run.root().display(), "no metrics in the report page: not evaluated yet");
    }

    // ROI-optimal images.
    html.push_str("<h2>ROI-optimal images</h2>\n");
    let names = roi_image_names();
    let mut roi_shown = false;
    for o in outputs {
        let variants: Vec<Variant> = [Variant::OnlyVdvae, Variant::BrainDiffuser]
            .into_iter()
            .filter(|&v| o.out.roi_images(v).is_dir())
            .collect();
        if variants.is_empty() {
            continue;
        }
        roi_shown = true;
        let _ = write!(html, "<h3>{}</h3><table class=\"images\"><thead><tr><th></th>", escape(&o.label));
        for roi in ROI_NAMES {
            let _ = write!(html, "<th>{}</th>", escape(roi));
        }
        html.push_str("</tr></thead><tbody>");
        for v in variants {
            let _ = write!(html, "<tr><th>{}</th>", escape(&variant_title(v)));
            for (name, roi) in names.iter().zip(ROI_NAMES) {
                html += &image_cell(
                    &report,
                    &o.out.roi_images(v).join(name),
                    &format!("images/{}/roi/{}/{name}", o.label, v.name()),
                    &format!("{} {} {roi}", o.label, v.name()),
                )?;
            }
            html.push_str("</tr>");
        }
        html.push_str("</tbody></table>\n");
    }
    if !roi_shown {
        html.push_str("<p class=\"note\">no ROI-optimal images yet: run `brain-diffuser roi`</p>\n");
    }

    // Figure 7.
    html.push_str("<h2>Figure 7: regression weights per ROI</h2>\n");
    let csv_path = run.weights_roi().join("figure7.csv");
    let svg_path = report.join("figure7.svg");
    if csv_path.exists() {
        let rows = read_figure7(&csv_path)?;
        let labels: Vec<String> = rows.iter().map(|r| r.roi.clone()).collect();
        let series = |name: &str, pick: fn(&Figure7Row) -> (f64, f64), color: [u8; 3]| BarSeries {
            name: name.to_owned(),
            values: rows.iter().map(|r| pick(r).0).collect(),
            errors: Some(rows.iter().map(|r| pick(r).1).collect()),
            color: image::Rgb(color),
        };
        let subjects = rows.first().map_or(0, |r| r.subjects);
        let svg = bar_chart_svg(
            &format!("CLIP vs VDVAE regression weights per ROI, {subjects} subject(s) (error bars: SEM)"),
            &labels,
            &[
                series("CLIP-Vision", |r| (r.clip_vision, r.clip_vision_sem), [31, 119, 180]),
                series("CLIP-Text", |r| (r.clip_text, r.clip_text_sem), [255, 127, 14]),
            ],
            "(CLIP - VDVAE) / VDVAE percentile",
        )?;
        write_text(&svg_path, &svg)?;
        html.push_str("<p><img src=\"figure7.svg\" alt=\"Figure 7 bar chart\"></p>\n<table class=\"metrics\"><thead><tr><th>ROI</th><th>CLIP-Vision</th><th>SEM</th><th>CLIP-Text</th><th>SEM</th></tr></thead><tbody>");
        for r in &rows {
            let _ = write!(
                html,
                "<tr><th>{}</th><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td></tr>",
                escape(&r.roi),
                r.clip_vision,
                r.clip_vision_sem,
                r.clip_text,
                r.clip_text_sem
            );
        }
        html.push_str("</tbody></table>\n");
    } else {
        if svg_path.exists() {
            std::fs::remove_file(&svg_path).map_err(|e| WorkflowError::io(&svg_path, e))?;
        }
        html.push_str("<p class=\"note\">not computed yet: run `brain-diffuser weights-roi`</p>\n");
    }
    let _ = write!(html, "<script>{SCRIPT}</script>\n</body></html>\n");
    let page = report.join("index.html");
    write_text(&page, &html)?;
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(metric: &str, value: f64) -> MetricValue {
        MetricValue { metric: metric.into(), value, better: Some("higher".into()) }
    }

    #[test]
    fn escaping_covers_the_five_html_specials() {
        assert_eq!(escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
        assert_eq!(escape("subj01 only-vdvae"), "subj01 only-vdvae");
    }

    #[test]
    fn metrics_json_is_read_generically_and_new_metrics_get_their_own_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.json");
        std::fs::write(
            &path,
            r#"{"protocol": {"name": "unknown"}, "rows": [
                {"metric": "PixCorr", "value": 0.25, "better": "higher"},
                {"metric": "Brain_retrieval", "value": 0.5, "better": "higher", "extra": 1},
                {"metric": "EffNet-B", "value": null, "better": "lower"}]}"#,
        )
        .unwrap();
        let MetricsFile { values, note } = read_metric_values(&path).unwrap().unwrap();
        assert_eq!(note, None);
        assert_eq!(values.len(), 3);
        assert_eq!((values[1].metric.as_str(), values[1].value), ("Brain_retrieval", 0.5));
        assert!(values[2].value.is_nan());
        assert!(read_metric_values(&dir.path().join("absent.json")).unwrap().is_none());
        std::fs::write(&path, r#"{"rows": [{"metric": "PixCorr"}]}"#).unwrap();
        let err = read_metric_values(&path).unwrap_err().to_string();
        assert!(err.contains("rows[0]") && err.contains("metrics.json"), "{err}");

        // Our "Brain_retrieval" and the published "Brain retrieval" share one column.
        let ours = TableRow::ours("ours".into(), values);
        let html = metrics_table_html(&[ours, TableRow::published(&crate::report::published::MINDEYE2_BRAIN_DIFFUSER)]);
        assert_eq!(html.matches("<th>Brain_retrieval &uarr;</th>").count(), 1, "{html}");
        assert!(!html.contains("<th>Brain retrieval"), "{html}");
        assert!(html.contains("<td>50.0%</td>") && html.contains("<td>26.3%</td>"), "{html}");
        assert!(html.contains("<tr class=\"published\"><th>published: MindEye2 paper, Table 1"), "{html}");
        // A metric a row lacks is a dash; a non-finite value too.
        assert!(html.contains("<td>-</td>"));
    }

    #[test]
    fn the_mean_row_averages_metrics_every_row_has() {
        let a = vec![value("PixCorr", 0.2), value("SSIM", 0.4)];
        let b = vec![value("pixcorr", 0.4)];
        let mean = mean_row(&[&a, &b]);
        assert_eq!(mean.len(), 1);
        assert!((mean[0].value - 0.3).abs() < 1e-12);
    }
}

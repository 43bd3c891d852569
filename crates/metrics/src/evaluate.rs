//! Evaluation of reconstructions against ground truths under a [`Protocol`], and the report
//! (JSON, CSV, printed summary).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::RgbImage;
use ndarray::{Array2, Array4, Axis, concatenate};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::MetricsError;
use crate::high_level::retrieval::RetrievalScores;
use crate::high_level::{correlation_distances, two_way_identification};
use crate::low_level::{pearson, pearson_u8, ssim_columns_1d, ssim_gaussian_2d};
use crate::networks::{FeatureExtractor, Normalization};
use crate::pixels::{GrayF64, RgbF64};
use crate::protocol::{FeatureScore, NetworkResize, PixelResize, Protocol, SsimVariant};
use pil_resample::{Filter, resize as pil_resize};

/// The feature extractors available to an evaluation, by slot name (see [`crate::protocol::slots`]).
/// A protocol column whose extractor is absent is left out of the report.
#[derive(Default)]
pub struct Extractors<'a> {
    by_slot: BTreeMap<String, &'a dyn FeatureExtractor>,
}

impl<'a> Extractors<'a> {
    /// No extractors: only the pixel metrics are computed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the extractor for `slot`, e.g. `slots::CLIP`.
    pub fn with(mut self, slot: &str, extractor: &'a dyn FeatureExtractor) -> Self {
        self.by_slot.insert(slot.to_owned(), extractor);
        self
    }

    /// The extractor for a slot, if supplied.
    pub fn get(&self, slot: &str) -> Option<&'a dyn FeatureExtractor> {
        self.by_slot.get(slot).copied()
    }
}

/// The column of image retrieval (brain -> image, top-1; see [`crate::high_level::retrieval`]).
pub const IMAGE_RETRIEVAL: &str = "Image retrieval";
/// The column of brain retrieval (image -> brain, top-1).
pub const BRAIN_RETRIEVAL: &str = "Brain retrieval";

/// One column of the results table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRow {
    /// Column name, e.g. `"PixCorr"` or `"AlexNet(2)"`.
    pub metric: String,
    /// The score (a fraction for identification, not a percentage).
    pub value: f64,
    /// `"higher"` or `"lower"`: which direction is better.
    pub better: String,
    /// Extractor slot and output for feature metrics.
    pub features: Option<String>,
    /// Network input side for feature metrics.
    pub input_size: Option<usize>,
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationReport {
    /// The full protocol configuration used.
    pub protocol: Protocol,
    /// Number of image pairs scored.
    pub images: usize,
    /// Pair names (file names when evaluating folders), in scoring order.
    pub names: Vec<String>,
    /// The table, in protocol order.
    pub rows: Vec<MetricRow>,
    /// Per-pair PixCorr.
    pub pixcorr_per_image: Vec<f64>,
    /// Per-pair SSIM (the protocol's variant).
    pub ssim_per_image: Vec<f64>,
    /// Image and brain retrieval with their options and seed, when the caller scored them
    /// ([`EvaluationReport::with_retrieval`]); they come from embeddings, not from these images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<RetrievalScores>,
}

fn invalid(what: &str, message: String) -> MetricsError {
    MetricsError::Invalid { what: what.to_owned(), message }
}

fn check_inputs(gt: &[RgbImage], rec: &[RgbImage], names: &[String]) -> Result<(), MetricsError> {
    if gt.len() != rec.len() {
        return Err(invalid("image sets", format!("{} ground truths but {} reconstructions", gt.len(), rec.len())));
    }
    if gt.len() < 2 {
        return Err(invalid("image sets", format!("need at least 2 image pairs, got {}", gt.len())));
    }
    if names.len() != gt.len() {
        return Err(invalid("image names", format!("{} names for {} pairs", names.len(), gt.len())));
    }
    for (set, images) in [("ground truth", gt), ("reconstruction", rec)] {
        let (w, h) = images[0].dimensions();
        if let Some(i) = images.iter().position(|im| im.dimensions() != (w, h)) {
            let (wi, hi) = images[i].dimensions();
            return Err(invalid(
                "image sizes",
                format!("{set} {} is {wi}x{hi} but {set} {} is {w}x{h}; all must share one size", names[i], names[0]),
            ));
        }
        if w < 11 || h < 11 {
            return Err(invalid("image sizes", format!("{set} images are {w}x{h}; SSIM needs at least 11x11")));
        }
    }
    Ok(())
}

/// PixCorr and SSIM for every pair, in parallel.
fn pixel_metrics(gt: &[RgbImage], rec: &[RgbImage], protocol: &Protocol) -> Result<Vec<(f64, f64)>, MetricsError> {
    gt.par_iter()
        .zip(rec.par_iter())
        .map(|(g, r)| {
            let (pixcorr, g, r) = match protocol.pixel_resize {
                PixelResize::PilBicubicToGroundTruth => {
                    // 8-bit images: exact integer Pearson, grey straight from the bytes.
                    let r = pil_resize(r, g.width(), g.height(), Filter::Bicubic)?;
                    (pearson_u8(g.as_raw(), r.as_raw())?, GrayF64::from_rgb8(g), GrayF64::from_rgb8(&r))
                }
                PixelResize::TorchBilinear { size } => {
                    let g = RgbF64::from_rgb8(g).resize_bilinear_torch(size, size)?;
                    let r = RgbF64::from_rgb8(r).resize_bilinear_torch(size, size)?;
                    (pearson(&g.data, &r.data)?, g.to_gray(), r.to_gray())
                }
            };
            let ssim = match protocol.ssim {
                SsimVariant::Columns1d => ssim_columns_1d(&r, &g, &protocol.ssim_params)?,
                SsimVariant::Gaussian2d => ssim_gaussian_2d(&r, &g, &protocol.ssim_params)?,
            };
            Ok((pixcorr, ssim))
        })
        .collect()
}

/// PixCorr and SSIM of the matched pairs next to the same metrics on shuffled pairings of the
/// same images: the level a reconstruction reaches that carries nothing of its own stimulus
/// (similar colours and layouts across a test set score above zero), and how far the matched
/// scores lie above it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShuffledControl {
    /// Image pairs.
    pub images: usize,
    /// The shuffled pairings: ground truth `i` with reconstruction `(i + shift) mod images`.
    pub shifts: Vec<usize>,
    /// Mean PixCorr of the matched pairs.
    pub pixcorr: f64,
    /// Mean SSIM of the matched pairs.
    pub ssim: f64,
    /// Mean PixCorr over every shuffled pair.
    pub shuffled_pixcorr: f64,
    /// Mean SSIM over every shuffled pair.
    pub shuffled_ssim: f64,
    /// Standard error of a mean PixCorr of `images` pairs when nothing corresponds: the standard
    /// deviation over the shuffled pairs divided by `sqrt(images)`.
    pub null_se_pixcorr: f64,
    /// The same for SSIM.
    pub null_se_ssim: f64,
}

impl ShuffledControl {
    /// How many null standard errors the matched means lie above the shuffled ones: (PixCorr, SSIM).
    pub fn margins(&self) -> (f64, f64) {
        (
            (self.pixcorr - self.shuffled_pixcorr) / self.null_se_pixcorr,
            (self.ssim - self.shuffled_ssim) / self.null_se_ssim,
        )
    }
}

/// Scores the matched pairs of `gt` and `rec` and their pairings shifted by each of `shifts`
/// (each in `1..n`, so that no image meets its own reconstruction) with the PixCorr and SSIM of
/// `protocol`.
pub fn shuffled_control(
    gt: &[RgbImage],
    rec: &[RgbImage],
    protocol: &Protocol,
    shifts: &[usize],
) -> Result<ShuffledControl, MetricsError> {
    let n = gt.len();
    let names: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    check_inputs(gt, rec, &names)?;
    if shifts.is_empty() || shifts.iter().any(|&s| s == 0 || s >= n) {
        return Err(invalid("shifts", format!("{shifts:?}: need at least one shift, each in 1..{n}")));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let sd = |v: &[f64]| {
        let m = mean(v);
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1).max(1) as f64).sqrt()
    };
    let (pixcorr, ssim): (Vec<f64>, Vec<f64>) = pixel_metrics(gt, rec, protocol)?.into_iter().unzip();
    let (mut null_pixcorr, mut null_ssim) = (Vec::new(), Vec::new());
    for &shift in shifts {
        let shifted: Vec<RgbImage> = (0..n).map(|i| rec[(i + shift) % n].clone()).collect();
        for (p, s) in pixel_metrics(gt, &shifted, protocol)? {
            null_pixcorr.push(p);
            null_ssim.push(s);
        }
    }
    let root_n = (n as f64).sqrt();
    Ok(ShuffledControl {
        images: n,
        shifts: shifts.to_vec(),
        pixcorr: mean(&pixcorr),
        ssim: mean(&ssim),
        shuffled_pixcorr: mean(&null_pixcorr),
        shuffled_ssim: mean(&null_ssim),
        null_se_pixcorr: sd(&null_pixcorr) / root_n,
        null_se_ssim: sd(&null_ssim) / root_n,
    })
}

/// Resizes and normalises images into one `[n, 3, size, size]` float32 batch, as the protocol's
/// torchvision preprocessing does.
pub fn preprocess_batch(
    images: &[RgbImage],
    size: usize,
    resize: NetworkResize,
    norm: Normalization,
) -> Result<Array4<f32>, MetricsError> {
    let plane = size * size;
    let per_image: Vec<Vec<f32>> = images
        .par_iter()
        .map(|image| {
            // Channel-last values in [0, 1], computed in float32 like torchvision's `to_tensor`.
            let hwc: Vec<f32> = match resize {
                NetworkResize::PilBilinear => pil_resize(image, size as u32, size as u32, Filter::Bilinear)?
                    .as_raw()
                    .iter()
                    .map(|&v| f32::from(v) / 255.0)
                    .collect(),
                NetworkResize::TorchBilinear => {
                    RgbF64::from_rgb8(image).resize_bilinear_torch(size, size)?.data.iter().map(|&v| v as f32).collect()
                }
            };
            let mut chw = vec![0f32; 3 * plane];
            for (i, px) in hwc.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    chw[c * plane + i] = (px[c] - norm.mean[c]) / norm.std[c];
                }
            }
            Ok(chw)
        })
        .collect::<Result<_, MetricsError>>()?;
    let flat: Vec<f32> = per_image.into_iter().flatten().collect();
    Array4::from_shape_vec((images.len(), 3, size, size), flat).map_err(|e| invalid("batch", e.to_string()))
}

/// Runs one extractor over all images in batches; returns one matrix per requested output.
fn extract_all(
    extractor: &dyn FeatureExtractor,
    images: &[RgbImage],
    size: usize,
    resize: NetworkResize,
    wanted: &[String],
    batch_size: usize,
) -> Result<Vec<Array2<f32>>, MetricsError> {
    let outputs = extractor.outputs();
    let indices: Vec<usize> = wanted
        .iter()
        .map(|w| {
            outputs.iter().position(|o| o == w).ok_or_else(|| {
                invalid("extractor output", format!("{} has no output {w:?} (it has {outputs:?})", extractor.name()))
            })
        })
        .collect::<Result<_, _>>()?;
    let mut parts: Vec<Vec<Array2<f32>>> = vec![Vec::new(); wanted.len()];
    for chunk in images.chunks(batch_size.max(1)) {
        let batch = preprocess_batch(chunk, size, resize, extractor.normalization())?;
        let features = extractor.extract(batch.view())?;
        if features.len() != outputs.len() {
            return Err(invalid(
                "extractor result",
                format!("{} returned {} outputs, declared {}", extractor.name(), features.len(), outputs.len()),
            ));
        }
        if let Some(bad) = features.iter().find(|f| f.nrows() != chunk.len()) {
            return Err(invalid(
                "extractor result",
                format!("{} returned {} feature rows for {} images", extractor.name(), bad.nrows(), chunk.len()),
            ));
        }
        for (slot, &index) in indices.iter().enumerate() {
            parts[slot].push(features[index].clone());
        }
    }
    parts
        .into_iter()
        .map(|p| {
            let views: Vec<_> = p.iter().map(|a| a.view()).collect();
            concatenate(Axis(0), &views).map_err(|e| invalid("features", format!("{}: {e}", extractor.name())))
        })
        .collect()
}

/// (extractor slot, input size, output name).
type FeatureKey = (String, usize, String);
/// Ground-truth and reconstruction feature rows.
type FeaturePair = (Array2<f32>, Array2<f32>);

/// Scores reconstructions against ground truths (pairs matched by index) under `protocol`.
///
/// PixCorr and SSIM are always computed; each feature column is computed when its extractor is
/// in `extractors`. `batch_size` bounds the images per network call.
pub fn evaluate(
    gt: &[RgbImage],
    rec: &[RgbImage],
    names: &[String],
    protocol: &Protocol,
    extractors: &Extractors<'_>,
    batch_size: usize,
) -> Result<EvaluationReport, MetricsError> {
    check_inputs(gt, rec, names)?;
    if gt.len() != protocol.expected_images {
        tracing::warn!(images = gt.len(), expected = protocol.expected_images, protocol = %protocol.name,
            "image count differs from the protocol's test set: scores are not comparable to published ones");
    }
    tracing::info!(pairs = gt.len(), protocol = %protocol.name, "pixel metrics");
    let pixel = pixel_metrics(gt, rec, protocol)?;
    let (pixcorr, ssim): (Vec<f64>, Vec<f64>) = pixel.into_iter().unzip();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let mut rows = vec![
        MetricRow {
            metric: "PixCorr".into(),
            value: mean(&pixcorr),
            better: "higher".into(),
            features: None,
            input_size: None,
        },
        MetricRow {
            metric: "SSIM".into(),
            value: mean(&ssim),
            better: "higher".into(),
            features: None,
            input_size: None,
        },
    ];

    // Group the feature columns by (extractor, input size) so that each network runs once per group.
    let mut groups: BTreeMap<(String, usize), Vec<String>> = BTreeMap::new();
    for m in &protocol.feature_metrics {
        if extractors.get(&m.extractor).is_some() {
            let outputs = groups.entry((m.extractor.clone(), m.input_size)).or_default();
            if !outputs.contains(&m.output) {
                outputs.push(m.output.clone());
            }
        }
    }
    let mut features: BTreeMap<FeatureKey, FeaturePair> = BTreeMap::new();
    for ((slot, size), outputs) in groups {
        let extractor = extractors.get(&slot).ok_or_else(|| invalid("extractor", slot.clone()))?;
        tracing::info!(extractor = extractor.name(), size, pairs = gt.len(), "extracting features");
        let g = extract_all(extractor, gt, size, protocol.network_resize, &outputs, batch_size)?;
        let r = extract_all(extractor, rec, size, protocol.network_resize, &outputs, batch_size)?;
        for ((output, g), r) in outputs.into_iter().zip(g).zip(r) {
            features.insert((slot.clone(), size, output), (g, r));
        }
    }
    for m in &protocol.feature_metrics {
        let Some((g, r)) = features.get(&(m.extractor.clone(), m.input_size, m.output.clone())) else {
            continue;
        };
        let (value, better) = match m.score {
            FeatureScore::TwoWayIdentification => (two_way_identification(g.view(), r.view())?, "higher"),
            FeatureScore::CorrelationDistance => (mean(&correlation_distances(g.view(), r.view())?), "lower"),
        };
        rows.push(MetricRow {
            metric: m.column.clone(),
            value,
            better: better.into(),
            features: Some(format!("{}/{}", m.extractor, m.output)),
            input_size: Some(m.input_size),
        });
    }
    Ok(EvaluationReport {
        protocol: protocol.clone(),
        images: gt.len(),
        names: names.to_vec(),
        rows,
        pixcorr_per_image: pixcorr,
        ssim_per_image: ssim,
        retrieval: None,
    })
}

const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

fn list_images(dir: &Path) -> Result<BTreeMap<String, PathBuf>, MetricsError> {
    let io = |source| MetricsError::Io { path: dir.to_owned(), error: source };
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let is_image = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if path.is_file() && is_image {
            if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                files.insert(name.to_owned(), path.clone());
            }
        }
    }
    Ok(files)
}

/// Decodes an image file to 8-bit RGB (grey and alpha images are converted as Pillow's `convert("RGB")`).
pub fn read_rgb(path: &Path) -> Result<RgbImage, MetricsError> {
    let reader =
        image::ImageReader::open(path).map_err(|source| MetricsError::Io { path: path.to_owned(), error: source })?;
    let reader =
        reader.with_guessed_format().map_err(|source| MetricsError::Io { path: path.to_owned(), error: source })?;
    let decoded = reader.decode().map_err(|e| MetricsError::Image { path: path.to_owned(), message: e.to_string() })?;
    Ok(decoded.to_rgb8())
}

/// Numeric-aware ordering so that `2.png` comes before `10.png`.
fn natural_key(name: &str) -> (u64, String) {
    let stem = name.split('.').next().unwrap_or(name);
    (stem.parse::<u64>().unwrap_or(u64::MAX), name.to_owned())
}

/// Image pairs loaded from two folders.
#[derive(Debug, Clone)]
pub struct ImagePairs {
    /// File names, in natural order.
    pub names: Vec<String>,
    /// Ground truths, one per name.
    pub ground_truths: Vec<RgbImage>,
    /// Reconstructions, one per name.
    pub reconstructions: Vec<RgbImage>,
}

/// Loads the image pairs of two folders, matched by file name (PNG/JPEG), in natural order.
pub fn load_pairs(gt_dir: &Path, rec_dir: &Path) -> Result<ImagePairs, MetricsError> {
    let gt_files = list_images(gt_dir)?;
    let rec_files = list_images(rec_dir)?;
    let only_gt: Vec<&String> = gt_files.keys().filter(|k| !rec_files.contains_key(*k)).collect();
    let only_rec: Vec<&String> = rec_files.keys().filter(|k| !gt_files.contains_key(*k)).collect();
    if !only_gt.is_empty() || !only_rec.is_empty() || gt_files.is_empty() {
        let show = |v: &[&String]| v.iter().take(5).map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        return Err(invalid(
            "image folders",
            format!(
                "{} has {} images, {} has {}; {} without reconstruction (e.g. {}), {} without ground truth (e.g. {})",
                gt_dir.display(),
                gt_files.len(),
                rec_dir.display(),
                rec_files.len(),
                only_gt.len(),
                show(&only_gt),
                only_rec.len(),
                show(&only_rec)
            ),
        ));
    }
    let mut names: Vec<String> = gt_files.keys().cloned().collect();
    names.sort_by_key(|n| natural_key(n));
    let gt = names.par_iter().map(|n| read_rgb(&gt_files[n])).collect::<Result<Vec<_>, _>>()?;
    let rec = names.par_iter().map(|n| read_rgb(&rec_files[n])).collect::<Result<Vec<_>, _>>()?;
    Ok(ImagePairs { names, ground_truths: gt, reconstructions: rec })
}

/// [`evaluate`] on two folders of images matched by file name.
pub fn evaluate_folders(
    gt_dir: &Path,
    rec_dir: &Path,
    protocol: &Protocol,
    extractors: &Extractors<'_>,
    batch_size: usize,
) -> Result<EvaluationReport, MetricsError> {
    let pairs = load_pairs(gt_dir, rec_dir)?;
    evaluate(&pairs.ground_truths, &pairs.reconstructions, &pairs.names, protocol, extractors, batch_size)
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename (the
/// `atomic-file` leaf crate's writer; partial files are named `.metrics-partial-...`).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), MetricsError> {
    const PARTIALS: atomic_file::Partials = atomic_file::Partials::new("metrics");
    PARTIALS.write_bytes(path, bytes).map_err(|e| match e {
        atomic_file::AtomicError::Folder { path, source, .. } | atomic_file::AtomicError::Io { path, source } => {
            MetricsError::Io { path, error: source }
        }
    })
}

impl EvaluationReport {
    /// The report with MindEye's image and brain retrieval as two more columns (`Image retrieval`,
    /// `Brain retrieval`, top-1 fractions) and their options in [`EvaluationReport::retrieval`];
    /// `embeddings` says which embeddings were compared (e.g. the predicted against the extracted
    /// CLIP-Vision embeddings of the test images).
    pub fn with_retrieval(mut self, scores: RetrievalScores, embeddings: &str) -> Self {
        self.rows.retain(|r| r.metric != IMAGE_RETRIEVAL && r.metric != BRAIN_RETRIEVAL);
        for (metric, value) in [(IMAGE_RETRIEVAL, scores.image), (BRAIN_RETRIEVAL, scores.brain)] {
            self.rows.push(MetricRow {
                metric: metric.to_owned(),
                value,
                better: "higher".to_owned(),
                features: Some(format!(
                    "{embeddings} ({} candidates, {} draws)",
                    scores.options.candidates, scores.options.repeats
                )),
                input_size: None,
            });
        }
        self.retrieval = Some(scores);
        self
    }

    /// The row for a column, if computed.
    pub fn value(&self, metric: &str) -> Option<f64> {
        self.rows.iter().find(|r| r.metric == metric).map(|r| r.value)
    }

    /// The whole report as pretty JSON.
    pub fn to_json(&self) -> Result<String, MetricsError> {
        serde_json::to_string_pretty(self).map_err(|e| invalid("report", e.to_string()))
    }

    /// The table as CSV: `protocol,images,metric,value,better,features,input_size`.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("protocol,images,metric,value,better,features,input_size\n");
        for r in &self.rows {
            out.push_str(&format!(
                "{},{},{},{},{},{},{}\n",
                self.protocol.name,
                self.images,
                r.metric,
                r.value,
                r.better,
                r.features.as_deref().unwrap_or(""),
                r.input_size.map(|s| s.to_string()).unwrap_or_default()
            ));
        }
        out
    }

    /// A human-readable table naming the protocol; identification shown as percentages.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "protocol: {} ({} image pairs; protocol test set: {})\nSSIM variant: {:?}\n",
            self.protocol.name, self.images, self.protocol.expected_images, self.protocol.ssim
        );
        for r in &self.rows {
            let fraction = r.metric.starts_with("AlexNet") || r.metric.ends_with("retrieval");
            let shown = if fraction || r.metric == "Inception" || r.metric == "CLIP" {
                format!("{:.2}%", 100.0 * r.value)
            } else {
                format!("{:.4}", r.value)
            };
            let arrow = if r.better == "higher" { "↑" } else { "↓" };
            out.push_str(&format!("  {:<15} {:>9} {arrow}\n", r.metric, shown));
        }
        out
    }

    /// Writes `metrics.json` and `metrics.csv` into `dir` (created if needed), atomically.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf), MetricsError> {
        std::fs::create_dir_all(dir).map_err(|source| MetricsError::Io { path: dir.to_owned(), error: source })?;
        let json = dir.join("metrics.json");
        let csv = dir.join("metrics.csv");
        write_atomic(&json, self.to_json()?.as_bytes())?;
        write_atomic(&csv, self.to_csv().as_bytes())?;
        Ok((json, csv))
    }
}

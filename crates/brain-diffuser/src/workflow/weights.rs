//! `weights-roi`: the paper's Figure 7. The weights of each regression are computed in column blocks
//! (never all at once) to accumulate every voxel's L1 norm; voxels are ranked into percentiles per
//! regression, and each ROI's mean percentile difference (CLIP minus VDVAE) is reported per subject
//! and as a mean with its standard error over subjects.

use ndarray::{Array1, Array2};
use ridge::{ProblemOptions, RidgeProblem};
use tracing::info;

use super::features::FeatureFiles;
use super::fit::{load_subject, require_fitted};
use super::integrity::{check_npy, fingerprint, record_fingerprint, reusable};
use super::{DataSplit, RunDir, SubjectDir, WorkflowError, check_settings, load_npy, progress_bar, write_text};
use crate::TargetGroup;
use crate::config::Config;
use crate::roi::{ROI_NAMES, RoiWeightDifference, VoxelWeightNorms, roi_weight_differences};

/// Targets per weight block.
const WEIGHT_BLOCK: usize = 4096;

fn l1_path(dir: &SubjectDir, group: &TargetGroup) -> std::path::PathBuf {
    dir.weights_roi().join(format!("{}_l1.npy", group.name()))
}

/// Whether the cached norms of `group` are there and whole (`<f8`, one per voxel).
fn cached_norms(dir: &SubjectDir, group: &TargetGroup, voxels: usize) -> bool {
    reusable(&l1_path(dir, group), |p| check_npy(p, "<f8", &[Some(voxels)]).map(|_| ()))
}

/// The per-voxel L1 norms of one regression's weights on `problem` (the subject's training fMRI),
/// computed in blocks of 4,096 targets and cached in `weights-roi/<group>_l1.npy` (a damaged
/// cache is computed again).
pub fn voxel_weight_norms(
    dir: &SubjectDir,
    problem: &RidgeProblem,
    config: &Config,
    group: &TargetGroup,
) -> Result<Array1<f64>, WorkflowError> {
    let path = l1_path(dir, group);
    if cached_norms(dir, group, problem.n_features()) {
        return Ok(nsd_io::subject::load_npy::<Array1<f64>>(&path)?);
    }
    let mut targets = FeatureFiles::open(&dir.features(group, DataSplit::Train), problem.n_samples())?;
    let alphas = vec![
        config.regression.alpha(group).ok_or_else(|| WorkflowError::Invalid(format!(
            "no configured alpha for the {group} regression"
        )))?;
        targets.cols()
    ];
    let mut norms = VoxelWeightNorms::new(problem.n_features());
    let bar = progress_bar(targets.cols(), &format!("weights {}", group.name()));
    let timings = problem.weights_by_block(&mut targets, &alphas, WEIGHT_BLOCK, |block| {
        norms.add_block(block.coef.t()).map_err(ridge::RidgeError::Invalid)?;
        bar.inc(block.coef.nrows() as u64);
        Ok(())
    })?;
    bar.finish_and_clear();
    let l1 = norms.norms().to_owned();
    nsd_io::subject::save_npy(&path, &l1)?;
    info!(
        subject = dir.subject,
        group = group.name(),
        operators_s = timings.operators_s,
        read_s = timings.read_s,
        products_s = timings.product_s,
        norms_s = timings.sink_s,
        "weight norms"
    );
    Ok(l1)
}

/// The settings record of a subject's `weights-roi/`: the fingerprints of the three regressions'
/// records (alphas, intercept, features, subject cache) and of the ROI patterns' record.
pub fn weights_settings(dir: &SubjectDir) -> Result<String, WorkflowError> {
    let mut settings = String::new();
    for group in &TargetGroup::PAPER {
        let what = format!("the subject {} {} regression", dir.subject, group.name());
        let regression = record_fingerprint(&dir.regression(group), &what, "fit")?;
        settings += &format!("{}_regression = \"{regression}\"\n", group.key());
    }
    let record = super::prepare::roi_patterns_record(dir);
    let patterns = std::fs::read_to_string(&record).map_or_else(|_| "unrecorded".to_owned(), |t| fingerprint(&t));
    Ok(settings + &format!("roi_patterns = \"{patterns}\"\n"))
}

/// The Figure 7 rows of one subject (written to `weights-roi/figure7.csv`). The weights are
/// those of the regressions `fit` made with the settings `config` implies: regressions fitted with
/// other alphas (say, edited in `<run>/config.toml` since) are refused with both records shown.
pub fn subject_weight_roi(dir: &SubjectDir, config: &Config) -> Result<Vec<RoiWeightDifference>, WorkflowError> {
    let patterns_path = dir.roi_patterns();
    if !patterns_path.exists() {
        return Err(WorkflowError::missing("ROI patterns (the NSD ROI volumes)", &patterns_path, "prepare"));
    }
    // The analysis recomputes ridge weights: the regressions must be ridge's with these settings.
    let ridge = crate::stages::ridge::RidgeRegressor::from_config(&config.regression);
    for group in &TargetGroup::PAPER {
        require_fitted(dir, group, config, &ridge)?;
    }
    let patterns = load_npy(&patterns_path)?;
    check_settings(&dir.weights_roi(), &weights_settings(dir)?)?;
    // One Gram matrix serves the three regressions; it is built only if a norm is not cached.
    let mut problem = None;
    let mut norms = Vec::with_capacity(3);
    for group in &TargetGroup::PAPER {
        let path = l1_path(dir, group);
        if cached_norms(dir, group, patterns.ncols()) {
            norms.push(nsd_io::subject::load_npy::<Array1<f64>>(&path)?);
            continue;
        }
        if problem.is_none() {
            let subject = load_subject(dir)?;
            // The Gram matrix in the arithmetic `fit` used (fixed alphas: f32 GEMMs).
            let options = ProblemOptions {
                fit_intercept: config.regression.fit_intercept,
                form: None,
                gram: ridge.gram_precision(),
            };
            problem = Some(RidgeProblem::new(subject.train_fmri.view(), options)?);
        }
        if let Some(problem) = &problem {
            norms.push(voxel_weight_norms(dir, problem, config, group)?);
        }
    }
    let [v, cv, ct]: [Array1<f64>; 3] =
        norms.try_into().map_err(|_| WorkflowError::Invalid("three weight norms expected".into()))?;
    let rows =
        roi_weight_differences(v.view(), cv.view(), ct.view(), patterns.view()).map_err(WorkflowError::Invalid)?;
    let mut csv = String::from(
        "roi,voxels,vdvae_percentile,clip_vision_minus_vdvae,clip_vision_sem,clip_text_minus_vdvae,clip_text_sem,\
         clip_vision_normalised,clip_text_normalised\n",
    );
    for r in &rows {
        let (cv, ct) = r.normalised();
        csv += &format!(
            "{},{},{},{},{},{},{},{cv},{ct}\n",
            r.roi,
            r.voxels,
            r.vdvae_percentile,
            r.clip_vision_minus_vdvae,
            r.clip_vision_sem,
            r.clip_text_minus_vdvae,
            r.clip_text_sem
        );
    }
    write_text(&dir.weights_roi().join("figure7.csv"), &csv)?;
    Ok(rows)
}

/// The statistic over subjects: per ROI, the mean of the subjects' normalised values
/// ([`RoiWeightDifference::normalised`]) and its standard error (the paper's error bars).
#[derive(Debug, Clone, PartialEq)]
pub struct RoiSummary {
    pub roi: &'static str,
    pub subjects: usize,
    pub clip_vision: (f64, f64),
    pub clip_text: (f64, f64),
}

/// Mean and standard error over the finite values.
fn mean_sem(values: &[f64]) -> (f64, f64) {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let k = v.len() as f64;
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = v.iter().sum::<f64>() / k;
    let sem =
        if v.len() > 1 { (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1.0) / k).sqrt() } else { 0.0 };
    (mean, sem)
}

/// Figure 7 over `subjects`: `weights-roi/figure7.csv` (mean and SEM across subjects per ROI).
pub fn weight_roi_summary(run: &RunDir, config: &Config, subjects: &[u8]) -> Result<Vec<RoiSummary>, WorkflowError> {
    let per_subject =
        subjects.iter().map(|&s| subject_weight_roi(&run.subject(s), config)).collect::<Result<Vec<_>, _>>()?;
    let summary: Vec<RoiSummary> = ROI_NAMES
        .iter()
        .enumerate()
        .map(|(k, &roi)| {
            let cv: Vec<f64> = per_subject.iter().map(|rows| rows[k].normalised().0).collect();
            let ct: Vec<f64> = per_subject.iter().map(|rows| rows[k].normalised().1).collect();
            RoiSummary { roi, subjects: subjects.len(), clip_vision: mean_sem(&cv), clip_text: mean_sem(&ct) }
        })
        .collect();
    let mut csv = String::from("roi,subjects,clip_vision,clip_vision_sem,clip_text,clip_text_sem\n");
    for r in &summary {
        csv += &format!(
            "{},{},{},{},{},{}\n",
            r.roi, r.subjects, r.clip_vision.0, r.clip_vision.1, r.clip_text.0, r.clip_text.1
        );
    }
    write_text(&run.weights_roi().join("figure7.csv"), &csv)?;
    Ok(summary)
}

/// The summary as a matrix (ROIs x [cv mean, cv sem, ct mean, ct sem]) for charts.
pub fn summary_matrix(summary: &[RoiSummary]) -> Array2<f64> {
    Array2::from_shape_fn((summary.len(), 4), |(i, j)| match j {
        0 => summary[i].clip_vision.0,
        1 => summary[i].clip_vision.1,
        2 => summary[i].clip_text.0,
        _ => summary[i].clip_text.1,
    })
}

//! `fit` and `predict`: the three ridge regressions, fitted on one Gram matrix per subject with the
//! features streaming from disk, and the renormalised test predictions that the generators consume.
//!
//! `fit` never materialises the weights: the ridge crate predicts every evaluation set (the test
//! fMRI, the ROI patterns, and the training fMRI when renormalising with training statistics) while
//! the targets stream through in column blocks. It writes, per group, in `regression/<group>/`:
//! `test.npy` (raw test predictions), `train_feature_stats.npy` (2 x d: mean and std of the training
//! features), and when needed `roi_response.npy` (13 x d: ROI patterns times the weights) with
//! `roi_intercept.npy` (1 x d), and `train_prediction_stats.npy`.

use ndarray::{Array2, Axis, concatenate, s};
use nsd_io::SubjectData;
use ridge::{AlphaPolicy, FitOptions, ProblemOptions, RidgeProblem};
use tracing::info;

use super::features::FeatureFiles;
use super::{DataSplit, SubjectDir, WorkflowError, check_settings, load_npy, progress_bar, save_npy, write_text};
use crate::TargetGroup;
use crate::config::{Config, Renormalisation};
use crate::renormalise::{ColumnStats, renormalise};

/// Loads the subject cache written by `prepare`.
pub fn load_subject(dir: &SubjectDir) -> Result<SubjectData, WorkflowError> {
    let fmri = dir.fmri();
    if !SubjectData::cache_paths(&fmri, dir.subject)[0].exists() {
        return Err(WorkflowError::missing(format!("subject {} fMRI", dir.subject), &fmri, "prepare"));
    }
    Ok(SubjectData::load(&fmri, dir.subject)?)
}

fn stats_matrix(stats: &ColumnStats) -> Array2<f32> {
    ndarray::stack(Axis(0), &[stats.mean.view(), stats.std.view()]).unwrap_or_default()
}

/// Reads a `2 x d` statistics file written by `fit`.
pub fn load_stats(path: &std::path::Path) -> Result<ColumnStats, WorkflowError> {
    let m = load_npy(path)?;
    if m.nrows() != 2 {
        return Err(WorkflowError::Invalid(format!(
            "{}: expected 2 rows (mean, std), got {}",
            path.display(),
            m.nrows()
        )));
    }
    Ok(ColumnStats { mean: m.row(0).to_owned(), std: m.row(1).to_owned() })
}

fn settings_of(dir: &SubjectDir, group: TargetGroup, config: &Config) -> Result<String, WorkflowError> {
    let features = dir.features(group, DataSplit::Train).join("settings.toml");
    let encoder = std::fs::read_to_string(&features)
        .map_err(|_| WorkflowError::missing(format!("{} training features", group.name()), &features, "extract"))?;
    Ok(format!(
        "regressor = \"ridge\"\nalpha = {}\nfit_intercept = {}\nrenormalisation = {:?}\n[features]\n{encoder}",
        group.alpha(config),
        config.regression.fit_intercept,
        config.regression.renormalisation
    ))
}

/// Fits the regressions of `groups` for one subject (skipping those already fitted).
pub fn fit_subject(dir: &SubjectDir, config: &Config, groups: &[TargetGroup]) -> Result<(), WorkflowError> {
    // Regressions already fitted must have been fitted with these settings.
    for &group in groups {
        check_settings(&dir.regression(group), &settings_of(dir, group, config)?)?;
    }
    let todo: Vec<TargetGroup> =
        groups.iter().copied().filter(|g| !dir.regression(*g).join("test.npy").exists()).collect();
    if todo.is_empty() {
        info!(subject = dir.subject, "regressions already fitted");
        return Ok(());
    }
    let subject = load_subject(dir)?;
    let patterns = if dir.roi_patterns().exists() { Some(load_npy(&dir.roi_patterns())?) } else { None };
    let options = ProblemOptions { fit_intercept: config.regression.fit_intercept, form: None };
    let problem = RidgeProblem::new(subject.train_fmri.view(), options)?;
    let test = problem.evaluation_set(subject.test_fmri.view())?;
    // The ROI patterns and a zero row: its prediction is the intercept, so that the reference's
    // `patterns @ W^T` is the difference of the two.
    let roi = match &patterns {
        Some(p) => {
            Some(problem.evaluation_set(concatenate![Axis(0), p.view(), Array2::zeros((1, p.ncols())).view()].view())?)
        }
        None => None,
    };
    let train_only = config.regression.renormalisation == Renormalisation::TrainOnly;
    let train = if train_only { Some(problem.evaluation_set(subject.train_fmri.view())?) } else { None };
    for group in todo {
        let out = dir.regression(group);
        let mut targets = FeatureFiles::open(&dir.features(group, DataSplit::Train), subject.train_ids.len())?;
        let bar = progress_bar(targets.cols(), &format!("subj{:02} ridge {}", dir.subject, group.name()));
        targets = targets.with_progress(bar.clone());
        let mut evals = vec![&test];
        evals.extend(roi.as_ref());
        evals.extend(train.as_ref());
        let started = std::time::Instant::now();
        let fit = problem.fit_predict(
            &mut targets,
            &AlphaPolicy::Fixed(group.alpha(config)),
            &evals,
            &FitOptions::default(),
        )?;
        bar.finish_and_clear();
        info!(
            subject = dir.subject,
            group = group.name(),
            targets = targets.cols(),
            seconds = started.elapsed().as_secs_f64(),
            read_s = fit.timings.read_s,
            predict_s = fit.timings.predict_s,
            "ridge fitted"
        );
        save_npy(&out.join("train_feature_stats.npy"), &stats_matrix(&targets.column_stats()?))?;
        let mut predictions = fit.predictions.into_iter();
        let test_prediction = predictions.next().unwrap_or_default();
        if roi.is_some() {
            let rows = predictions.next().unwrap_or_default();
            let k = rows.nrows().saturating_sub(1);
            let intercept = rows.slice(s![k.., ..]).to_owned();
            let response = &rows.slice(s![..k, ..]) - &intercept;
            save_npy(&out.join("roi_response.npy"), &response)?;
            save_npy(&out.join("roi_intercept.npy"), &intercept)?;
        }
        if train_only {
            let rows = predictions.next().unwrap_or_default();
            save_npy(&out.join("train_prediction_stats.npy"), &stats_matrix(&ColumnStats::of(rows.view())))?;
        }
        write_text(
            &out.join("fit.toml"),
            &format!(
                "alpha = {}\ntrain_images = {}\nvoxels = {}\ntargets = {}\n",
                group.alpha(config),
                subject.train_ids.len(),
                subject.n_voxels(),
                targets.cols(),
            ),
        )?;
        // Written last: its presence marks the regression as complete.
        save_npy(&out.join("test.npy"), &test_prediction)?;
    }
    Ok(())
}

/// Renormalises the test predictions of `groups` (per `regression.renormalisation`) into
/// `predicted/<group>.npy`, and records the test ids in row order.
pub fn predict_subject(dir: &SubjectDir, config: &Config, groups: &[TargetGroup]) -> Result<(), WorkflowError> {
    let ids_path = SubjectData::cache_paths(&dir.fmri(), dir.subject)[3].clone();
    if !ids_path.exists() {
        return Err(WorkflowError::missing(format!("subject {} test ids", dir.subject), &ids_path, "prepare"));
    }
    let test_ids: ndarray::Array1<i64> = nsd_io::subject::load_npy(&ids_path)?;
    let ids: String = test_ids.iter().map(|id| format!("{id}\n")).collect();
    let predicted_dir = dir.outputs.predicted_ids();
    let predicted_dir = predicted_dir.parent().unwrap_or(dir.root());
    check_settings(predicted_dir, &format!("renormalisation = {:?}\n", config.regression.renormalisation))?;
    for &group in groups {
        let regression = dir.regression(group);
        let raw_path = regression.join("test.npy");
        if !raw_path.exists() {
            return Err(WorkflowError::missing(format!("the {} regression", group.name()), &raw_path, "fit"));
        }
        let raw = load_npy(&raw_path)?;
        let train_features = load_stats(&regression.join("train_feature_stats.npy"))?;
        let train_predictions = match config.regression.renormalisation {
            Renormalisation::TrainOnly => Some(load_stats(&regression.join("train_prediction_stats.npy"))?),
            _ => None,
        };
        let renormalised =
            renormalise(raw.view(), &train_features, train_predictions.as_ref(), config.regression.renormalisation)
                .map_err(WorkflowError::Invalid)?;
        save_npy(&dir.outputs.predicted(group), &renormalised)?;
    }
    write_text(&dir.outputs.predicted_ids(), &ids)
}

/// The predicted test features of an output folder, and the NSD ids of their rows.
pub struct PredictedFeatures {
    pub ids: Vec<usize>,
    pub vdvae: Array2<f32>,
    pub clip_vision: Array2<f32>,
    pub clip_text: Array2<f32>,
}

/// Reads the NSD ids of the rows of `predicted/` (written by `predict` or `average`).
pub fn load_predicted_ids(outputs: &super::OutputDir) -> Result<Vec<usize>, WorkflowError> {
    let ids_path = outputs.predicted_ids();
    let text = std::fs::read_to_string(&ids_path)
        .map_err(|_| WorkflowError::missing("predicted features", &ids_path, "predict"))?;
    text.lines()
        .map(|l| {
            l.trim()
                .parse::<usize>()
                .map_err(|e| WorkflowError::File { path: ids_path.clone(), message: e.to_string() })
        })
        .collect()
}

/// Reads one group's predictions of `predicted/`, checking its row count against `rows`.
pub fn load_predicted_group(
    outputs: &super::OutputDir,
    group: TargetGroup,
    rows: usize,
) -> Result<Array2<f32>, WorkflowError> {
    let m = load_npy(&outputs.predicted(group))?;
    if m.nrows() != rows {
        return Err(WorkflowError::Invalid(format!(
            "{}: {} rows for {rows} test ids",
            outputs.predicted(group).display(),
            m.nrows()
        )));
    }
    Ok(m)
}

/// Reads `predicted/` (written by `predict` or `average`): the ids and the three groups.
pub fn load_predicted(outputs: &super::OutputDir) -> Result<PredictedFeatures, WorkflowError> {
    let ids = load_predicted_ids(outputs)?;
    let n = ids.len();
    Ok(PredictedFeatures {
        vdvae: load_predicted_group(outputs, TargetGroup::Vdvae, n)?,
        clip_vision: load_predicted_group(outputs, TargetGroup::ClipVision, n)?,
        clip_text: load_predicted_group(outputs, TargetGroup::ClipText, n)?,
        ids,
    })
}

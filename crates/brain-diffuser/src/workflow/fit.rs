//! `fit` and `predict`: the three regressions (through the session's [`Regressor`]: ridge on one
//! Gram matrix per subject by default), with the features streaming from disk, and the
//! renormalised test predictions that the generators consume.
//!
//! `fit` asks the regressor for the predictions of every evaluation set (the test fMRI, the ROI
//! patterns, and the training fMRI when renormalising with training statistics) while the targets
//! stream through in blocks (of rows, from the row-major feature chunks); ridge never materialises its weights. It writes, per group, in
//! `regression/<group>/`:
//! `test.npy` (raw test predictions), `train_feature_stats.npy` (2 x d: mean and std of the training
//! features), and when needed `roi_response.npy` (13 x d: ROI patterns times the weights) with
//! `roi_intercept.npy` (1 x d), and `train_prediction_stats.npy`.

use ndarray::{Array2, Axis, concatenate, s};
use nsd_io::SubjectData;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::features::FeatureFiles;
use super::integrity::{check_npy, fingerprint, ids_fingerprint, read_record, record_fingerprint};
use super::{
    DataSplit, SubjectDir, WorkflowError, check_settings, load_npy, progress_bar, require_settings, save_npy,
    write_text,
};
use crate::config::{Config, Renormalisation};
use crate::renormalise::{ColumnStats, renormalise};
use crate::{ConditionInputs, ExpectedPredictions, GroupFeatures, Regressor, TargetGroup, check_predictions};

/// Loads the subject cache written by `prepare`.
pub fn load_subject(dir: &SubjectDir) -> Result<SubjectData, WorkflowError> {
    let fmri = dir.fmri();
    if !SubjectData::cache_paths(&fmri, dir.subject)[0].exists() {
        return Err(WorkflowError::missing(format!("subject {} fMRI", dir.subject), &fmri, "prepare"));
    }
    Ok(SubjectData::load(&fmri, dir.subject)?)
}

/// The `2 x d` matrix (mean row, std row) of `stats`.
fn stats_matrix(stats: &ColumnStats) -> Result<Array2<f32>, WorkflowError> {
    ndarray::stack(Axis(0), &[stats.mean.view(), stats.std.view()]).map_err(|e| {
        WorkflowError::Invalid(format!(
            "column statistics with {} means and {} standard deviations: {e}",
            stats.mean.len(),
            stats.std.len()
        ))
    })
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

/// The NSD ids of one split of the subject cache (`prepare`'s `nsd_{train,test}_ids_subN.npy`),
/// read alone (not the fMRI), with the file they come from.
pub fn cache_ids(dir: &SubjectDir, split: DataSplit) -> Result<(PathBuf, Vec<usize>), WorkflowError> {
    let [_, _, train, test, _, _] = SubjectData::cache_paths(&dir.fmri(), dir.subject);
    let path = if split == DataSplit::Train { train } else { test };
    if !path.exists() {
        return Err(WorkflowError::missing(format!("subject {} {} ids", dir.subject, split.name()), &path, "prepare"));
    }
    let ids: ndarray::Array1<i64> = nsd_io::subject::load_npy(&path)?;
    let ids = ids
        .iter()
        .map(|&v| {
            usize::try_from(v).map_err(|_| {
                WorkflowError::Invalid(format!("{}: negative NSD id {v}; run `brain-diffuser prepare`", path.display()))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((path, ids))
}

/// Checks the NSD ids of the rows of predicted features (`ids`, read from `ids_path`) against
/// the test ids of the subject cache of `reference`, whose ground truths they are scored
/// against: rows and images must correspond one to one, in order. `repair` names the step that
/// rewrites `ids_path`.
pub fn check_predicted_ids(
    ids_path: &Path,
    ids: &[usize],
    reference: &SubjectDir,
    repair: &str,
) -> Result<(), WorkflowError> {
    let (cache_path, cache) = cache_ids(reference, DataSplit::Test)?;
    if ids == cache.as_slice() {
        return Ok(());
    }
    let difference = match ids.iter().zip(&cache).position(|(a, b)| a != b) {
        Some(k) => format!("row {k} is NSD id {} in the first, {} in the second", ids[k], cache[k]),
        None => format!("{} ids in the first, {} in the second", ids.len(), cache.len()),
    };
    Err(WorkflowError::Invalid(format!(
        "{} does not match the test ids of the subject cache {} ({difference}): the predicted rows would be \
         scored against other images; run `brain-diffuser {repair}` to rewrite it",
        ids_path.display(),
        cache_path.display()
    )))
}

/// Fingerprint of the ROI patterns a regression is fitted with: `"none"` without patterns, else
/// the fingerprint of their settings record (see [`super::prepare::roi_patterns_record`]).
fn roi_patterns_fingerprint(dir: &SubjectDir) -> Result<String, WorkflowError> {
    if !dir.roi_patterns().exists() {
        return Ok("none".into());
    }
    let record = super::prepare::roi_patterns_record(dir);
    match std::fs::read_to_string(&record) {
        Ok(text) => Ok(fingerprint(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok("unrecorded".into()),
        Err(e) => Err(WorkflowError::io(&record, e)),
    }
}

/// The settings record of the regression of `group` (`regression/<group>/settings.toml`): the
/// regression's settings, the fingerprints of the subject cache and the ROI patterns it is fitted
/// on, and the training features' own record.
pub fn fit_settings(
    dir: &SubjectDir,
    group: &TargetGroup,
    config: &Config,
    regressor: &dyn Regressor,
) -> Result<String, WorkflowError> {
    let features =
        read_record(&dir.features(group, DataSplit::Train), &format!("{} training features", group.name()), "extract")?;
    let cache = record_fingerprint(&dir.fmri(), &format!("the subject {} cache", dir.subject), "prepare")?;
    Ok(format!(
        "regressor = {:?}\n{}renormalisation = {:?}\nsubject_cache = \"{cache}\"\n\
         roi_patterns = \"{}\"\n[features]\n{features}",
        regressor.name(),
        regressor.settings(group)?,
        config.regression.renormalisation,
        roi_patterns_fingerprint(dir)?,
    ))
}

/// Checks that the regression of `group` was fitted with the settings `config` implies (a later
/// step never uses a regression fitted with other alphas, say): [`WorkflowError::Stale`] with both
/// records otherwise, [`WorkflowError::Missing`] when it was never fitted.
pub fn require_fitted(
    dir: &SubjectDir,
    group: &TargetGroup,
    config: &Config,
    regressor: &dyn Regressor,
) -> Result<(), WorkflowError> {
    let regression = dir.regression(group);
    let what = format!("the subject {} {} regression", dir.subject, group.name());
    require_settings(&regression, &fit_settings(dir, group, config, regressor)?, &what, "fit")?;
    let complete = regression.join("test.npy");
    if !complete.exists() {
        return Err(WorkflowError::missing(what, &complete, "fit"));
    }
    Ok(())
}

/// Whether the outputs of a fitted regression are all there and whole (`test.npy` marks a
/// complete fit; every file is checked against its expected shape). A damaged output is reported
/// and `false` returned, so that the regression is fitted again.
fn fitted_outputs_valid(dir: &SubjectDir, group: &TargetGroup, config: &Config, n_test: usize) -> bool {
    let out = dir.regression(group);
    let test = out.join("test.npy");
    if !test.exists() {
        return false;
    }
    let width = match check_npy(&test, "<f4", &[Some(n_test), None]) {
        Ok(shape) => shape[1],
        Err(problem) => {
            warn!(file = %test.display(), %problem, "damaged regression output: fitting again");
            return false;
        }
    };
    let mut expected = vec![("train_feature_stats.npy", 2)];
    if dir.roi_patterns().exists() {
        let rois = check_npy(&dir.roi_patterns(), "<f4", &[None, None]).map_or(0, |s| s[0]);
        expected.extend([("roi_response.npy", rois), ("roi_intercept.npy", 1)]);
    }
    if config.regression.renormalisation == Renormalisation::TrainOnly {
        expected.push(("train_prediction_stats.npy", 2));
    }
    let fit_toml = out.join("fit.toml");
    if !fit_toml.exists() {
        warn!(file = %fit_toml.display(), "regression output missing: fitting again");
        return false;
    }
    expected.iter().all(|&(name, rows)| {
        let path = out.join(name);
        let check = check_npy(&path, "<f4", &[Some(rows), Some(width)]);
        if let Err(problem) = &check {
            warn!(file = %path.display(), %problem, "damaged or missing regression output: fitting again");
        }
        check.is_ok()
    })
}

/// Fits the regressions of `groups` for one subject with `regressor` (skipping those already
/// fitted): one [`Regressor::prepare`] on the training fMRI for every group, whose targets stream
/// from the feature files.
pub fn fit_subject(
    dir: &SubjectDir,
    config: &Config,
    regressor: &dyn Regressor,
    groups: &[TargetGroup],
) -> Result<(), WorkflowError> {
    // Regressions already fitted must have been fitted with these settings.
    for group in groups {
        check_settings(&dir.regression(group), &fit_settings(dir, group, config, regressor)?)?;
    }
    let n_test = cache_ids(dir, DataSplit::Test)?.1.len();
    let todo: Vec<&TargetGroup> = groups.iter().filter(|g| !fitted_outputs_valid(dir, g, config, n_test)).collect();
    if todo.is_empty() {
        info!(subject = dir.subject, "regressions already fitted");
        return Ok(());
    }
    let subject = load_subject(dir)?;
    let patterns = if dir.roi_patterns().exists() { Some(load_npy(&dir.roi_patterns())?) } else { None };
    // The evaluation sets: the test fMRI; the ROI patterns and a zero row (its prediction is the
    // intercept, so that the reference's `patterns @ W^T` is the difference of the two); the
    // training fMRI when renormalising with training statistics.
    let roi = patterns.as_ref().map(|p| concatenate![Axis(0), p.view(), Array2::zeros((1, p.ncols())).view()]);
    let train_only = config.regression.renormalisation == Renormalisation::TrainOnly;
    let mut evaluation = vec![subject.test_fmri.view()];
    let mut expected = vec![ExpectedPredictions { what: "test fMRI", rows: subject.test_fmri.nrows() }];
    if let Some(roi) = &roi {
        evaluation.push(roi.view());
        expected.push(ExpectedPredictions { what: "ROI patterns", rows: roi.nrows() });
    }
    if train_only {
        evaluation.push(subject.train_fmri.view());
        expected.push(ExpectedPredictions { what: "training fMRI", rows: subject.train_fmri.nrows() });
    }
    let mut prepared = regressor.prepare(subject.train_fmri.view(), &evaluation)?;
    for group in todo {
        let out = dir.regression(group);
        let mut targets = FeatureFiles::open(&dir.features(group, DataSplit::Train), subject.train_ids.len())?;
        let bar =
            progress_bar(targets.cols(), &format!("subj{:02} {} {}", dir.subject, regressor.name(), group.name()));
        targets = targets.with_progress(bar.clone());
        let started = std::time::Instant::now();
        let predictions = prepared.fit_predict(group, &mut targets)?;
        bar.finish_and_clear();
        let d = targets.cols();
        let predictions = check_predictions(regressor.name(), group, predictions, &expected, d)?;
        info!(
            subject = dir.subject,
            group = group.name(),
            regressor = regressor.name(),
            targets = d,
            seconds = started.elapsed().as_secs_f64(),
            "regression fitted"
        );
        save_npy(&out.join("train_feature_stats.npy"), &stats_matrix(&targets.column_stats()?)?)?;
        let mut predictions = predictions.into_iter();
        let mut next = || predictions.next().ok_or_else(|| WorkflowError::Invalid("missing predictions".into()));
        let test_prediction = next()?;
        if let Some(p) = &patterns {
            let rows = next()?;
            let k = p.nrows();
            let intercept = rows.slice(s![k.., ..]).to_owned();
            let response = &rows.slice(s![..k, ..]) - &intercept;
            save_npy(&out.join("roi_response.npy"), &response)?;
            save_npy(&out.join("roi_intercept.npy"), &intercept)?;
        }
        if train_only {
            let rows = next()?;
            save_npy(&out.join("train_prediction_stats.npy"), &stats_matrix(&ColumnStats::of(rows.view()))?)?;
        }
        write_text(
            &out.join("fit.toml"),
            &format!(
                "regressor = {:?}\n{}train_images = {}\nvoxels = {}\ntargets = {d}\n",
                regressor.name(),
                regressor.settings(group)?,
                subject.train_ids.len(),
                subject.n_voxels(),
            ),
        )?;
        // Written last: its presence marks the regression as complete.
        save_npy(&out.join("test.npy"), &test_prediction)?;
    }
    Ok(())
}

/// The settings record of `predicted/`: the renormalisation, the test ids of the rows and the
/// fingerprint of each regression's record.
pub fn predict_settings(dir: &SubjectDir, config: &Config, groups: &[TargetGroup]) -> Result<String, WorkflowError> {
    let (_, test_ids) = cache_ids(dir, DataSplit::Test)?;
    let mut settings = format!(
        "renormalisation = {:?}\ntest_ids = \"{}\"\n",
        config.regression.renormalisation,
        ids_fingerprint(&test_ids)
    );
    for group in groups {
        let what = format!("the subject {} {} regression", dir.subject, group.name());
        let regression = record_fingerprint(&dir.regression(group), &what, "fit")?;
        settings += &format!("{}_regression = \"{regression}\"\n", group.key());
    }
    Ok(settings)
}

/// Checks that `predicted/` was made by `predict` from the regressions `config` implies (see
/// [`require_fitted`]): a step never builds on predictions made with other settings.
pub fn require_predicted(
    dir: &SubjectDir,
    config: &Config,
    regressor: &dyn Regressor,
    groups: &[TargetGroup],
) -> Result<(), WorkflowError> {
    for group in groups {
        require_fitted(dir, group, config, regressor)?;
    }
    let folder = predicted_folder(&dir.outputs);
    let what = format!("the subject {} predicted features", dir.subject);
    require_settings(&folder, &predict_settings(dir, config, groups)?, &what, "predict")
}

/// The folder `predicted/` of an output folder.
pub fn predicted_folder(outputs: &super::OutputDir) -> PathBuf {
    outputs.root().join("predicted")
}

/// Renormalises the test predictions of `groups` (per `regression.renormalisation`) into
/// `predicted/<group>.npy`, and records the test ids in row order. The regressions must have been
/// fitted with the settings `config` implies.
pub fn predict_subject(
    dir: &SubjectDir,
    config: &Config,
    regressor: &dyn Regressor,
    groups: &[TargetGroup],
) -> Result<(), WorkflowError> {
    for group in groups {
        require_fitted(dir, group, config, regressor)?;
    }
    let (_, test_ids) = cache_ids(dir, DataSplit::Test)?;
    let ids: String = test_ids.iter().map(|id| format!("{id}\n")).collect();
    check_settings(&predicted_folder(&dir.outputs), &predict_settings(dir, config, groups)?)?;
    for group in groups {
        let regression = dir.regression(group);
        let raw = load_npy(&regression.join("test.npy"))?;
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
    /// One entry per target group, in the session's order.
    pub groups: Vec<PredictedGroup>,
}

/// The predicted rows of one target group, with the feature shape its encoder declared.
pub struct PredictedGroup {
    pub group: TargetGroup,
    pub shape: Vec<usize>,
    pub rows: Array2<f32>,
}

impl PredictedFeatures {
    /// The predicted rows of `group`; a group that was not predicted is an error naming it.
    pub fn rows(&self, group: &TargetGroup) -> Result<&Array2<f32>, WorkflowError> {
        Ok(&self.group(group)?.rows)
    }

    fn group(&self, group: &TargetGroup) -> Result<&PredictedGroup, WorkflowError> {
        self.groups.iter().find(|g| g.group == *group).ok_or_else(|| {
            let predicted: Vec<&str> = self.groups.iter().map(|g| g.group.name()).collect();
            WorkflowError::Invalid(format!(
                "no predicted features of target group '{group}' (predicted: {predicted:?}): a generator consumes it, \
                 so its encoder must be given to the session and `extract`, `fit` and `predict` run for it"
            ))
        })
    }

    /// The rows `range` of `groups` (those a generator consumes, in its order) with their shapes,
    /// and the start images, as a generator's [`ConditionInputs`].
    pub fn inputs(
        &self,
        groups: &[TargetGroup],
        range: std::ops::Range<usize>,
        init_images: Vec<image::RgbImage>,
    ) -> Result<ConditionInputs<'_>, WorkflowError> {
        let features = groups
            .iter()
            .map(|g| {
                let p = self.group(g)?;
                Ok(GroupFeatures {
                    group: g.clone(),
                    shape: p.shape.clone(),
                    rows: p.rows.slice(s![range.clone(), ..]),
                })
            })
            .collect::<Result<Vec<_>, WorkflowError>>()?;
        Ok(ConditionInputs { features, init_images })
    }

    /// `name = [shape]` of each of `groups`, for an image folder's record.
    pub fn shapes_line(&self, groups: &[TargetGroup]) -> Result<String, WorkflowError> {
        let parts = groups
            .iter()
            .map(|g| Ok(format!("\"{g} {:?}\"", self.group(g)?.shape)))
            .collect::<Result<Vec<_>, WorkflowError>>()?;
        Ok(format!("consumes = [{}]\n", parts.join(", ")))
    }
}

/// The feature shape of each of `groups`, as recorded with the subject's training features by
/// `extract` (its encoder's [`crate::Encoder::feature_shape`]).
pub fn group_shapes(dir: &SubjectDir, groups: &[TargetGroup]) -> Result<Vec<(TargetGroup, Vec<usize>)>, WorkflowError> {
    groups
        .iter()
        .map(|g| {
            let what = format!("the subject {} {g} training features", dir.subject);
            Ok((g.clone(), super::extract::recorded_feature_shape(&dir.features(g, DataSplit::Train), &what)?))
        })
        .collect()
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

/// Reads one group's predictions of `predicted/`, checking its shape: `rows` rows of the
/// group's feature `shape`.
pub fn load_predicted_group(
    outputs: &super::OutputDir,
    group: &TargetGroup,
    shape: &[usize],
    rows: usize,
) -> Result<Array2<f32>, WorkflowError> {
    let m = load_npy(&outputs.predicted(group))?;
    let width: usize = shape.iter().product();
    if m.dim() != (rows, width) {
        return Err(WorkflowError::Invalid(format!(
            "{}: predicted {:?} for {rows} test ids of the {group} feature shape {shape:?} ({width} values): the \
             predictions were made from other features; run `brain-diffuser predict` again",
            outputs.predicted(group).display(),
            m.dim()
        )));
    }
    Ok(m)
}

/// Reads one group's predictions of `predicted/`, checking that it has `rows` rows (for readers
/// that do not need the group's feature shape, such as `average`).
pub fn read_predicted_rows(
    outputs: &super::OutputDir,
    group: &TargetGroup,
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

/// Reads the ids of a subject's `predicted/`, checked against the subject cache's test ids
/// ([`check_predicted_ids`]).
pub fn load_subject_predicted_ids(dir: &SubjectDir) -> Result<Vec<usize>, WorkflowError> {
    let ids = load_predicted_ids(&dir.outputs)?;
    check_predicted_ids(&dir.outputs.predicted_ids(), &ids, dir, "predict")?;
    Ok(ids)
}

/// [`load_predicted`] for a subject's `groups` (shapes from its features' records), its ids
/// checked against the subject cache's test ids.
pub fn load_subject_predicted(dir: &SubjectDir, groups: &[TargetGroup]) -> Result<PredictedFeatures, WorkflowError> {
    load_subject_predicted_ids(dir)?;
    load_predicted(&dir.outputs, &group_shapes(dir, groups)?)
}

/// Reads `predicted/` (written by `predict` or `average`): the ids and the groups of `shapes`, as
/// written (the callers of the steps check the ids: [`load_subject_predicted`]).
pub fn load_predicted(
    outputs: &super::OutputDir,
    shapes: &[(TargetGroup, Vec<usize>)],
) -> Result<PredictedFeatures, WorkflowError> {
    let ids = load_predicted_ids(outputs)?;
    let n = ids.len();
    let groups = shapes
        .iter()
        .map(|(group, shape)| {
            let rows = load_predicted_group(outputs, group, shape, n)?;
            Ok(PredictedGroup { group: group.clone(), shape: shape.clone(), rows })
        })
        .collect::<Result<Vec<_>, WorkflowError>>()?;
    Ok(PredictedFeatures { ids, groups })
}

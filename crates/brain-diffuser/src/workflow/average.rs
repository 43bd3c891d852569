//! `average`: the predicted features of several subjects averaged image by image (aligned by NSD
//! id; the shared test images are the same for every subject, their order is not), as the paper's
//! "Sub Avg" column; also the ROI-optimal features when every subject has them.

use std::collections::HashMap;

use ndarray::{Array2, Zip};

use super::fit::{
    check_predicted_ids, load_predicted_ids, load_subject_predicted_ids, predicted_folder, read_predicted_rows,
};
use super::integrity::{fingerprint, record_fingerprint};
use super::{OutputDir, RunDir, WorkflowError, check_settings, load_npy, require_settings, save_npy, write_text};
use crate::TargetGroup;

/// The error of an average over no subject (a sum that was never started).
fn no_subjects() -> WorkflowError {
    WorkflowError::Invalid("an average needs at least one subject, got none".into())
}

/// Adds `m` (rows in `positions` order) into `sum` (rows in the common order), in f64.
fn accumulate(sum: &mut Array2<f64>, m: &Array2<f32>, positions: &[usize]) {
    for (mut target, &p) in sum.rows_mut().into_iter().zip(positions) {
        Zip::from(&mut target).and(m.row(p)).for_each(|s, &x| *s += f64::from(x));
    }
}

fn mean_of(sum: Array2<f64>, count: usize) -> Array2<f32> {
    sum.mapv(|s| (s / count as f64) as f32)
}

/// The settings record of `<run>/average/` for `subjects`: the subject list (its first subject
/// gives the row order and the ground truths) and the fingerprint of each subject's `predicted/`
/// record, so that averages of other subjects, or of predictions made since, are refused.
pub fn average_settings(run: &RunDir, subjects: &[u8]) -> Result<String, WorkflowError> {
    let Some(&first) = subjects.first() else {
        return Err(WorkflowError::Invalid("averaging needs at least one subject".into()));
    };
    if let Some(twice) = subjects.iter().enumerate().find_map(|(k, s)| subjects[..k].contains(s).then_some(s)) {
        return Err(WorkflowError::Invalid(format!(
            "subject {twice} is listed twice in {subjects:?}: each subject is averaged once"
        )));
    }
    let list: Vec<String> = subjects.iter().map(u8::to_string).collect();
    let mut settings = format!("subjects = [{}]\nrow_order = {first}\n", list.join(", "));
    for &s in subjects {
        let what = format!("the subject {s} predicted features");
        let predicted = record_fingerprint(&predicted_folder(&run.subject(s).outputs), &what, "predict")?;
        settings += &format!("subj{s:02}_predicted = \"{predicted}\"\n");
    }
    Ok(settings)
}

/// The subjects recorded in `<run>/average/settings.toml` (row order: the first), or `None`
/// when nothing was averaged yet.
pub fn recorded_subjects(run: &RunDir) -> Result<Option<Vec<u8>>, WorkflowError> {
    let path = run.average().root().join("settings.toml");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(WorkflowError::io(&path, e)),
    };
    let bad = |message: String| WorkflowError::File { path: path.clone(), message };
    let table: toml::Table = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let subjects = table
        .get("subjects")
        .and_then(toml::Value::as_array)
        .ok_or_else(|| bad("no `subjects = [...]` list".into()))?
        .iter()
        .map(|v| v.as_integer().and_then(|n| u8::try_from(n).ok()))
        .collect::<Option<Vec<u8>>>()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("`subjects` must be a non-empty list of subject numbers".into()))?;
    Ok(Some(subjects))
}

/// The recorded subjects of the average, checked to be current: each subject's predictions are
/// still those that were averaged ([`WorkflowError::Stale`] otherwise). `None` without an average.
pub fn current_subjects(run: &RunDir) -> Result<Option<Vec<u8>>, WorkflowError> {
    let Some(subjects) = recorded_subjects(run)? else { return Ok(None) };
    require_settings(run.average().root(), &average_settings(run, &subjects)?, "the subject average", "average")?;
    Ok(Some(subjects))
}

/// The NSD ids of the average's rows and the subject whose order (and ground truths) they follow,
/// checked against that subject's cache ([`check_predicted_ids`]).
pub fn load_average_ids(run: &RunDir) -> Result<(Vec<usize>, u8), WorkflowError> {
    let out = run.average();
    let subjects = current_subjects(run)?
        .ok_or_else(|| WorkflowError::missing("the subject average", &out.root().join("settings.toml"), "average"))?;
    let first = subjects[0];
    let ids = load_predicted_ids(&out)?;
    check_predicted_ids(&out.predicted_ids(), &ids, &run.subject(first), "average")?;
    Ok((ids, first))
}

/// Averages the predictions of `groups` of `subjects` into `run.average()`, rows in the first
/// subject's order (the ROI-optimal features: the paper's groups).
/// One group of one subject is in memory at a time, next to the running f64 sum. The average's
/// record ([`average_settings`]) holds the subject list: another list (or predictions made since)
/// is refused with both records shown; each subject's ids are checked against its cache first.
pub fn average_subjects(run: &RunDir, subjects: &[u8], groups: &[TargetGroup]) -> Result<OutputDir, WorkflowError> {
    let settings = average_settings(run, subjects)?;
    let first = subjects[0];
    check_settings(run.average().root(), &settings)?;
    let ids = subjects.iter().map(|&s| load_subject_predicted_ids(&run.subject(s))).collect::<Result<Vec<_>, _>>()?;
    let order = ids[0].clone();
    // For each subject, the row of each image of `order` in its own predictions.
    let positions = ids
        .iter()
        .zip(subjects)
        .map(|(own, s)| {
            let index: HashMap<usize, usize> = own.iter().enumerate().map(|(i, &id)| (id, i)).collect();
            if own.len() != order.len() {
                return Err(WorkflowError::Invalid(format!(
                    "subject {s} has {} test images, subject {first} {}",
                    own.len(),
                    order.len()
                )));
            }
            order
                .iter()
                .map(|id| {
                    index.get(id).copied().ok_or_else(|| {
                        WorkflowError::Invalid(format!("test image {id} of subject {first} is missing for subject {s}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let out = run.average();
    // The ROI-optimal features are averaged when every subject has them (after `roi`); their
    // record holds the fingerprints of the subjects' ROI-feature records.
    let roi_settings = subjects
        .iter()
        .map(|&s| {
            let folder = run.subject(s).outputs.roi_features_folder();
            let complete = TargetGroup::PAPER.iter().all(|g| run.subject(s).outputs.roi_features(g).exists());
            match (complete, std::fs::read_to_string(folder.join("settings.toml"))) {
                (true, Ok(record)) => Some(format!("subj{s:02}_roi_features = \"{}\"\n", fingerprint(&record))),
                _ => None,
            }
        })
        .collect::<Option<String>>()
        .map(|lines| format!("subjects = {subjects:?}\n{lines}"));
    for group in groups {
        let mut sum: Option<Array2<f64>> = None;
        for (&s, rows) in subjects.iter().zip(&positions) {
            let m = read_predicted_rows(&run.subject(s).outputs, group, order.len())?;
            let sum = sum.get_or_insert_with(|| Array2::zeros((order.len(), m.ncols())));
            if m.ncols() != sum.ncols() {
                return Err(WorkflowError::Invalid(format!(
                    "subject {s}: {} {} values per image, subject {first} {}",
                    m.ncols(),
                    group.name(),
                    sum.ncols()
                )));
            }
            accumulate(sum, &m, rows);
        }
        save_npy(&out.predicted(group), &mean_of(sum.ok_or_else(no_subjects)?, subjects.len()))?;
    }
    for group in &TargetGroup::PAPER {
        // ROI-optimal features share their rows (the 13 ROIs) across subjects.
        let roi: Vec<_> = subjects.iter().map(|&s| run.subject(s).outputs.roi_features(group)).collect();
        if let Some(roi_settings) = &roi_settings {
            check_settings(&out.roi_features_folder(), roi_settings)?;
            let mut sum: Option<Array2<f64>> = None;
            for path in &roi {
                let m = load_npy(path)?;
                let sum = sum.get_or_insert_with(|| Array2::zeros(m.dim()));
                if m.dim() != sum.dim() {
                    return Err(WorkflowError::Invalid(format!(
                        "{}: shape {:?}, expected {:?}",
                        path.display(),
                        m.dim(),
                        sum.dim()
                    )));
                }
                let identity: Vec<usize> = (0..m.nrows()).collect();
                accumulate(sum, &m, &identity);
            }
            save_npy(&out.roi_features(group), &mean_of(sum.ok_or_else(no_subjects)?, subjects.len()))?;
        }
    }
    let text: String = order.iter().map(|id| format!("{id}\n")).collect();
    write_text(&out.predicted_ids(), &text)?;
    write_text(
        &out.root().join("subjects.txt"),
        &format!("averaged subjects: {subjects:?}\nground truth and row order: subject {first}\n"),
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, array};

    /// Subject 1 saw images 10, 20, 30 in that order; subject 2 in the order 30, 10, 20. Writes
    /// their caches' test ids, predictions and `predicted/` records.
    fn two_subjects(run: &RunDir) {
        let rows = [
            (1u8, [10usize, 20, 30], array![[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]]),
            (2, [30, 10, 20], array![[50.0f32, 60.0], [10.0, 20.0], [30.0, 40.0]]),
        ];
        for (s, ids, m) in &rows {
            let dir = run.subject(*s);
            let cache = nsd_io::SubjectData::cache_paths(&dir.fmri(), *s)[3].clone();
            nsd_io::subject::save_npy(&cache, &Array1::from_iter(ids.iter().map(|&i| i as i64))).unwrap();
            let out = dir.outputs;
            write_text(&out.predicted_ids(), &ids.iter().map(|i| format!("{i}\n")).collect::<String>()).unwrap();
            write_text(&predicted_folder(&out).join("settings.toml"), &format!("predictions of subject {s}\n"))
                .unwrap();
            for group in &TargetGroup::PAPER {
                save_npy(&out.predicted(group), m).unwrap();
            }
        }
    }

    #[test]
    fn subjects_are_aligned_by_image_id_before_averaging() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        two_subjects(&run);
        let average = average_subjects(&run, &[1, 2], &TargetGroup::PAPER).unwrap();
        assert_eq!(load_predicted_ids(&average).unwrap(), vec![10, 20, 30]);
        let mean = load_npy(&average.predicted(&TargetGroup::CLIP_TEXT)).unwrap();
        assert_eq!(mean, array![[5.5f32, 11.0], [16.5, 22.0], [27.5, 33.0]]);
        assert_eq!(recorded_subjects(&run).unwrap(), Some(vec![1, 2]));
        assert_eq!(load_average_ids(&run).unwrap(), (vec![10, 20, 30], 1));
        // A subject missing an image is an error naming it (its cache says so too).
        let cache = nsd_io::SubjectData::cache_paths(&run.subject(2).fmri(), 2)[3].clone();
        nsd_io::subject::save_npy(&cache, &Array1::from(vec![30i64, 10, 99])).unwrap();
        write_text(&run.subject(2).outputs.predicted_ids(), "30\n10\n99\n").unwrap();
        let err = average_subjects(&run, &[1, 2], &TargetGroup::PAPER).unwrap_err().to_string();
        assert!(err.contains("test image 20"), "{err}");
    }

    #[test]
    fn another_subject_list_or_newer_predictions_are_refused_with_both_records() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        two_subjects(&run);
        average_subjects(&run, &[1, 2], &TargetGroup::PAPER).unwrap();
        for other in [&[1u8][..], &[2, 1], &[2]] {
            let err = average_subjects(&run, other, &TargetGroup::PAPER).unwrap_err();
            let message = err.to_string();
            assert!(matches!(err, WorkflowError::Stale { .. }), "{message}");
            assert!(
                message.contains("subjects = [1, 2]") && message.contains(&format!("subjects = {other:?}")),
                "{message}"
            );
        }
        let err = average_subjects(&run, &[1, 1], &TargetGroup::PAPER).unwrap_err().to_string();
        assert!(err.contains("listed twice"), "{err}");
        // Subject 2 predicted again (another record): the average is out of date, for `average`
        // and for the readers of the average.
        write_text(&predicted_folder(&run.subject(2).outputs).join("settings.toml"), "other\n").unwrap();
        for err in
            [average_subjects(&run, &[1, 2], &TargetGroup::PAPER).unwrap_err(), load_average_ids(&run).unwrap_err()]
        {
            assert!(matches!(err, WorkflowError::Stale { .. }), "{err}");
            assert!(err.to_string().contains("subj02_predicted"), "{err}");
        }
    }

    #[test]
    fn rotated_predicted_ids_are_refused_naming_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        two_subjects(&run);
        // Subject 2's ids rotated by one line: its rows no longer follow its cache.
        write_text(&run.subject(2).outputs.predicted_ids(), "10\n20\n30\n").unwrap();
        let err = average_subjects(&run, &[1, 2], &TargetGroup::PAPER).unwrap_err().to_string();
        let cache = nsd_io::SubjectData::cache_paths(&run.subject(2).fmri(), 2)[3].clone();
        assert!(err.contains(&run.subject(2).outputs.predicted_ids().display().to_string()), "{err}");
        assert!(err.contains(&cache.display().to_string()) && err.contains("row 0"), "{err}");
        // The average's own ids rotated after averaging.
        two_subjects(&run);
        average_subjects(&run, &[1, 2], &TargetGroup::PAPER).unwrap();
        write_text(&run.average().predicted_ids(), "20\n30\n10\n").unwrap();
        let err = load_average_ids(&run).unwrap_err().to_string();
        assert!(err.contains("average") && err.contains("nsd_test_ids_sub1.npy"), "{err}");
    }
}

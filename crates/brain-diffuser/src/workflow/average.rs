//! `average`: the predicted features of several subjects averaged image by image (aligned by NSD
//! id; the shared test images are the same for every subject, their order is not), as the paper's
//! "Sub Avg" column; also the ROI-optimal features when every subject has them.

use std::collections::HashMap;

use ndarray::{Array2, Zip};

use super::fit::{load_predicted_group, load_predicted_ids};
use super::{OutputDir, RunDir, WorkflowError, load_npy, save_npy, write_text};
use crate::TargetGroup;

/// Adds `m` (rows in `positions` order) into `sum` (rows in the common order), in f64.
fn accumulate(sum: &mut Array2<f64>, m: &Array2<f32>, positions: &[usize]) {
    for (mut target, &p) in sum.rows_mut().into_iter().zip(positions) {
        Zip::from(&mut target).and(m.row(p)).for_each(|s, &x| *s += f64::from(x));
    }
}

fn mean_of(sum: Array2<f64>, count: usize) -> Array2<f32> {
    sum.mapv(|s| (s / count as f64) as f32)
}

/// Averages the predictions of `subjects` into `run.average()`, rows in the first subject's order.
/// One group of one subject is in memory at a time, next to the running f64 sum.
pub fn average_subjects(run: &RunDir, subjects: &[u8]) -> Result<OutputDir, WorkflowError> {
    let Some(&first) = subjects.first() else {
        return Err(WorkflowError::Invalid("averaging needs at least one subject".into()));
    };
    let ids = subjects.iter().map(|&s| load_predicted_ids(&run.subject(s).outputs)).collect::<Result<Vec<_>, _>>()?;
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
    for group in TargetGroup::ALL {
        let mut sum: Option<Array2<f64>> = None;
        for (&s, rows) in subjects.iter().zip(&positions) {
            let m = load_predicted_group(&run.subject(s).outputs, group, order.len())?;
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
        save_npy(&out.predicted(group), &mean_of(sum.unwrap_or_default(), subjects.len()))?;
        // ROI-optimal features share their rows (the 13 ROIs) across subjects.
        let roi: Vec<_> = subjects.iter().map(|&s| run.subject(s).outputs.roi_features(group)).collect();
        if roi.iter().all(|p| p.exists()) {
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
            save_npy(&out.roi_features(group), &mean_of(sum.unwrap_or_default(), subjects.len()))?;
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
    use ndarray::array;

    #[test]
    fn subjects_are_aligned_by_image_id_before_averaging() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        // Subject 1 saw images 10, 20, 30 in that order; subject 2 in the order 30, 10, 20.
        let rows = [
            (1u8, [10usize, 20, 30], array![[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]]),
            (2, [30, 10, 20], array![[50.0f32, 60.0], [10.0, 20.0], [30.0, 40.0]]),
        ];
        for (s, ids, m) in &rows {
            let out = run.subject(*s).outputs;
            write_text(&out.predicted_ids(), &ids.iter().map(|i| format!("{i}\n")).collect::<String>()).unwrap();
            for group in TargetGroup::ALL {
                save_npy(&out.predicted(group), m).unwrap();
            }
        }
        let average = average_subjects(&run, &[1, 2]).unwrap();
        assert_eq!(load_predicted_ids(&average).unwrap(), vec![10, 20, 30]);
        let mean = load_npy(&average.predicted(TargetGroup::ClipText)).unwrap();
        assert_eq!(mean, array![[5.5f32, 11.0], [16.5, 22.0], [27.5, 33.0]]);
        // A subject missing an image is an error naming it.
        write_text(&run.subject(2).outputs.predicted_ids(), "30\n10\n99\n").unwrap();
        let err = average_subjects(&run, &[1, 2]).unwrap_err().to_string();
        assert!(err.contains("test image 20"), "{err}");
    }
}

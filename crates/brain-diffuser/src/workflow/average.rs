//! `average`: the predicted features of several subjects averaged image by image (aligned by NSD
//! id; the shared test images are the same for every subject, their order is not), as the paper's
//! "Sub Avg" column; also the ROI-optimal features when every subject has them.

use ndarray::Array2;

use super::fit::load_predicted;
use super::generate::rows_in_order;
use super::{OutputDir, RunDir, WorkflowError, load_npy, save_npy, write_text};
use crate::TargetGroup;

fn mean(matrices: &[Array2<f32>]) -> Array2<f32> {
    let mut sum = Array2::<f64>::zeros(matrices[0].dim());
    for m in matrices {
        sum.zip_mut_with(m, |s, &x| *s += f64::from(x));
    }
    sum.mapv(|s| (s / matrices.len() as f64) as f32)
}

/// Averages the predictions of `subjects` into `run.average()`, rows in the first subject's order.
pub fn average_subjects(run: &RunDir, subjects: &[u8]) -> Result<OutputDir, WorkflowError> {
    let Some(&first) = subjects.first() else {
        return Err(WorkflowError::Invalid("averaging needs at least one subject".into()));
    };
    let predicted = subjects.iter().map(|&s| load_predicted(&run.subject(s).outputs)).collect::<Result<Vec<_>, _>>()?;
    let order = predicted[0].ids.clone();
    let out = run.average();
    for group in TargetGroup::ALL {
        let aligned = predicted
            .iter()
            .zip(subjects)
            .map(|(p, s)| {
                let m = match group {
                    TargetGroup::Vdvae => &p.vdvae,
                    TargetGroup::ClipVision => &p.clip_vision,
                    TargetGroup::ClipText => &p.clip_text,
                };
                if p.ids.len() != order.len() {
                    return Err(WorkflowError::Invalid(format!(
                        "subject {s} has {} test images, subject {first} {}",
                        p.ids.len(),
                        order.len()
                    )));
                }
                rows_in_order(m, &p.ids, &order)
            })
            .collect::<Result<Vec<_>, _>>()?;
        save_npy(&out.predicted(group), &mean(&aligned))?;
        let roi: Vec<_> = subjects.iter().map(|&s| run.subject(s).outputs.roi_features(group)).collect();
        if roi.iter().all(|p| p.exists()) {
            let features = roi.iter().map(|p| load_npy(p)).collect::<Result<Vec<_>, _>>()?;
            save_npy(&out.roi_features(group), &mean(&features))?;
        }
    }
    let ids: String = order.iter().map(|id| format!("{id}\n")).collect();
    write_text(&out.predicted_ids(), &ids)?;
    write_text(
        &out.root().join("subjects.txt"),
        &format!("averaged subjects: {subjects:?}\nground truth and row order: subject {first}\n"),
    )?;
    Ok(out)
}

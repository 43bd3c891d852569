//! Bringing predicted features back to the scale of the training features.
//!
//! Ridge predictions shrink towards the mean, so the reference rescales them before decoding: each
//! output column is z-scored over the whole test set and mapped to the training features' mean and
//! standard deviation (ddof 0). That makes every reconstruction depend on the whole test batch;
//! [`Renormalisation::TrainOnly`] uses statistics of the predictions on the training fMRI instead,
//! so each test sample is decoded on its own.

use ndarray::{Array1, Array2, ArrayView2, Axis, Zip};

use crate::config::Renormalisation;

/// Per-column mean and standard deviation (ddof 0) of a matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnStats {
    pub mean: Array1<f32>,
    pub std: Array1<f32>,
}

impl ColumnStats {
    /// Statistics of `rows` (n x d), accumulated in f64.
    pub fn of(rows: ArrayView2<f32>) -> Self {
        let mut acc = ColumnAccumulator::new(rows.ncols());
        acc.add(rows);
        acc.finish()
    }
}

/// [`ColumnStats`] of a matrix that arrives in row blocks (e.g. feature files on disk), so that
/// the whole matrix is never held. Adding the blocks in order gives exactly [`ColumnStats::of`]
/// of their concatenation.
#[derive(Debug, Clone)]
pub struct ColumnAccumulator {
    rows: usize,
    sum: Array1<f64>,
    sum_sq: Array1<f64>,
}

impl ColumnAccumulator {
    /// An empty accumulator for `columns` columns.
    pub fn new(columns: usize) -> Self {
        Self { rows: 0, sum: Array1::zeros(columns), sum_sq: Array1::zeros(columns) }
    }

    /// The number of columns.
    pub fn columns(&self) -> usize {
        self.sum.len()
    }

    /// Adds a block of rows; its width must be [`ColumnAccumulator::columns`] (checked by callers;
    /// extra columns are ignored, missing ones are not accumulated).
    pub fn add(&mut self, rows: ArrayView2<f32>) {
        for row in rows.rows() {
            Zip::from(&mut self.sum).and(&mut self.sum_sq).and(&row).for_each(|s, q, &x| {
                *s += f64::from(x);
                *q += f64::from(x) * f64::from(x);
            });
        }
        self.rows += rows.nrows();
    }

    /// The mean and standard deviation (ddof 0) of every row added.
    pub fn finish(&self) -> ColumnStats {
        let n = self.rows.max(1) as f64;
        let mean = self.sum.mapv(|s| s / n);
        let var = Zip::from(&self.sum_sq).and(&mean).map_collect(|&q, &m| (q / n - m * m).max(0.0));
        ColumnStats { mean: mean.mapv(|m| m as f32), std: var.mapv(|v| v.sqrt() as f32) }
    }
}

/// Renormalises `predictions` (n x d) column by column to `train_targets` statistics.
///
/// - `TestSet`: z-score with the statistics of `predictions` themselves (faithful).
/// - `TrainOnly`: z-score with `train_prediction_stats`, the statistics of the regression's
///   predictions on its training fMRI; `None` there is an error (returned as `Err` message).
/// - `None`: returns the predictions unchanged.
///
/// Columns with zero spread are mapped to the training mean.
pub fn renormalise(
    predictions: ArrayView2<f32>,
    train_targets: &ColumnStats,
    train_prediction_stats: Option<&ColumnStats>,
    mode: Renormalisation,
) -> Result<Array2<f32>, String> {
    if train_targets.mean.len() != predictions.ncols() {
        return Err(format!(
            "renormalisation: predictions have {} columns, training statistics {}",
            predictions.ncols(),
            train_targets.mean.len()
        ));
    }
    let source = match mode {
        Renormalisation::None => return Ok(predictions.to_owned()),
        Renormalisation::TestSet => ColumnStats::of(predictions),
        Renormalisation::TrainOnly => train_prediction_stats.cloned().ok_or_else(|| {
            "renormalisation 'train-only' needs the statistics of the training predictions".to_owned()
        })?,
    };
    if source.mean.len() != predictions.ncols() {
        return Err(format!(
            "renormalisation: predictions have {} columns, prediction statistics {}",
            predictions.ncols(),
            source.mean.len()
        ));
    }
    let mut out = predictions.to_owned();
    for mut row in out.axis_iter_mut(Axis(0)) {
        Zip::from(&mut row)
            .and(&source.mean)
            .and(&source.std)
            .and(&train_targets.mean)
            .and(&train_targets.std)
            .for_each(|x, &pm, &ps, &tm, &ts| {
                *x = if ps > 0.0 { (*x - pm) / ps * ts + tm } else { tm };
            });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn test_set_mode_matches_the_reference_formula() {
        let predictions = array![[1.0f32, 10.0], [2.0, 10.0], [6.0, 10.0]];
        let train = array![[0.0f32, 5.0], [4.0, 7.0]];
        let stats = ColumnStats::of(train.view());
        assert_eq!(stats.mean, array![2.0, 6.0]);
        assert_eq!(stats.std, array![2.0, 1.0]);
        let out = renormalise(predictions.view(), &stats, None, Renormalisation::TestSet).unwrap();
        // Column 0: mean 3, population std sqrt(14/3).
        let s = (14.0f32 / 3.0).sqrt();
        for (i, x) in [1.0f32, 2.0, 6.0].iter().enumerate() {
            assert!((out[[i, 0]] - ((x - 3.0) / s * 2.0 + 2.0)).abs() < 1e-6);
        }
        // Column 1 has no spread: it becomes the training mean.
        assert!(out.column(1).iter().all(|&x| x == 6.0));
        // The result has exactly the training statistics.
        let check = ColumnStats::of(out.view());
        assert!((check.mean[0] - 2.0).abs() < 1e-6 && (check.std[0] - 2.0).abs() < 1e-6);
    }

    #[test]
    fn train_only_mode_is_per_sample() {
        let train_targets = ColumnStats { mean: array![1.0], std: array![2.0] };
        let train_predictions = ColumnStats { mean: array![0.5], std: array![0.25] };
        let one = array![[1.0f32]];
        let many = array![[1.0f32], [7.0], [-3.0]];
        let a = renormalise(one.view(), &train_targets, Some(&train_predictions), Renormalisation::TrainOnly).unwrap();
        let b = renormalise(many.view(), &train_targets, Some(&train_predictions), Renormalisation::TrainOnly).unwrap();
        assert_eq!(a[[0, 0]], (1.0 - 0.5) / 0.25 * 2.0 + 1.0);
        assert_eq!(a[[0, 0]], b[[0, 0]], "a sample's output must not depend on the others");
        assert!(renormalise(one.view(), &train_targets, None, Renormalisation::TrainOnly).is_err());
    }

    #[test]
    fn mismatched_columns_are_errors() {
        let stats = ColumnStats { mean: array![0.0, 0.0], std: array![1.0, 1.0] };
        assert!(renormalise(array![[1.0f32]].view(), &stats, None, Renormalisation::TestSet).is_err());
    }
}

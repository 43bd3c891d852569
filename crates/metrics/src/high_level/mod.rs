//! Feature-space metrics: two-way identification, correlation distance and retrieval.
//!
//! Both start from the cross-correlation matrix R[i, j] = Pearson(ground truth i, reconstruction j)
//! over the flattened feature vectors, as `np.corrcoef(gt, rec)[:N, N:]` gives it (rows = ground
//! truths, columns = reconstructions). It is computed in float64 by centring and L2-normalising every
//! row and multiplying, in column blocks (libtorch's float64 matrix product) so that 184,512-dimensional AlexNet features of ~1000 images
//! never need a float64 copy of the whole feature matrix.

pub mod retrieval;

use ndarray::{Array2, ArrayView2, Axis};
use tch::{Device, Kind, Tensor};

use crate::MetricsError;

/// Feature columns converted to float64 per block of the matrix product.
const COLUMN_BLOCK: usize = 8192;

/// Rejects empty, mismatched or non-finite feature matrices with a message naming `what`.
fn check_features(what: &str, gt: &ArrayView2<f32>, rec: &ArrayView2<f32>) -> Result<(), MetricsError> {
    let invalid = |message: String| Err(MetricsError::Invalid { what: what.to_owned(), message });
    if gt.dim() != rec.dim() {
        return invalid(format!(
            "ground-truth features {:?} and reconstruction features {:?} differ in shape",
            gt.dim(),
            rec.dim()
        ));
    }
    if gt.nrows() < 2 || gt.ncols() < 2 {
        return invalid(format!("needs at least 2 images with at least 2 features each, got {:?}", gt.dim()));
    }
    for (name, m) in [("ground-truth", gt), ("reconstruction", rec)] {
        if let Some((index, _)) = m.rows().into_iter().enumerate().find(|(_, r)| r.iter().any(|v| !v.is_finite())) {
            return invalid(format!("{name} feature row {index} contains NaN or infinite values"));
        }
    }
    Ok(())
}

/// Row means and inverse centred norms in float64 (`centre`), or zeros and inverse norms.
fn row_stats(m: &ArrayView2<f32>, centre: bool) -> Vec<(f64, f64)> {
    m.rows()
        .into_iter()
        .map(|r| {
            let n = r.len() as f64;
            let mean = if centre { r.iter().map(|&v| f64::from(v)).sum::<f64>() / n } else { 0.0 };
            let ss: f64 = r.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum();
            (mean, 1.0 / ss.sqrt())
        })
        .collect()
}

/// R[i, j] = Pearson(gt row i, rec row j), in float64. A constant row gives NaN correlations, as numpy.
pub fn cross_correlation(gt: ArrayView2<f32>, rec: ArrayView2<f32>) -> Result<Array2<f64>, MetricsError> {
    similarity_matrix(gt, rec, true)
}

/// S[i, j] = cosine similarity of gt row i and rec row j, in float64 (the retrieval metrics'
/// `batchwise_cosine_similarity` of L2-normalised rows). A zero row gives NaN similarities.
pub fn cosine_similarity(gt: ArrayView2<f32>, rec: ArrayView2<f32>) -> Result<Array2<f64>, MetricsError> {
    similarity_matrix(gt, rec, false)
}

/// The Pearson (`centre`) or cosine matrix of the rows of `gt` and `rec`, in float64 column blocks.
fn similarity_matrix(gt: ArrayView2<f32>, rec: ArrayView2<f32>, centre: bool) -> Result<Array2<f64>, MetricsError> {
    check_features("features", &gt, &rec)?;
    let (n, d) = gt.dim();
    let to_tensor = |m: &ArrayView2<f32>| {
        let m = m.as_standard_layout();
        // `as_standard_layout` guarantees a contiguous slice.
        Tensor::from_slice(m.as_slice().unwrap_or(&[])).view([n as i64, d as i64])
    };
    let stats = |s: Vec<(f64, f64)>| {
        let (means, invs): (Vec<f64>, Vec<f64>) = s.into_iter().unzip();
        (Tensor::from_slice(&means).view([n as i64, 1]), Tensor::from_slice(&invs).view([n as i64, 1]))
    };
    let (g, p) = (to_tensor(&gt), to_tensor(&rec));
    let ((gm, gi), (pm, pi)) = (stats(row_stats(&gt, centre)), stats(row_stats(&rec, centre)));
    let r = tch::no_grad(|| -> Result<Tensor, MetricsError> {
        let mut r = Tensor::f_zeros([n as i64, n as i64], (Kind::Double, Device::Cpu))?;
        let mut start = 0;
        while start < d {
            let len = COLUMN_BLOCK.min(d - start);
            let gb = (g.f_narrow(1, start as i64, len as i64)?.f_to_kind(Kind::Double)? - &gm) * &gi;
            let pb = (p.f_narrow(1, start as i64, len as i64)?.f_to_kind(Kind::Double)? - &pm) * &pi;
            r = r.f_addmm(&gb, &pb.f_tr()?)?;
            start += len;
        }
        Ok(r)
    })?;
    let values = Vec::<f64>::try_from(r.flatten(0, -1))?;
    let what = if centre { "correlation matrix" } else { "cosine similarity matrix" };
    Array2::from_shape_vec((n, n), values)
        .map_err(|e| MetricsError::Invalid { what: what.into(), message: e.to_string() })
}

/// Two-way identification accuracy from a cross-correlation matrix (rows = ground truths,
/// columns = reconstructions): the fraction of pairs (i != j) with R[i, j] < R[j, j], i.e. for each
/// reconstruction, how many other ground truths correlate strictly less with it than its own does.
/// Ties and NaN count as failures; the diagonal never counts, hence the division by N(N-1).
pub fn two_way_identification_from_matrix(r: ArrayView2<f64>) -> Result<f64, MetricsError> {
    let n = r.nrows();
    if n < 2 || r.ncols() != n {
        return Err(MetricsError::Invalid {
            what: "correlation matrix".into(),
            message: format!("needs a square matrix of at least 2x2, got {:?}", r.dim()),
        });
    }
    let mut successes: u64 = 0;
    for j in 0..n {
        let own = r[[j, j]];
        successes += r.column(j).iter().filter(|&&v| v < own).count() as u64;
    }
    // numpy's `np.mean(success_cnt) / (N - 1)`, in that order, so that results are bit-identical.
    Ok(successes as f64 / n as f64 / (n - 1) as f64)
}

/// Two-way identification accuracy (chance 0.5) of reconstruction features against ground-truth
/// features, one flattened feature vector per row (Brain-Diffuser's `pairwise_corr_all`,
/// MindEye's `two_way_identification`).
pub fn two_way_identification(gt: ArrayView2<f32>, rec: ArrayView2<f32>) -> Result<f64, MetricsError> {
    two_way_identification_from_matrix(cross_correlation(gt, rec)?.view())
}

/// Per-pair correlation distance 1 - Pearson(gt_i, rec_i) (`scipy.spatial.distance.correlation`).
pub fn correlation_distances(gt: ArrayView2<f32>, rec: ArrayView2<f32>) -> Result<Vec<f64>, MetricsError> {
    check_features("features", &gt, &rec)?;
    let (gs, rs) = (row_stats(&gt, true), row_stats(&rec, true));
    Ok(gt
        .axis_iter(Axis(0))
        .zip(rec.axis_iter(Axis(0)))
        .zip(gs.iter().zip(&rs))
        .map(|((g, p), (&(mg, ig), &(mp, ip)))| {
            let dot: f64 = g.iter().zip(p.iter()).map(|(&a, &b)| (f64::from(a) - mg) * (f64::from(b) - mp)).sum();
            1.0 - dot * ig * ip
        })
        .collect())
}

/// Mean correlation distance over the image pairs (EffNet-B and SwAV columns; lower is better).
pub fn mean_correlation_distance(gt: ArrayView2<f32>, rec: ArrayView2<f32>) -> Result<f64, MetricsError> {
    let d = correlation_distances(gt, rec)?;
    Ok(d.iter().sum::<f64>() / d.len() as f64)
}

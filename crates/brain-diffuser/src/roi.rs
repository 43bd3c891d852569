//! Region-of-interest tools: the ROI masks over nsdgeneral voxels, the "ROI-optimal" features that
//! the reference decodes into images, and the paper's Figure 7 statistic on regression weights.
//!
//! All functions take plain arrays in nsdgeneral voxel order; reading the label volumes is
//! `nsd-io`'s job and producing weights in column blocks is `ridge`'s.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

use crate::config::VisualRoiSource;
use crate::renormalise::ColumnStats;

/// The 13 ROIs of the reference, in its order.
pub const ROI_NAMES: [&str; 13] =
    ["faces", "words", "places", "bodies", "V1", "V2", "V3", "V4", "ecc05", "ecc10", "ecc20", "ecc40", "ecc40p"];

/// The NSD label volumes the masks come from, each already restricted to the nsdgeneral voxels
/// (one value per voxel, in the same order as the fMRI columns).
#[derive(Debug, Clone, Copy)]
pub struct RoiLabels<'a> {
    pub floc_faces: ArrayView1<'a, f32>,
    pub floc_words: ArrayView1<'a, f32>,
    pub floc_places: ArrayView1<'a, f32>,
    pub floc_bodies: ArrayView1<'a, f32>,
    /// `prf-visualrois` (labels 1-7: V1v, V1d, V2v, V2d, V3v, V3d, hV4).
    pub prf_visualrois: ArrayView1<'a, f32>,
    /// `prf-eccrois` (labels 1-5: 0.5, 1, 2, 4, >4 degrees).
    pub prf_eccrois: ArrayView1<'a, f32>,
}

/// The 13 binary ROI patterns (13 x voxels, 1 inside, 0 outside), in [`ROI_NAMES`] order.
///
/// Category ROIs merge every positive label. V1-V4 read `prf-visualrois` labels {1,2}, {3,4},
/// {5,6}, {7}; with [`VisualRoiSource::FlocFaces`] they read those labels from `floc-faces`, which
/// is the reference's bug, kept to reproduce its images.
pub fn roi_patterns(labels: &RoiLabels<'_>, visual: VisualRoiSource) -> Result<Array2<f32>, String> {
    let n = labels.floc_faces.len();
    let volumes = [
        ("floc-faces", labels.floc_faces),
        ("floc-words", labels.floc_words),
        ("floc-places", labels.floc_places),
        ("floc-bodies", labels.floc_bodies),
        ("prf-visualrois", labels.prf_visualrois),
        ("prf-eccrois", labels.prf_eccrois),
    ];
    if let Some((name, v)) = volumes.iter().find(|(_, v)| v.len() != n) {
        return Err(format!("ROI labels '{name}' have {} voxels, floc-faces has {n}", v.len()));
    }
    let visual_labels = match visual {
        VisualRoiSource::PrfVisualrois => labels.prf_visualrois,
        VisualRoiSource::FlocFaces => labels.floc_faces,
    };
    let mut patterns = Array2::<f32>::zeros((ROI_NAMES.len(), n));
    let mut set = |row: usize, labels: ArrayView1<f32>, inside: &dyn Fn(f32) -> bool| {
        for (out, &label) in patterns.row_mut(row).iter_mut().zip(labels) {
            *out = if inside(label) { 1.0 } else { 0.0 };
        }
    };
    set(0, labels.floc_faces, &|l| l > 0.0);
    set(1, labels.floc_words, &|l| l > 0.0);
    set(2, labels.floc_places, &|l| l > 0.0);
    set(3, labels.floc_bodies, &|l| l > 0.0);
    set(4, visual_labels, &|l| l == 1.0 || l == 2.0);
    set(5, visual_labels, &|l| l == 3.0 || l == 4.0);
    set(6, visual_labels, &|l| l == 5.0 || l == 6.0);
    set(7, visual_labels, &|l| l == 7.0);
    for (k, label) in (1..=5).enumerate() {
        set(8 + k, labels.prf_eccrois, &|l| l == label as f32);
    }
    Ok(patterns)
}

/// Divides each row by its L2 norm (+ 1e-8, as the reference), then returns `scale * row + bias`.
fn normalise_scale_shift(response: ArrayView2<f32>, scale: f32, bias: ArrayView1<f32>) -> Array2<f32> {
    let mut out = response.to_owned();
    for mut row in out.axis_iter_mut(Axis(0)) {
        let norm = row.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt() as f32 + 1e-8;
        row.zip_mut_with(&bias, |x, &b| *x = scale * (*x / norm) + b);
    }
    out
}

/// ROI-optimal VDVAE latents (reference `roi_generate_features.py`).
///
/// `response` is `patterns @ W^T` (ROIs x 91,168) for the VDVAE ridge weights W, `bias` its
/// intercepts. Each row is normalised, scaled by `scale` (50) and shifted by the bias; each latent is
/// z-scored across the ROIs and mapped to the training latents' statistics; finally each row is
/// rescaled to L2 norm `norm` (80).
pub fn vdvae_roi_latents(
    response: ArrayView2<f32>,
    bias: ArrayView1<f32>,
    train_latents: &ColumnStats,
    scale: f32,
    norm: f32,
) -> Result<Array2<f32>, String> {
    let d = response.ncols();
    if bias.len() != d || train_latents.mean.len() != d {
        return Err(format!(
            "ROI VDVAE latents: response has {d} columns, bias {}, training statistics {}",
            bias.len(),
            train_latents.mean.len()
        ));
    }
    let shifted = normalise_scale_shift(response, scale, bias);
    let across_rois = ColumnStats::of(shifted.view());
    let mut out = shifted;
    for mut row in out.axis_iter_mut(Axis(0)) {
        for (j, x) in row.iter_mut().enumerate() {
            let z = if across_rois.std[j] > 0.0 { (*x - across_rois.mean[j]) / across_rois.std[j] } else { 0.0 };
            *x = z * train_latents.std[j] + train_latents.mean[j];
        }
        let row_norm = row.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt() as f32;
        if row_norm > 0.0 {
            row.mapv_inplace(|x| x / row_norm * norm);
        }
    }
    Ok(out)
}

/// ROI-optimal CLIP embeddings: `response` is `patterns @ W^T` (ROIs x tokens*768, all tokens of
/// one ROI in a row), normalised per ROI over all tokens (the Frobenius norm), scaled by `scale`
/// (9 for text, 15 for vision) and shifted by the intercepts `bias` (tokens*768).
pub fn clip_roi_embeddings(
    response: ArrayView2<f32>,
    bias: ArrayView1<f32>,
    scale: f32,
) -> Result<Array2<f32>, String> {
    if bias.len() != response.ncols() {
        return Err(format!("ROI CLIP embeddings: response has {} columns, bias {}", response.ncols(), bias.len()));
    }
    Ok(normalise_scale_shift(response, scale, bias))
}

/// Accumulates, per voxel, the L1 norm of one regression's weights over all of its targets, from
/// weight blocks of shape (voxels x targets in the block), so the full weights are never held.
#[derive(Debug, Clone)]
pub struct VoxelWeightNorms {
    l1: Array1<f64>,
}

impl VoxelWeightNorms {
    /// Starts with zero for each of `voxels` voxels.
    pub fn new(voxels: usize) -> Self {
        Self { l1: Array1::zeros(voxels) }
    }

    /// Adds the absolute weights of one block (voxels x targets).
    pub fn add_block(&mut self, block: ArrayView2<f32>) -> Result<(), String> {
        if block.nrows() != self.l1.len() {
            return Err(format!("weight block has {} voxel rows, expected {}", block.nrows(), self.l1.len()));
        }
        // Walk the block in memory order (ridge's weight blocks arrive as the transpose of a
        // row-major targets x voxels matrix, so their columns are contiguous); either way each
        // voxel's block sum adds its targets in order, so both give the same bits.
        if block.ncols() > 1 && block.strides()[0] == 1 {
            let mut block_sums = vec![0f64; self.l1.len()];
            for column in block.columns() {
                for (sum, &w) in block_sums.iter_mut().zip(column) {
                    *sum += f64::from(w.abs());
                }
            }
            for (sum, block_sum) in self.l1.iter_mut().zip(block_sums) {
                *sum += block_sum;
            }
        } else {
            for (sum, row) in self.l1.iter_mut().zip(block.rows()) {
                *sum += row.iter().map(|&w| f64::from(w.abs())).sum::<f64>();
            }
        }
        Ok(())
    }

    /// The per-voxel L1 norms.
    pub fn norms(&self) -> ArrayView1<'_, f64> {
        self.l1.view()
    }
}

/// The percentile (0-100) of each value among all values, as `scipy.stats.percentileofscore` with
/// `kind='rank'`: ties share the mean of their ranks.
pub fn percentiles(values: ArrayView1<f64>) -> Array1<f64> {
    let n = values.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut out = Array1::zeros(n);
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // `start` values are smaller, `end` are smaller or equal.
        let pct = (start + end + usize::from(end > start)) as f64 * 50.0 / n as f64;
        for &i in &order[start..end] {
            out[i] = pct;
        }
        start = end;
    }
    out
}

/// One row of the Figure 7 table: within an ROI, the mean over its voxels of the difference in
/// weight-strength percentile between a CLIP regression and the VDVAE regression.
#[derive(Debug, Clone, PartialEq)]
pub struct RoiWeightDifference {
    pub roi: &'static str,
    pub voxels: usize,
    /// Mean of (CLIP-Vision percentile - VDVAE percentile).
    pub clip_vision_minus_vdvae: f64,
    /// Mean of (CLIP-Text percentile - VDVAE percentile).
    pub clip_text_minus_vdvae: f64,
    /// Standard errors of the two means.
    pub clip_vision_sem: f64,
    pub clip_text_sem: f64,
    /// Mean VDVAE percentile over the ROI's voxels: the paper's Figure 7 divides the two
    /// differences by it ([`RoiWeightDifference::normalised`]).
    pub vdvae_percentile: f64,
}

impl RoiWeightDifference {
    /// The Figure 7 values: the mean differences divided by the ROI's mean VDVAE percentile
    /// (CLIP-Vision, CLIP-Text).
    pub fn normalised(&self) -> (f64, f64) {
        (self.clip_vision_minus_vdvae / self.vdvae_percentile, self.clip_text_minus_vdvae / self.vdvae_percentile)
    }
}

/// The paper's Figure 7 statistic from the per-voxel L1 norms of the three regressions and the ROI
/// patterns of [`roi_patterns`]. ROIs without voxels are reported with zero voxels and NaN values.
pub fn roi_weight_differences(
    vdvae: ArrayView1<f64>,
    clip_vision: ArrayView1<f64>,
    clip_text: ArrayView1<f64>,
    patterns: ArrayView2<f32>,
) -> Result<Vec<RoiWeightDifference>, String> {
    let n = vdvae.len();
    if clip_vision.len() != n || clip_text.len() != n || patterns.ncols() != n {
        return Err(format!(
            "weight norms have {n}, {} and {} voxels, ROI patterns {}",
            clip_vision.len(),
            clip_text.len(),
            patterns.ncols()
        ));
    }
    let (pv, pc, pt) = (percentiles(vdvae), percentiles(clip_vision), percentiles(clip_text));
    let mean_sem = |diffs: &[f64]| -> (f64, f64) {
        let k = diffs.len() as f64;
        let mean = diffs.iter().sum::<f64>() / k;
        let var = if diffs.len() > 1 { diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (k - 1.0) } else { 0.0 };
        (mean, (var / k).sqrt())
    };
    Ok(ROI_NAMES
        .iter()
        .zip(patterns.rows())
        .map(|(&roi, mask)| {
            let inside: Vec<usize> = mask.iter().enumerate().filter(|(_, m)| **m > 0.0).map(|(i, _)| i).collect();
            let dv: Vec<f64> = inside.iter().map(|&i| pc[i] - pv[i]).collect();
            let dt: Vec<f64> = inside.iter().map(|&i| pt[i] - pv[i]).collect();
            let ((cv, cv_sem), (ct, ct_sem)) = (mean_sem(&dv), mean_sem(&dt));
            let vdvae_percentile = inside.iter().map(|&i| pv[i]).sum::<f64>() / inside.len() as f64;
            RoiWeightDifference {
                roi,
                voxels: inside.len(),
                clip_vision_minus_vdvae: cv,
                clip_text_minus_vdvae: ct,
                clip_vision_sem: cv_sem,
                clip_text_sem: ct_sem,
                vdvae_percentile,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, array};

    fn labels(values: &[f32]) -> Array1<f32> {
        Array1::from(values.to_vec())
    }

    #[test]
    fn patterns_follow_the_label_schemes_and_the_visual_source() {
        let faces = labels(&[1.0, 2.0, 0.0, -1.0, 7.0, 3.0]);
        let zeros = labels(&[0.0; 6]);
        let prf = labels(&[1.0, 2.0, 3.0, 5.0, 7.0, 0.0]);
        let ecc = labels(&[1.0, 2.0, 3.0, 4.0, 5.0, -1.0]);
        let l = RoiLabels {
            floc_faces: faces.view(),
            floc_words: zeros.view(),
            floc_places: zeros.view(),
            floc_bodies: zeros.view(),
            prf_visualrois: prf.view(),
            prf_eccrois: ecc.view(),
        };
        let p = roi_patterns(&l, VisualRoiSource::PrfVisualrois).unwrap();
        assert_eq!(p.row(0).to_vec(), vec![1.0, 1.0, 0.0, 0.0, 1.0, 1.0]);
        assert_eq!(p.row(4).to_vec(), vec![1.0, 1.0, 0.0, 0.0, 0.0, 0.0]); // V1
        assert_eq!(p.row(5).to_vec(), vec![0.0, 0.0, 1.0, 0.0, 0.0, 0.0]); // V2
        assert_eq!(p.row(6).to_vec(), vec![0.0, 0.0, 0.0, 1.0, 0.0, 0.0]); // V3
        assert_eq!(p.row(7).to_vec(), vec![0.0, 0.0, 0.0, 0.0, 1.0, 0.0]); // V4
        for k in 0..5 {
            let expected: Vec<f32> = (0..6).map(|i| if i == k { 1.0 } else { 0.0 }).collect();
            assert_eq!(p.row(8 + k).to_vec(), expected, "eccentricity ROI {k}");
        }
        let bug = roi_patterns(&l, VisualRoiSource::FlocFaces).unwrap();
        assert_eq!(bug.row(4).to_vec(), vec![1.0, 1.0, 0.0, 0.0, 0.0, 0.0]); // faces labels 1, 2
        assert_eq!(bug.row(7).to_vec(), vec![0.0, 0.0, 0.0, 0.0, 1.0, 0.0]); // faces label 7
        assert_eq!(bug.row(5).to_vec(), vec![0.0, 0.0, 0.0, 0.0, 0.0, 1.0]); // faces label 3
    }

    #[test]
    fn percentiles_match_scipy_rank_kind() {
        // scipy.stats.percentileofscore([3, 1, 2, 2], s, kind='rank') for s = 3, 1, 2, 2.
        let p = percentiles(array![3.0, 1.0, 2.0, 2.0].view());
        assert_eq!(p.to_vec(), vec![100.0, 25.0, 62.5, 62.5]);
    }

    #[test]
    fn voxel_norms_accumulate_over_blocks() {
        let mut norms = VoxelWeightNorms::new(2);
        norms.add_block(array![[1.0f32, -2.0], [0.5, 0.0]].view()).unwrap();
        norms.add_block(array![[-3.0f32], [0.25]].view()).unwrap();
        assert_eq!(norms.norms().to_vec(), vec![6.0, 0.75]);
        assert!(norms.add_block(array![[1.0f32]].view()).is_err());
        // A block given as the transpose of a targets x voxels matrix (as the workflow hands
        // ridge's weights over) is walked by columns and gives the same bits.
        let coef = Array2::from_shape_fn((5, 3), |(j, v)| ((j * 3 + v) as f32 * 0.37).sin());
        let (mut by_rows, mut by_columns) = (VoxelWeightNorms::new(3), VoxelWeightNorms::new(3));
        by_rows.add_block(coef.t().as_standard_layout().view()).unwrap();
        by_columns.add_block(coef.t()).unwrap();
        assert_eq!(by_rows.norms(), by_columns.norms());
    }

    #[test]
    fn weight_differences_favour_the_regression_that_uses_the_roi() {
        // Voxels 0-1 carry VDVAE weight, voxels 2-3 CLIP weight.
        let vdvae = array![9.0, 8.0, 1.0, 2.0];
        let clip = array![1.0, 2.0, 9.0, 8.0];
        let mut patterns = Array2::<f32>::zeros((13, 4));
        patterns[[4, 0]] = 1.0; // V1 = voxels 0, 1
        patterns[[4, 1]] = 1.0;
        patterns[[0, 2]] = 1.0; // faces = voxels 2, 3
        patterns[[0, 3]] = 1.0;
        let rows = roi_weight_differences(vdvae.view(), clip.view(), clip.view(), patterns.view()).unwrap();
        let v1 = rows.iter().find(|r| r.roi == "V1").unwrap();
        let faces = rows.iter().find(|r| r.roi == "faces").unwrap();
        assert_eq!((v1.voxels, faces.voxels), (2, 2));
        assert_eq!(v1.clip_text_minus_vdvae, -50.0);
        assert_eq!(faces.clip_text_minus_vdvae, 50.0);
        assert!(rows.iter().find(|r| r.roi == "V2").unwrap().clip_text_minus_vdvae.is_nan());
    }

    #[test]
    fn roi_latents_follow_the_reference_recipe() {
        let response = array![[3.0f32, 4.0], [0.0, 2.0]];
        let bias = array![1.0f32, -1.0];
        let train = ColumnStats { mean: array![0.5, 0.0], std: array![2.0, 1.0] };
        let out = vdvae_roi_latents(response.view(), bias.view(), &train, 50.0, 80.0).unwrap();
        // Rows after normalise/scale/shift: [31, 39] and [1, 49]; z-scores across the two ROIs are
        // [+1, -1] and [-1, +1]; mapped to train stats: [2.5, -1] and [-1.5, 1]; then norm 80.
        let expected = [[2.5f32, -1.0], [-1.5, 1.0]];
        for (r, e) in expected.iter().enumerate() {
            let norm = (e[0] * e[0] + e[1] * e[1]).sqrt();
            for c in 0..2 {
                assert!((out[[r, c]] - e[c] / norm * 80.0).abs() < 1e-4, "{out}");
            }
        }
        let clip = clip_roi_embeddings(response.view(), bias.view(), 9.0).unwrap();
        assert!((clip[[0, 0]] - (9.0 * 0.6 + 1.0)).abs() < 1e-5);
        assert!((clip[[1, 1]] - (9.0 * 1.0 - 1.0)).abs() < 1e-5);
    }
}

//! End-to-end truth on a synthetic NSD: fMRI written in NSD's native formats from a known linear
//! encoding model, read back by `nsd-io` as the reference prepares it, and decoded by a ridge
//! [`Regressor`] (through the trait, as the pipeline uses it) into features that identify their images.

use brain_diffuser::stages::ridge::RidgeRegressor;
use brain_diffuser::{Regressor, TargetGroup};
use metrics::high_level::two_way_identification;
use ndarray::{Array2, Axis};

mod common;

/// Rows of `features` for the given NSD ids.
fn rows(features: &Array2<f32>, ids: &[usize]) -> Array2<f32> {
    features.select(Axis(0), ids)
}

#[test]
fn predicted_test_features_identify_their_images() {
    let (_dir, nsd, subject) = common::synthetic_subject(11);
    assert_eq!(subject.test_ids.len(), 40, "every shared image is a test image");

    let train_y = rows(&nsd.truth.features, &subject.train_ids);
    let test_y = rows(&nsd.truth.features, &subject.test_ids);
    let ridge: Box<dyn Regressor> = Box::new(RidgeRegressor::fixed(100.0, true));
    let mut prepared = ridge.prepare(subject.train_fmri.view(), &[subject.test_fmri.view()]).expect("ridge prepares");
    let mut predicted = prepared.fit_predict(&TargetGroup::VDVAE, &mut train_y.view()).expect("ridge fits");
    let predicted = predicted.pop().expect("the test predictions");

    // Why 0.9: each voxel's signal has unit variance against noise of sd 0.5 per trial, averaged
    // over up to 3 repetitions, and each feature is spread over hundreds of voxels, so the decoded
    // features correlate with the truth far above 0.5; two-way identification of 40 images is then
    // near 1. Chance is 0.5, with a standard deviation of about 0.29 / sqrt(40) = 0.05 over images.
    let score = two_way_identification(test_y.view(), predicted.view()).expect("identification");
    eprintln!("identification {score:.3}");
    assert!(score > 0.9, "two-way identification {score:.3} is not well above chance (0.5)");

    // Control: predictions paired with the wrong images must fall back towards chance.
    let mut shuffled_ids = subject.test_ids.clone();
    shuffled_ids.rotate_left(7);
    let wrong = rows(&nsd.truth.features, &shuffled_ids);
    let control = two_way_identification(wrong.view(), predicted.view()).expect("identification");
    eprintln!("control {control:.3}");
    assert!(control < 0.75, "mismatched pairs score {control:.3}: the test could not fail");
}

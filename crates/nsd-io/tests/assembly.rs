//! Subject assembly against the reference: the committed mini-NSD (written by our synthetic
//! writer) was assembled by tools/nsd-io/reference_assembly.py, which follows the reference's
//! prepare_nsddata.py with nibabel, scipy and numpy. Our assembly must give the same arrays.

use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2, Axis};
use ndarray_npy::read_npy;
use nsd_io::synth::{SynthConfig, ground_truth, write_synthetic_nsd, write_synthetic_nsd_from};
use nsd_io::{AssemblyOptions, CaptionTable, NsdLayout, SubjectData, assemble_subject};

fn mini() -> (NsdLayout, PathBuf) {
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    (NsdLayout::new(fx.join("mini_nsd")), fx.join("mini_nsd_ref"))
}

fn options() -> AssemblyOptions {
    SynthConfig::default().assembly_options()
}

fn ids(path: PathBuf) -> Vec<usize> {
    let a: Array1<i64> = read_npy(path).unwrap();
    a.iter().map(|&v| v as usize).collect()
}

/// Exact on any CPU: nibabel's scaling in f64, then f32 sums in trial order divided in f32
/// (numpy's `mean(0)` of the reference's f32 rows): correctly rounded IEEE operations in Rust, in
/// a fixed order, with no BLAS or libm.
fn assert_same(ours: &Array2<f32>, theirs: &Array2<f64>, what: &str) {
    assert_eq!(ours.dim(), theirs.dim(), "{what}");
    for (a, b) in ours.iter().zip(theirs) {
        assert_eq!(*a as f64, *b, "{what}");
    }
}

#[test]
fn assembly_matches_reference_prepare_script() {
    let (layout, reference) = mini();
    let subject = assemble_subject(&layout, 1, &options()).unwrap();
    assert_eq!(subject.train_ids, ids(reference.join("train_ids.npy")));
    assert_eq!(subject.test_ids, ids(reference.join("test_ids.npy")));
    // Averages of f32 repetitions: bit-identical to numpy's mean of the reference's f32 rows.
    assert_same(&subject.train_fmri, &read_npy(reference.join("train_fmri.npy")).unwrap(), "train fMRI");
    assert_same(&subject.test_fmri, &read_npy(reference.join("test_fmri.npy")).unwrap(), "test fMRI");
    assert_eq!(subject.train_captions, CaptionTable::read_npy(&reference.join("train_cap.npy")).unwrap());
    assert_eq!(subject.test_captions, CaptionTable::read_npy(&reference.join("test_cap.npy")).unwrap());
    // The test set really has repetitions to average, and some images have fewer than 3.
    assert!(subject.test_fmri.nrows() < 60 && subject.train_fmri.nrows() > 20);
}

/// MindEye2's regime: one training row per trial. Averaging each image's single-trial rows in trial
/// order gives the reference's averaged rows bit for bit (the same f32 sums in the same order), the
/// rows repeat their image's id once per trial, and the test half is unchanged.
#[test]
fn single_training_trials_average_back_to_the_reference_rows() {
    let (layout, _) = mini();
    let averaged = assemble_subject(&layout, 1, &options()).unwrap();
    let single =
        assemble_subject(&layout, 1, &AssemblyOptions { train_trials: nsd_io::TrainTrials::Single, ..options() })
            .unwrap();
    assert!(single.train_ids.len() > averaged.train_ids.len(), "some training images were shown more than once");
    assert_eq!(single.train_captions.rows.len(), single.train_ids.len());
    assert_eq!((&single.test_fmri, &single.test_ids), (&averaged.test_fmri, &averaged.test_ids));
    for (row, id) in averaged.train_ids.iter().enumerate() {
        let trials: Vec<usize> = (0..single.train_ids.len()).filter(|&k| single.train_ids[k] == *id).collect();
        let mut sum = single.train_fmri.row(trials[0]).to_owned();
        for &k in &trials[1..] {
            sum += &single.train_fmri.row(k);
        }
        let mean = sum.mapv(|v| v / trials.len() as f32);
        assert_eq!(mean, averaged.train_fmri.row(row), "image {id} ({} trials)", trials.len());
    }
    let first: Vec<usize> = single.train_ids.iter().fold(Vec::new(), |mut seen, id| {
        if !seen.contains(id) {
            seen.push(*id);
        }
        seen
    });
    assert_eq!(first, averaged.train_ids, "images in order of first appearance");
}

#[test]
fn scaling_and_zscoring_match_the_regression_scripts() {
    let (layout, reference) = mini();
    let mut subject = assemble_subject(&layout, 1, &AssemblyOptions { with_captions: false, ..options() }).unwrap();
    subject.divide(300.0);
    let stats = subject.zscore_with_train_stats().unwrap();
    let want_train: Array2<f64> = read_npy(reference.join("train_fmri_z.npy")).unwrap();
    let want_test: Array2<f64> = read_npy(reference.join("test_fmri_z.npy")).unwrap();
    for (ours, theirs) in [(&subject.train_fmri, &want_train), (&subject.test_fmri, &want_test)] {
        let worst = ours.iter().zip(theirs).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
        assert!(worst < 2e-6, "z-scored values differ by {worst}");
    }
    // Train columns are standardised: mean 0, std 1 (ddof 1).
    let m = subject.train_fmri.mean_axis(Axis(0)).unwrap();
    assert!(m.iter().all(|v| v.abs() < 1e-5));
    assert_eq!(stats.mean.len(), subject.n_voxels());
}

#[cfg(feature = "hdf5")]
#[test]
fn hdf5_betas_and_stimuli_give_the_same_subject() {
    let (layout, reference) = mini();
    let nifti = assemble_subject(&layout, 1, &AssemblyOptions { with_captions: false, ..options() }).unwrap();
    let hdf5 = assemble_subject(
        &layout,
        1,
        &AssemblyOptions { with_captions: false, betas_format: nsd_io::BetasFormat::Hdf5, ..options() },
    )
    .unwrap();
    assert_eq!(nifti, hdf5);
    let brick = nsd_io::hdf5::StimulusBrick::open(&layout.stimuli()).unwrap();
    let stim = brick.read(&nifti.test_ids).unwrap();
    let want: ndarray::Array4<u8> = read_npy(reference.join("test_stim.npy")).unwrap();
    assert_eq!(stim, want);
}

#[test]
fn progress_is_reported_once_per_session_and_changes_nothing() {
    let (layout, _) = mini();
    let mut calls = Vec::new();
    let with =
        nsd_io::assemble_subject_with_progress(&layout, 1, &options(), &mut |done, total| calls.push((done, total)))
            .unwrap();
    let sessions = options().sessions;
    assert_eq!(calls, (1..=sessions).map(|s| (s, sessions)).collect::<Vec<_>>());
    assert_eq!(with, assemble_subject(&layout, 1, &options()).unwrap());
}

#[test]
fn cache_round_trips_through_npy() {
    let (layout, _) = mini();
    let subject = assemble_subject(&layout, 1, &options()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    subject.save(dir.path()).unwrap();
    assert_eq!(SubjectData::load(dir.path(), 1).unwrap(), subject);
    // numpy-readable: the fMRI file is a plain little-endian f32 npy.
    let raw = std::fs::read(&SubjectData::cache_paths(dir.path(), 1)[0]).unwrap();
    assert!(raw.starts_with(b"\x93NUMPY") && String::from_utf8_lossy(&raw[..128]).contains("'<f4'"));
}

#[test]
fn regenerating_the_mini_nsd_reproduces_the_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let nsd = write_synthetic_nsd(dir.path(), &SynthConfig::default()).unwrap();
    let (layout, _) = mini();
    let again = assemble_subject(&nsd.layout, 1, &nsd.config.assembly_options()).unwrap();
    let committed = assemble_subject(&layout, 1, &options()).unwrap();
    assert_eq!(again, committed, "same seed, same data");
    let truth: Array2<f32> = read_npy(layout.root.join("truth_features.npy")).unwrap();
    assert_eq!(nsd.truth.features, truth);
    let other =
        write_synthetic_nsd(&dir.path().join("seed1"), &SynthConfig { seed: 1, ..SynthConfig::default() }).unwrap();
    assert_ne!(other.truth.features, nsd.truth.features);
}

/// Pearson correlation of two rows.
fn corr(a: ndarray::ArrayView1<f32>, b: ndarray::ArrayView1<f32>) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.sum() as f64 / n, b.sum() as f64 / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64 - ma, y as f64 - mb);
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    sab / (saa * sbb).sqrt()
}

#[test]
fn ground_truth_encoding_model_identifies_the_test_images() {
    let dir = tempfile::tempdir().unwrap();
    let config = SynthConfig { noise_sd: 0.5, ..SynthConfig::default() };
    let nsd = write_synthetic_nsd(dir.path(), &config).unwrap();
    let mut subject = assemble_subject(&nsd.layout, 1, &config.assembly_options()).unwrap();
    subject.divide(config.beta_scale as f64);
    let truth = nsd.truth.subject(1).unwrap();
    assert_eq!(truth.n_voxels(), subject.n_voxels());
    let features = nsd.truth.features.select(Axis(0), &subject.test_ids);
    let predicted = truth.response(features.view());
    // Measured responses correlate with the truth's prediction for their own image far more than
    // with other images' (two-way identification near 100%).
    let n = subject.test_ids.len();
    let (mut wins, mut trials) = (0, 0);
    for i in 0..n {
        let own = corr(subject.test_fmri.row(i), predicted.row(i));
        assert!(own > 0.7, "image {i}: correlation {own}");
        for j in (0..n).filter(|&j| j != i) {
            wins += (own > corr(subject.test_fmri.row(i), predicted.row(j))) as usize;
            trials += 1;
        }
    }
    assert!(wins as f64 / trials as f64 > 0.95, "identification {wins}/{trials}");
    // Images are rendered from the features and differ between stimuli.
    let a = nsd.truth.image(subject.test_ids[0]).unwrap();
    let b = nsd.truth.image(subject.test_ids[1]).unwrap();
    assert_eq!(a.dim(), (32, 32, 3));
    assert_ne!(a, b);
}

/// A caller's stimuli (here: each image a flat colour that encodes its id) are written as given,
/// and the responses follow the caller's features, not the ones drawn for the gratings.
#[test]
fn given_stimuli_and_features_replace_the_gratings() {
    let dir = tempfile::tempdir().unwrap();
    let config = SynthConfig { noise_sd: 0.3, ..SynthConfig::default() };
    let drawn = ground_truth(&config).unwrap();
    // Other features: the drawn ones negated and reversed in order (a different, known truth).
    let features = drawn.features.slice(ndarray::s![..;-1, ..]).mapv(|v| -v);
    let s = config.image_size;
    let images: Vec<ndarray::Array3<u8>> =
        (0..config.n_images).map(|id| ndarray::Array3::from_elem((s, s, 3), (id % 251) as u8)).collect();
    let truth = drawn.with_stimuli(features.clone(), images).unwrap();
    let nsd = write_synthetic_nsd_from(dir.path(), &config, truth).unwrap();
    assert_eq!(nsd.truth.features, features);
    let brick = nsd_io::hdf5::StimulusBrick::open(&nsd.layout.stimuli()).unwrap();
    let read = brick.read(&[0, 7, 300]).unwrap();
    for (row, id) in [0usize, 7, 300].into_iter().enumerate() {
        assert!(read.index_axis(Axis(0), row).iter().all(|&v| usize::from(v) == id % 251), "image {id}");
    }
    let mut subject = assemble_subject(&nsd.layout, 1, &config.assembly_options()).unwrap();
    subject.divide(config.beta_scale as f64);
    let weights = nsd.truth.subject(1).unwrap();
    let given = weights.response(features.select(Axis(0), &subject.test_ids).view());
    let drawn = weights.response(ground_truth(&config).unwrap().features.select(Axis(0), &subject.test_ids).view());
    for i in 0..subject.test_ids.len() {
        let (own, old) = (corr(subject.test_fmri.row(i), given.row(i)), corr(subject.test_fmri.row(i), drawn.row(i)));
        assert!(own > 0.7 && old.abs() < own - 0.3, "image {i}: {own} with the given features, {old} with the drawn");
    }
    // Shapes that do not match the configuration are refused with what was expected.
    let wrong = ground_truth(&config).unwrap().with_stimuli(features.slice(ndarray::s![..3, ..]).to_owned(), vec![]);
    assert!(wrong.unwrap_err().to_string().contains(&format!("expected ({}, {})", config.n_images, config.n_features)));
}

#[test]
fn coco_json_and_stim_info_give_the_curated_captions() {
    let (layout, _) = mini();
    let curated = CaptionTable::read_npy(&layout.captions).unwrap();
    let coco = CaptionTable::from_coco(&layout.stim_info_csv(), &[&layout.coco_captions("train")], curated.rows.len())
        .unwrap();
    let non_empty: Vec<Vec<String>> =
        curated.rows.iter().map(|r| r.iter().filter(|s| !s.is_empty()).cloned().collect()).collect();
    assert_eq!(coco.rows, non_empty);
    assert!(curated.rows.iter().any(|r| r.iter().any(String::is_empty)), "the curated table has '' entries");
    // An nsdId beyond the table is refused.
    assert!(CaptionTable::from_coco(&layout.stim_info_csv(), &[&layout.coco_captions("train")], 10).is_err());
}
